//! End-to-end tests of the `kaon` binary's model verbs: validate, plan, fmt.

use std::path::Path;
use std::process::{Command, Output};

fn kaon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaon"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("kaon runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const RECSYS_OPS: &str = "examples/recsys/recsys.toml";
const RECSYS_VERBS: &str = "examples/recsys/recsys-verbs.toml";

#[test]
fn both_recsys_files_validate_and_plan_identically() {
    for f in [RECSYS_OPS, RECSYS_VERBS] {
        let o = kaon(&["validate", f]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("is valid (11 steps, 1 for-each, 1 repeat"),
            "{}",
            stdout(&o)
        );
    }
    for format in ["tree", "dot", "json"] {
        let a = kaon(&["plan", RECSYS_OPS, "--format", format]);
        let b = kaon(&["plan", RECSYS_VERBS, "--format", format]);
        assert!(a.status.success() && b.status.success());
        assert_eq!(stdout(&a), stdout(&b), "plans differ in {format}");
    }
    let tree = stdout(&kaon(&["plan", RECSYS_OPS]));
    assert!(
        tree.contains("for each reg in ${wrangleData.regions}  after regionSplit"),
        "{tree}"
    );
    assert!(
        tree.contains("selectModel [command]  after validateGlobalModel, regionJoin"),
        "{tree}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&kaon(&["plan", RECSYS_OPS, "--format", "json"])))
            .expect("json");
    assert_eq!(json["workflow"], "recsys");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(4));
}

// `kaon fmt` round trips of the examples are in tests/fmt.rs (on copies:
// `fmt` rewrites files in place).

#[test]
fn invalid_file_exits_non_zero_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[workflow]\nname = \"bad\"\nflow = '''a -> b >-- c'''\n[steps.a]\nkind = \"noop\"\n[steps.b]\nkind = \"nop\"\n",
    )
    .expect("write");
    let p = bad.to_str().expect("utf-8");
    let o = kaon(&["validate", "--diagnostics", "short", p]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml:3:18: error[unopened-block]"),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:7:8: error[invalid-value]: unknown step kind `nop`"),
        "{err}"
    );
    let o = kaon(&["validate", p]);
    assert!(
        stderr(&o).contains("did you mean `noop`?"),
        "{}",
        stderr(&o)
    );
    let o = kaon(&["plan", p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
}

#[test]
fn missing_file_is_a_clear_error() {
    let o = kaon(&["validate", "no/such/file.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read `no/such/file.toml`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in ["validate", "plan", "fmt"] {
        let o = kaon(&[verb, "--help"]);
        assert!(o.status.success());
        assert!(
            stdout(&o).contains("Example"),
            "{verb} --help has no example:\n{}",
            stdout(&o)
        );
    }
}

fn validate_short(path: &Path) -> Output {
    kaon(&[
        "validate",
        "--diagnostics",
        "short",
        path.to_str().expect("utf-8 path"),
    ])
}

#[test]
fn subworkflows_are_checked_through_and_cycles_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("child.toml"),
        "[workflow]\nname = \"child\"\nflow = '''train'''\n[workflow.outputs]\nscore = \"${train.score}\"\n[params]\nregion = { type = \"string\" }\n[steps.train]\nkind = \"command\"\ncommand = [\"echo\", \"${params.region}\"]\noutputs = { score = \"float\" }\n",
    )
    .expect("write");
    std::fs::write(
        d.join("parent.toml"),
        "[workflow]\nname = \"parent\"\nflow = '''**(r = [\"US\", \"CA\"]) --< (sub) >-- report'''\n[steps.sub]\nkind = \"subworkflow\"\nworkflow = \"child.toml\"\nparams = { region = \"${r}\" }\n[steps.report]\nkind = \"command\"\ncommand = [\"echo\", \"${sub.score}\"]\n",
    )
    .expect("write");
    let parent = d.join("parent.toml");
    let o = kaon(&["plan", parent.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("sub [subworkflow child.toml]"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("train [command]"), "{}", stdout(&o));

    // A missing parameter and a wrong output are caught through the child.
    std::fs::write(
        d.join("parent.toml"),
        "[workflow]\nname = \"parent\"\nflow = '''sub -> report'''\n[steps.sub]\nkind = \"subworkflow\"\nworkflow = \"child.toml\"\n[steps.report]\nkind = \"command\"\ncommand = [\"echo\", \"${sub.nope}\"]\n",
    )
    .expect("write");
    let o = validate_short(&parent);
    let err = stderr(&o);
    assert!(
        err.contains("error[missing-key]: sub-workflow `child` needs parameter `region`"),
        "{err}"
    );
    assert!(err.contains("error[unknown-output]"), "{err}");

    // child -> parent -> child is a cycle.
    std::fs::write(
        d.join("child.toml"),
        "[workflow]\nname = \"child\"\nflow = '''again'''\n[steps.again]\nkind = \"subworkflow\"\nworkflow = \"parent.toml\"\n",
    )
    .expect("write");
    let o = validate_short(&parent);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("error[cycle]: sub-workflows include each other: parent.toml -> child.toml -> parent.toml"), "{}", stderr(&o));
}
