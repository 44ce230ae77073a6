//! Faults a real user hits, end to end through the binary: what kaon does
//! to the user's files, to corrupt or missing blobs, to secrets, and when
//! the disk fills, the data directory is read-only, the database goes away,
//! several processes start at once, stdout is closed, or kaon is killed in
//! the middle of storing or restoring an artifact. For each: a clear error
//! naming the path, no panic, no user file lost, and the next run carries
//! on.
//!
//! Tests that mount (a small tmpfs for a full disk, a read-only bind mount)
//! need root; where mounting is impossible they say so on stderr and check
//! nothing else.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Kaon, text, wait_output};
use serde_json::Value;

/// Runs `kaon run FILE --progress plain` (plus `extra`); returns the output
/// and the run id it printed.
fn run(k: &Kaon, file: &str, extra: &[&str]) -> (Output, Option<String>) {
    let mut args = vec!["run", file, "--progress", "plain"];
    args.extend_from_slice(extra);
    let o = k.run(&args);
    let id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .map(str::to_string);
    (o, id)
}

fn run_ok(k: &Kaon, file: &str, extra: &[&str]) -> String {
    let (o, id) = run(k, file, extra);
    assert!(o.status.success(), "{}", text(&o));
    no_panic(&o);
    id.unwrap()
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "kaon panicked: {}", text(o));
    assert_ne!(o.status.code(), Some(101), "{}", text(o));
}

