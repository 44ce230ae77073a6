//! `kaon fmt` end to end: the flow rewritten in place and nothing else,
//! files already formatted left untouched, `--check` and `--stdout`
//! writing nothing, atomic replacement keeping permissions, links and
//! files with errors handled as documented.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{Kaon, text};

/// A workflow whose flow is not canonical, with comments and spacing that
/// must survive.
const MESSY: &str = r#"# Comments stay where they are.
[workflow]
name    = "wf"      # so does odd spacing
description = """
Several lines,
kept as written."""
flow = '''
start->prepare
   ==> ( trainA ,trainB->evalB) >==   pick ->end
'''
code = [ "a.py" ] # trailing comment

[steps.prepare]
kind = "noop"
[steps.trainA]
kind = "noop"
[steps.trainB]
kind = "noop"
[steps.evalB]
kind = "noop"
[steps.pick]
kind = "noop"
"#;

const FLOW_OPS: &str = "flow = '''
start -> prepare ==> (
  trainA,
  trainB -> evalB
) >== pick -> end
'''";

const FLOW_VERBS: &str = "flow = '''
sequence(start, prepare) parallel {
  trainA
  sequence(trainB, evalB)
} parallel sequence(pick, end)
'''";

/// `MESSY` with its flow written as `flow`.
fn messy_with(flow: &str) -> String {
    let start = MESSY.find("flow = '''").unwrap();
    let end = MESSY[start + 10..].find("'''").unwrap() + start + 13;
    format!("{}{flow}{}", &MESSY[..start], &MESSY[end..])
}

/// Sets a file's modification time an hour back, so that a write (even
/// within the file system's timestamp granularity) shows.
fn age(p: &Path) -> SystemTime {
    let t = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    fs::metadata(p).unwrap().modified().unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", text(o));
}

#[test]
fn rewrites_only_the_flow_in_place() {
    let k = Kaon::new();
    let p = k.write("wf.toml", MESSY);
    ok(&k.run(&["fmt", "wf.toml"]));
    assert_eq!(fs::read_to_string(&p).unwrap(), messy_with(FLOW_OPS));

    // Formatted: not written again, not even replaced by the same bytes.
    let mtime = age(&p);
    let inode = fs::metadata(&p).unwrap().ino();
    let o = k.run(&["fmt", "wf.toml"]);
    ok(&o);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", text(&o));
    let meta = fs::metadata(&p).unwrap();
    assert_eq!(meta.modified().unwrap(), mtime);
    assert_eq!(meta.ino(), inode);
    assert_eq!(fs::read_to_string(&p).unwrap(), messy_with(FLOW_OPS));
}

#[test]
fn verbs_and_back() {
    let k = Kaon::new();
    let p = k.write("wf.toml", MESSY);
    ok(&k.run(&["fmt", "--verbs", "wf.toml"]));
    assert_eq!(fs::read_to_string(&p).unwrap(), messy_with(FLOW_VERBS));
    ok(&k.run(&["fmt", "wf.toml"]));
    assert_eq!(fs::read_to_string(&p).unwrap(), messy_with(FLOW_OPS));
}

#[test]
fn check_prints_a_diff_and_writes_nothing() {
    let k = Kaon::new();
    let messy = k.write("messy.toml", MESSY);
    let tidy = k.write("tidy.toml", &messy_with(FLOW_OPS));
    let before = (age(&messy), age(&tidy));

    let o = k.run(&["fmt", "--check", "tidy.toml", "messy.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let diff = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        diff.starts_with("--- messy.toml\n+++ messy.toml\n@@ "),
        "{diff}"
    );
    assert!(!diff.contains("tidy.toml"), "{diff}");
    assert!(diff.contains("\n-start->prepare\n"), "{diff}");
    assert!(diff.contains("\n+start -> prepare ==> (\n"), "{diff}");
    // Only flow lines change.
    for line in diff.lines().filter(|l| l.starts_with(['-', '+'])) {
        assert!(!line.contains('#') && !line.contains("name"), "{line}");
    }
    assert_eq!(fs::read_to_string(&messy).unwrap(), MESSY);
    let after = (
        fs::metadata(&messy).unwrap().modified().unwrap(),
        fs::metadata(&tidy).unwrap().modified().unwrap(),
    );
    assert_eq!(after, before);

    let o = k.run(&["fmt", "--check", "tidy.toml"]);
    ok(&o);
    assert!(o.stdout.is_empty(), "{}", text(&o));

    let o = k.run(&["fmt", "--check", "--verbs", "tidy.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("+sequence(start, prepare) parallel {"));
}

#[test]
fn stdout_prints_the_whole_file_and_writes_nothing() {
    let k = Kaon::new();
    let p = k.write("wf.toml", MESSY);
    let mtime = age(&p);
    let o = k.run(&["fmt", "--stdout", "--verbs", "wf.toml"]);
    ok(&o);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), messy_with(FLOW_VERBS));
    assert_eq!(fs::read_to_string(&p).unwrap(), MESSY);
    assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), mtime);

    let o = k.run(&["fmt", "--stdout", "--check", "wf.toml"]);
    assert_eq!(o.status.code(), Some(2), "the two conflict: {}", text(&o));
}