fn state_of(k: &Kaon, run: &str, step: &str) -> String {
    let v = k.show(run);
    common::nodes_named(&v, step)
        .first()
        .map(|n| n["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The artifacts of a run, as `artifacts list --format json` gives them.
fn artifacts(k: &Kaon, run: &str) -> Vec<Value> {
    let o = k.run(&["artifacts", "list", "--run", run, "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn blob_file(k: &Kaon, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("blake3:");
    k.data().join("artifacts/blobs").join(&hex[..2]).join(hex)
}

/// Replaces a file's content with bytes of the same length that differ in
/// one place (blobs may be hard links: replace, never write through).
fn flip_byte(p: &Path) {
    let mut bytes = std::fs::read(p).unwrap();
    bytes[0] ^= 0x55;
    std::fs::remove_file(p).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Runs `mount` with `args`; false (and a note on stderr) when this
/// machine does not let the test mount.
fn mount(args: &[&str]) -> bool {
    match Command::new("mount").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot mount here ({}); the fault this test injects needs a mount",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: no mount command ({e})");
            false
        }
    }
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

const DIR_OUTPUT: &str = r#"
[workflow]
name = "dirout"
flow = "make"

[steps.make]
kind = "command"
script = "echo made > made.txt; mkdir -p sub; echo deep > sub/deep.txt"
outputs = { d = { type = "dir", path = "." } }
"#;

#[test]
fn a_restore_or_a_get_never_deletes_what_kaon_did_not_write() {
    let k = Kaon::new();
    let wf = k.write("proj/wf.toml", DIR_OUTPUT);
    run_ok(&k, "proj/wf.toml", &[]);
    // The user adds a file of their own and deletes the step's.
    k.write("proj/mine.txt", "my notes");
    std::fs::remove_file(k.path("proj/made.txt")).unwrap();
    let id = run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(state_of(&k, &id, "make"), "memoized");
    assert!(wf.is_file(), "the workflow file was removed");
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "my notes"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj/made.txt")).unwrap(),
        "made\n"
    );

    // A file the artifact holds (the folder's whole content was stored,
    // the workflow file with it) that the user edited since: the result is
    // not put back over it; the step runs instead, and says why.
    let edited_wf = format!("{DIR_OUTPUT}# a comment added later\n");
    k.write("proj/wf.toml", &edited_wf);
    std::fs::remove_file(k.path("proj/made.txt")).unwrap();
    let edited = run_ok(&k, "proj/wf.toml", &[]);
    let o = k.run(&["cache", "explain", &edited, "make"]);
    assert_eq!(state_of(&k, &edited, "make"), "succeeded", "{}", text(&o));
    assert!(text(&o).contains("was not put back"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&wf).unwrap(), edited_wf);
    // ... and the run after that reuses the new result.
    std::fs::remove_file(k.path("proj/made.txt")).unwrap();
    let again = run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(state_of(&k, &again, "make"), "memoized");
    assert_eq!(
        std::fs::read_to_string(k.path("proj/made.txt")).unwrap(),
        "made\n"
    );

    // The data directory inside the output folder is never stored with it.
    k.write("proj3/wf.toml", DIR_OUTPUT);
    let dd = k.path("proj3/.kaon");
    let dds = dd.to_str().unwrap();
    let o = k.run(&[
        "run",
        "--data-dir",
        dds,
        "proj3/wf.toml",
        "--progress",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(&["artifacts", "list", "--data-dir", dds, "--format", "json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        listed[0]["files"], 3,
        "wf.toml, made.txt, sub/deep.txt: {listed:#}"
    );
    std::fs::remove_file(k.path("proj3/made.txt")).unwrap();
    let o = k.run(&[
        "run",
        "--data-dir",
        dds,
        "proj3/wf.toml",
        "--progress",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("memoized"), "{}", text(&o));
    let o = k.run(&["runs", "list", "--data-dir", dds]);
    assert!(o.status.success(), "the database survived: {}", text(&o));

    // The same with `workdir` and `path = "./"`.
    k.write(
        "proj2/wf.toml",
        &DIR_OUTPUT.replace("path = \".\"", "path = \"./\"").replace(
            "kind = \"command\"",
            "kind = \"command\"\nworkdir = \"build\"",
        ),
    );
    std::fs::create_dir_all(k.path("proj2/build")).unwrap();
    run_ok(&k, "proj2/wf.toml", &[]);
    k.write("proj2/build/mine.txt", "mine too");
    std::fs::remove_file(k.path("proj2/build/sub/deep.txt")).unwrap();
    let id2 = run_ok(&k, "proj2/wf.toml", &[]);
    assert_eq!(state_of(&k, &id2, "make"), "memoized");
    assert_eq!(
        std::fs::read_to_string(k.path("proj2/build/mine.txt")).unwrap(),
        "mine too"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj2/build/sub/deep.txt")).unwrap(),
        "deep\n"
    );

    // `artifacts get` into a folder merges; a file that differs is refused
    // unless --force; a file in the way of a folder is an error.
    let a = artifacts(&k, &again);
    let aid = a[0]["id"].as_str().unwrap();
    let get = |out: &str, force: bool| {
        let mut args = vec!["artifacts", "get", aid, "-o", out];
        if force {
            args.push("--force");
        }
        k.run(&args)
    };
    let o = get("proj", false);
    assert!(o.status.success(), "{}", text(&o));
    assert!(wf.is_file());
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "my notes"
    );
    k.write("proj/made.txt", "edited by hand");
    let o = get("proj", false);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("made.txt") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(k.path("proj/made.txt")).unwrap(),
        "edited by hand"
    );
    let o = get("proj", true);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(k.path("proj/made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "my notes"
    );
    let o = get("proj/mine.txt", true);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("mine.txt"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "my notes"
    );
    // `-o .` from inside the folder.
    let o = k
        .cmd(&["artifacts", "get", aid, "-o", "."])
        .current_dir(k.path("proj"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(wf.is_file() && k.path("proj/mine.txt").is_file());
}

const FILE_OUTPUT: &str = r#"
[workflow]
name = "fileout"
flow = "make"

[steps.make]
kind = "command"
script = "printf 'model weights v1' > model.bin"
outputs = { m = { type = "file", path = "model.bin" } }
"#;

#[test]
fn a_corrupt_blob_is_found_and_replaced() {
    let k = Kaon::new();
    k.write("proj/wf.toml", FILE_OUTPUT);
    let id = run_ok(&k, "proj/wf.toml", &[]);
    let digest = artifacts(&k, &id)[0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = blob_file(&k, &digest);
    let verify = |repair: bool| {
        let mut args = vec!["artifacts", "verify"];
        if repair {
            args.push("--repair");
        }
        k.run(&args)
    };
    assert!(verify(false).status.success(), "{}", text(&verify(false)));

    // A flipped byte: verify names the blob and fails.
    flip_byte(&blob);
    let o = verify(false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&digest) && out.contains("corrupt"), "{out}");
    // The step runs again (the restore fails its digest check) and its put
    // replaces the bad blob.
    std::fs::remove_file(k.path("proj/model.bin")).unwrap();
    let id2 = run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(
        std::fs::read_to_string(k.path("proj/model.bin")).unwrap(),
        "model weights v1"
    );
    assert_eq!(state_of(&k, &id2, "make"), "succeeded");
    let o = verify(false);
    assert!(
        o.status.success(),
        "the put should have repaired the blob: {}",
        text(&o)
    );
    let id3 = run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(state_of(&k, &id3, "make"), "memoized");

    // --repair puts it back from the file it was stored from...
    flip_byte(&blob);
    let o = verify(true);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("repaired from"),
        "{}",
        text(&o)
    );
    assert!(verify(false).status.success());

    // ...or, when no file has the content any more, moves it aside (kept
    // under corrupt/) and the step runs again next time.
    flip_byte(&blob);
    std::fs::remove_file(k.path("proj/model.bin")).unwrap();
    let o = verify(true);
    assert_eq!(
        o.status.code(),
        Some(1),
        "its content is lost: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("moved aside"),
        "{}",
        text(&o)
    );
    assert!(!blob.exists());
    let mut kept = Vec::new();
    files_under(&k.data().join("artifacts/corrupt"), &mut kept);
    assert_eq!(kept.len(), 1);
    let o = verify(false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("missing"),
        "{}",
        text(&o)
    );
    let id4 = run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(state_of(&k, &id4, "make"), "succeeded");
    assert!(verify(false).status.success());
}

const TRIVIAL: &str = r#"
[workflow]
name = "trivial"
flow = "a -> b"

[steps]
a = { kind = "command", script = "echo a" }
b = { kind = "command", script = "echo b" }
"#;

#[test]
fn processes_started_together_share_a_fresh_data_dir() {
    let k = Kaon::new();
    k.write("wf.toml", TRIVIAL);
    for round in 0..4 {
        let dd = format!("dd{round}");
        let children: Vec<_> = (0..4)
            .map(|_| {
                k.spawn(&[
                    "run",
                    "--data-dir",
                    &dd,
                    "wf.toml",
                    "--new",
                    "--progress",
                    "plain",
                ])
            })
            .collect();
        for c in children {
            let o = wait_output(c, Duration::from_secs(60));
            assert!(o.status.success(), "round {round}: {}", text(&o));
        }
        // And again on the existing directory.
        let children: Vec<_> = (0..3)
            .map(|_| {
                k.spawn(&[
                    "run",
                    "--data-dir",
                    &dd,
                    "wf.toml",
                    "--new",
                    "--progress",
                    "plain",
                ])
            })
            .collect();
        for c in children {
            let o = wait_output(c, Duration::from_secs(60));
            assert!(
                o.status.success(),
                "round {round}, existing dir: {}",
                text(&o)
            );
        }
    }
}

const SECRET: &str = r#"
[workflow]
name = "secret"
flow = "use"

[params.token]
type = "string"
secret = true
from_env = "KAON_TEST_TOKEN"

[steps.use]
kind = "command"
script = "test \"$TOKEN\" = \"$KAON_TEST_TOKEN\" && test \"$${#PLAIN}\" = 20 && echo token ok"
env = { TOKEN = "${params.token}", PLAIN = "plain-env-value-7731" }
"#;

#[test]
fn secrets_and_env_values_are_never_stored_or_printed() {
    let k = Kaon::new();
    k.write("wf.toml", SECRET);
    let run_with = |token: &str| {
        let o = k
            .cmd(&["run", "wf.toml", "--progress", "plain"])
            .env("KAON_TEST_TOKEN", token)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
            .unwrap()
            .to_string()
    };
    run_with("hunter2-first-4417");
    let id = run_with("hunter2-second-9093");
    // The change is seen (the step ran again) and said without the value.
    assert_eq!(state_of(&k, &id, "use"), "succeeded");
    let o = k.run(&["cache", "explain", &id, "use"]);
    let explained = text(&o);
    assert!(explained.contains("env TOKEN: changed"), "{explained}");
    for needle in ["hunter2", "plain-env-value-7731"] {
        assert!(!explained.contains(needle), "{explained}");
        let o = k.run(&["runs", "show", &id, "--format", "json"]);
        assert!(!text(&o).contains(needle), "{}", text(&o));
    }
    // Nowhere in the data directory: database, WAL, logs.
    let mut files = Vec::new();
    files_under(&k.data(), &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for needle in [&b"hunter2"[..], &b"plain-env-value-7731"[..]] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {}",
                f.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Private: the folder 0700, the database and logs 0600.
    assert_eq!(mode(&k.data()), 0o700);
    assert_eq!(mode(&k.data().join("kaon.db")), 0o600);
    let logs: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "out" || e == "err"))
        .collect();
    assert!(!logs.is_empty());
    for l in logs {
        assert_eq!(mode(l), 0o600, "{}", l.display());
    }
    // Without the variable, the run says where the value is looked for.
    let o = k
        .cmd(&["run", "wf.toml", "--new"])
        .env_remove("KAON_TEST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("$KAON_TEST_TOKEN"), "{}", text(&o));
    // A secret's value never belongs in the workflow file.
    k.write(
        "bad.toml",
        &SECRET.replace("secret = true", "secret = true\ndefault = \"oops\""),
    );
    let o = k.run(&["validate", "bad.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("bad.toml:9:"), "{}", text(&o));
}

#[test]
fn outputs_never_reach_outside_their_step() {
    let k = Kaon::new();
    let wf = |name: &str, script: &str, output: &str| {
        k.write(
            &format!("{name}.toml"),
            &format!(
                "[workflow]\nname = \"{name}\"\nflow = \"s\"\n\n[steps.s]\nkind = \"command\"\nscript = \"{script}\"\noutputs = {{ o = {output} }}\n"
            ),
        );
    };
    // A link out of the working directory, as the output or inside it.
    wf(
        "filelink",
        "ln -sf /etc/passwd link.txt",
        r#"{ type = "file", path = "link.txt" }"#,
    );
    wf(
        "dirlink",
        "mkdir -p out && echo x > out/x && ln -sfn /etc out/etc",
        r#"{ type = "dir", path = "out" }"#,
    );
    for name in ["filelink", "dirlink"] {
        let (o, id) = run(&k, &format!("{name}.toml"), &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        no_panic(&o);
        let t = text(&o);
        assert!(t.contains("outside"), "{t}");
        assert!(artifacts(&k, &id.unwrap()).is_empty());
    }
    // Paths out of it are refused before anything runs, with the place.
    wf("parent", "true", r#"{ type = "file", path = "../x" }"#);
    wf("absolute", "true", r#"{ type = "file", path = "/tmp/x" }"#);
    for name in ["parent", "absolute"] {
        let o = k.run(&["validate", &format!("{name}.toml")]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains(&format!("{name}.toml:8:")), "{t}");
        assert!(t.contains("must stay inside"), "{t}");
    }
}

/// Runs kaon with its stdout a pipe whose reader is already gone.
fn with_closed_stdout(k: &Kaon, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = k
        .cmd(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(60))
}

#[test]
fn a_closed_stdout_ends_output_quietly_and_never_changes_the_run() {
    let k = Kaon::new();
    k.write("proj/wf.toml", FILE_OUTPUT);
    for progress in ["plain", "none"] {
        let o = with_closed_stdout(
            &k,
            &["run", "proj/wf.toml", "--new", "--progress", progress],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        no_panic(&o);
    }
    let o = k.run(&["runs", "list"]);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert_eq!(listed.matches("succeeded").count(), 2, "{listed}");
    let o = k.run(&["artifacts", "list", "--format", "json"]);
    let id = serde_json::from_slice::<Value>(&o.stdout).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["artifacts", "show", id.as_str()],
        vec!["artifacts", "list"],
        vec!["runs", "list"],
        vec!["plan", "proj/wf.toml"],
    ] {
        let o = with_closed_stdout(&k, &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        no_panic(&o);
    }
}

#[test]
fn a_deleted_database_stops_the_run_with_an_error() {
    let k = Kaon::new();
    k.write(
        "wf.toml",
        "[workflow]\nname = \"slow\"\nflow = \"a -> b\"\n\n[steps]\na = { kind = \"command\", script = \"sleep 2\" }\nb = { kind = \"command\", script = \"true\" }\n",
    );
    let child = k.spawn(&["run", "wf.toml", "--progress", "plain"]);
    let id = k.wait_run_id();
    k.wait_state(&id, "a", "running");
    for f in ["kaon.db", "kaon.db-wal", "kaon.db-shm"] {
        let _ = std::fs::remove_file(k.data().join(f));
    }
    let o = wait_output(child, Duration::from_secs(60));
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("was deleted") && t.contains("kaon.db"), "{t}");
    assert!(!t.contains("succeeded in"), "{t}");
}

#[test]
fn a_read_only_data_dir_is_named_once() {
    let k = Kaon::new();
    k.write("wf.toml", TRIVIAL);
    run_ok(&k, "wf.toml", &[]);
    let dd = k.data();
    let dds = dd.to_str().unwrap();
    if !mount(&["--bind", dds, dds]) {
        return;
    }
    let _m = Mounted(dd.clone());
    if !mount(&["-o", "remount,bind,ro", dds]) {
        return;
    }
    for args in [vec!["run", "wf.toml", "--new"], vec!["runs", "list"]] {
        let o = k.run(&args);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("read-only") && err.contains(dds), "{err}");
        assert!(!err.contains("code 14"), "{err}");
        assert_eq!(err.matches("os error").count(), 1, "{err}");
    }
}

#[test]
fn errors_say_what_to_do() {
    let k = Kaon::new();
    // An ambiguous prefix.
    k.write("one.txt", "one");
    k.write("two.txt", "two");
    for f in ["one.txt", "two.txt"] {
        let o = k.run(&["artifacts", "put", f]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = k.run(&["artifacts", "show", "a"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("names more than one artifact"), "{err}");
    assert!(!err.contains("conflicting write"), "{err}");
    // An I/O error said once.
    let o = k.run(&["artifacts", "put", "no-such-file.txt"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-file.txt"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    // A binary file given as a workflow.
    std::fs::write(k.path("model.bin"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    let o = k.run(&["validate", "model.bin"]);
    let t = text(&o);
    assert!(t.contains("not a text file"), "{t}");
    assert!(!t.contains("check the path"), "{t}");
    // Logs of a step that never ran, and of a noop step.
    k.write(
        "skip.toml",
        r#"
[workflow]
name = "skip"
flow = "**(x = items) --< (n) >-- -> f -> after"

[params]
items = { type = "list<string>", default = ["p", "q", "r"] }

[steps]
n = { kind = "noop" }
f = { kind = "command", script = "exit 3" }
after = { kind = "command", script = "echo after" }
"#,
    );
    let (o, id) = run(&k, "skip.toml", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let id = id.unwrap();
    let o = k.run(&["logs", &id, "after"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("never started (it is skipped)"),
        "{}",
        text(&o)
    );
    let o = k.run(&["logs", &id, "n"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is a noop step"), "{}", text(&o));
    // A parameter given twice.
    let o = k.run(&["run", "skip.toml", "-p", "items=[]", "-p", "items=[\"a\"]"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("given twice"), "{}", text(&o));
}

#[test]
fn a_run_without_spark_steps_listens_on_no_port() {
    let k = Kaon::new();
    k.write(
        "wf.toml",
        "[workflow]\nname = \"quiet\"\nflow = \"a\"\n\n[steps]\na = { kind = \"command\", script = \"echo started > started; sleep 1\" }\n",
    );
    let child = k.spawn(&["run", "wf.toml", "--progress", "plain"]);
    let pid = child.id();
    let start = Instant::now();
    while !k.path("started").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The sockets kaon holds, against the table of listening TCP sockets.
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        if let Ok(target) = std::fs::read_link(fd.unwrap().path())
            && let Some(n) = target.to_string_lossy().strip_prefix("socket:[")
        {
            inodes.push(n.trim_end_matches(']').to_string());
        }
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f.get(3) == Some(&"0A");
            assert!(
                !(listening && f.get(9).is_some_and(|i| inodes.iter().any(|n| n == i))),
                "kaon listens: {line}"
            );
        }
    }
    let o = wait_output(child, Duration::from_secs(60));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!k.data().join("callback.port").exists());
}

#[test]
fn a_full_disk_fails_the_step_clearly_and_the_next_run_carries_on() {
    let k = Kaon::new();
    let small = k.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let s = small.to_str().unwrap();
    if !mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs", s]) {
        return;
    }
    let _m = Mounted(small.clone());
    let dd = small.join(".kaon");
    k.write(
        "proj/wf.toml",
        "[workflow]\nname = \"big\"\nflow = \"make\"\n\n[steps.make]\nkind = \"command\"\nscript = \"head -c 3000000 /dev/zero | tr '\\\\0' 'k' > big.bin\"\noutputs = { b = { type = \"file\", path = \"big.bin\" } }\n",
    );
    let dds = dd.to_str().unwrap();
    let o = k.run(&[
        "run",
        "--data-dir",
        dds,
        "proj/wf.toml",
        "--progress",
        "plain",
    ]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains("artifacts"), "the error names where: {t}");
    assert_eq!(
        std::fs::metadata(k.path("proj/big.bin")).unwrap().len(),
        3_000_000
    );
    // Room again: the next run carries on and succeeds.
    assert!(mount(&["-o", "remount,size=64m", s]));
    let o = k.run(&[
        "run",
        "--data-dir",
        dds,
        "proj/wf.toml",
        "--progress",
        "plain",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(&["artifacts", "verify", "--data-dir", dds]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn killed_during_a_put_or_a_restore_the_next_run_carries_on() {
    let k = Kaon::new();
    k.write("proj/wf.toml", DIR_OUTPUT);
    let killed = |point: &str| {
        let o = k
            .cmd(&["run", "proj/wf.toml", "--progress", "plain"])
            .env("KAON_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            text(&o).contains(&format!("failpoint {point}")),
            "never reached {point}: {}",
            text(&o)
        );
        assert_eq!(o.status.code(), None, "{}", text(&o));
    };
    // During the put of the step's output: no blob of it becomes visible,
    // and the next `kaon run` carries the run on and stores it.
    killed("artifact-put");
    let o = k.run(&["artifacts", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let id = run_ok(&k, "proj/wf.toml", &[]);
    assert!(text(&k.run(&["runs", "list"])).contains("succeeded"));
    assert_eq!(artifacts(&k, &id).len(), 1);
    // During a restore: the user's file stays, the next run finishes it.
    std::fs::remove_file(k.path("proj/made.txt")).unwrap();
    std::fs::remove_file(k.path("proj/sub/deep.txt")).unwrap();
    k.write("proj/mine.txt", "mine");
    killed("artifact-restore");
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "mine"
    );
    // (The interrupted launch is carried on as a launch: the step runs.)
    run_ok(&k, "proj/wf.toml", &[]);
    assert_eq!(
        std::fs::read_to_string(k.path("proj/made.txt")).unwrap(),
        "made\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj/sub/deep.txt")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_to_string(k.path("proj/mine.txt")).unwrap(),
        "mine"
    );
    let o = k.run(&["artifacts", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_chain_of_ninety_thousand_steps_validates_and_runs() {
    let k = Kaon::new();
    let n = 90_000;
    let mut wf = String::from("[workflow]\nname = \"chain\"\nflow = \"");
    for i in 0..n {
        if i > 0 {
            wf.push_str(" -> ");
        }
        wf.push_str(&format!("s{i}"));
    }
    wf.push_str("\"\n\n[steps]\n");
    for i in 0..n {
        wf.push_str(&format!("s{i} = {{ kind = \"noop\" }}\n"));
    }
    k.write("chain.toml", &wf);
    let o = k.run(&["validate", "chain.toml"]);
    no_panic(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("90000 steps"), "{}", text(&o));
    let o = k.run(&["run", "chain.toml", "--progress", "none"]);
    no_panic(&o);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("90000 succeeded"), "{}", text(&o));
}

#[test]
fn a_resumed_run_takes_its_secret_again_and_checks_it() {
    let k = Kaon::new();
    k.write(
        "wf.toml",
        &SECRET
            .replace("flow = \"use\"", "flow = \"use -> slow -> child\"")
            .replace(
                "[steps.use]",
                "[steps.slow]\nkind = \"command\"\nscript = \"echo started > started; sleep 2\"\n\n[steps.child]\nkind = \"subworkflow\"\nworkflow = \"child.toml\"\nparams = { tok = \"${params.token}\" }\n\n[steps.use]",
            ),
    );
    // The child does not mark its parameter secret: the parent's secret
    // is still never stored in the child run.
    k.write(
        "child.toml",
        "[workflow]\nname = \"child\"\nflow = \"c\"\n\n[params]\ntok = { type = \"string\" }\n\n[steps.c]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"test \\\"$1\\\" = \\\"$KAON_TEST_TOKEN\\\"\", \"c\", \"${params.tok}\"]\n",
    );
    let token = "hunter2-resume-5150";
    let mut child = k
        .cmd(&["run", "wf.toml", "--progress", "plain"])
        .env("KAON_TEST_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !k.path("started").exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let id = k.wait_run_id();
    // Another value is refused; the variable missing says where to put it.
    let o = k
        .cmd(&["resume", &id, "--progress", "plain"])
        .env("KAON_TEST_TOKEN", "hunter2-other")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("differs from the value the run started with"),
        "{}",
        text(&o)
    );
    let o = k
        .cmd(&["resume", &id, "--progress", "plain"])
        .env_remove("KAON_TEST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("$KAON_TEST_TOKEN"), "{}", text(&o));
    // The same value carries it on, through the child run.
    let o = k
        .cmd(&["resume", &id, "--progress", "plain"])
        .env("KAON_TEST_TOKEN", token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(state_of(&k, &id, "child"), "succeeded");
    let mut files = Vec::new();
    files_under(&k.data(), &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(7).any(|w| w == b"hunter2"),
            "{} holds the secret",
            f.display()
        );
    }
}