#[test]
fn a_file_with_errors_is_reported_and_left_alone() {
    let k = Kaon::new();
    let bad = MESSY.replace("evalB) >==", "evalB) >--");
    let p = k.write("bad.toml", &bad);
    let good = k.write("good.toml", MESSY);
    let o = k.run(&["fmt", "--diagnostics", "short", "bad.toml", "good.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml:9:"), "{err}");
    assert!(err.contains("error: bad.toml has 1 error"), "{err}");
    assert_eq!(fs::read_to_string(&p).unwrap(), bad);
    // The other files are formatted all the same.
    assert_eq!(fs::read_to_string(&good).unwrap(), messy_with(FLOW_OPS));

    let o = k.run(&["fmt", "missing.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!k.path("missing.toml").exists());
}

#[test]
fn replaced_atomically_with_its_permissions() {
    let k = Kaon::new();
    let p = k.write("wf.toml", MESSY);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    let inode = fs::metadata(&p).unwrap().ino();
    ok(&k.run(&["fmt", "wf.toml"]));
    let meta = fs::metadata(&p).unwrap();
    assert_ne!(meta.ino(), inode, "a new file renamed over the old one");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    // No temporary file left behind.
    let names: Vec<String> = fs::read_dir(k.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["wf.toml"]);
}

#[test]
fn a_link_to_a_file_has_its_target_rewritten() {
    let k = Kaon::new();
    let target = k.write("real/wf.toml", MESSY);
    let link = k.path("link.toml");
    std::os::unix::fs::symlink("real/wf.toml", &link).unwrap();
    let o = k.run(&["fmt", "link.toml"]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`link.toml` is a symbolic link"),
        "{}",
        text(&o)
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("real/wf.toml"));
    assert_eq!(fs::read_to_string(&target).unwrap(), messy_with(FLOW_OPS));
}

#[test]
fn a_link_to_something_else_is_refused() {
    // /dev/stdin is a link to a pipe here: kaon reads the workflow from
    // it, but there is no file to rewrite.
    let k = Kaon::new();
    let mut c = k.cmd(&["fmt", "/dev/stdin"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(MESSY.as_bytes()).unwrap();
    }
    let o = common::wait_output(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kaon fmt rewrites only regular files"),
        "{err}"
    );
}

#[test]
fn hard_links_are_refused() {
    let k = Kaon::new();
    let p = k.write("wf.toml", MESSY);
    let other = k.path("other.toml");
    fs::hard_link(&p, &other).unwrap();
    let o = k.run(&["fmt", "wf.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has 2 hard links"));
    assert_eq!(fs::read_to_string(&p).unwrap(), MESSY);
    assert_eq!(fs::read_to_string(&other).unwrap(), MESSY);
    // --stdout still formats it.
    let o = k.run(&["fmt", "--stdout", "wf.toml"]);
    ok(&o);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), messy_with(FLOW_OPS));
}

#[test]
fn one_line_strings_keep_their_quotes() {
    let k = Kaon::new();
    let steps = "[steps.a]\nkind = \"noop\"\n[steps.b]\nkind = \"noop\"\n";
    for (written, want) in [
        ("\"a->b\"", "\"a -> b\""),
        ("'a->b'", "'a -> b'"),
        ("\"\"\"a->b\"\"\"", "\"\"\"a -> b\"\"\""),
    ] {
        let p = k.write(
            "wf.toml",
            &format!("[workflow]\nname = \"x\"\nflow = {written} # c\n{steps}"),
        );
        ok(&k.run(&["fmt", "wf.toml"]));
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            format!("[workflow]\nname = \"x\"\nflow = {want} # c\n{steps}")
        );
    }
}

#[test]
fn the_examples_round_trip_through_both_notations() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for src in [
        "examples/recsys/recsys.toml",
        "examples/recsys/recsys-verbs.toml",
        "examples/sweep/sweep.toml",
    ] {
        // A copy: the examples themselves are never written.
        let k = Kaon::new();
        let copy = k.path("wf.toml");
        fs::copy(root.join(src), &copy).unwrap();
        let c = copy.to_str().unwrap();
        let plan = |p: &str| {
            let o = k.run(&["plan", p]);
            ok(&o);
            o.stdout
        };
        let before = plan(c);
        for verbs in [true, false] {
            let mut args = vec!["fmt", c];
            if verbs {
                args.insert(1, "--verbs");
            }
            ok(&k.run(&args));
            let once = fs::read_to_string(&copy).unwrap();
            ok(&k.run(&args));
            assert_eq!(
                fs::read_to_string(&copy).unwrap(),
                once,
                "{src} is not stable"
            );
            assert_eq!(plan(c), before, "{src} plans otherwise after fmt");
        }
    }
}

#[test]
fn help_names_the_modes() {
    let o = Kaon::new().run(&["fmt", "--help"]);
    ok(&o);
    let help = String::from_utf8_lossy(&o.stdout);
    for word in ["--check", "--stdout", "--verbs", "Example", "symbolic link"] {
        assert!(help.contains(word), "no {word} in:\n{help}");
    }
}
