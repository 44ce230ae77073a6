//! Inputs the fuzzer found (`fuzz/fuzz_targets/workflow.rs`), replayed
//! through the same shaping the fuzz target gives them, and the problems
//! they showed, written out as plain cases.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

#[path = "../../../fuzz/fuzz_targets/generate.rs"]
mod generate;

use std::path::Path;

use kaon_model::Loaded;

/// What the `workflow` fuzz target does with `data`, short of the checks
/// on a valid workflow.
fn replay(data: &[u8]) -> (String, Loaded) {
    let text = match generate::input(data) {
        generate::Input::Raw(text) => text,
        generate::Input::Shaped(shaped) => generate::workflow(&shaped),
    };
    let loaded = kaon_model::load_str(Path::new("fuzz.toml"), &text);
    (text, loaded)
}

/// Rendering stays within a bound per diagnostic, however long the lines.
fn assert_renders_small(loaded: &Loaded) {
    let n = loaded.diagnostics.len();
    assert!(n > 0);
    let rich = loaded.diagnostics.render(&loaded.sources, false);
    let short = loaded.diagnostics.render_short(&loaded.sources);
    assert!(
        rich.len() <= n * 4096,
        "{} bytes for {n} diagnostics",
        rich.len()
    );
    assert!(
        short.len() <= n * 1024,
        "{} bytes for {n} diagnostics",
        short.len()
    );
}

/// Found after 28 minutes: a chain of 32,000 steps in verbs on one line,
/// with fuzz text spliced in that made thousands of errors on that line.
/// Each was rendered with the whole line quoted under it: a 5 GB string.
#[test]
fn oom_many_errors_on_a_long_flow_line() {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            let data = include_bytes!("fuzz-regressions/workflow-oom-f781f82f");
            let (_, loaded) = replay(data);
            assert!(loaded.result.is_none());
            assert_renders_small(&loaded);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The same, written out: 3,000 undeclared steps on a 30 KB line.
#[test]
fn errors_on_a_long_line_are_shown_without_quoting_it() {
    let names: Vec<String> = (0..3_000).map(|i| format!("step{i}")).collect();
    let text = format!(
        "[workflow]\nname = \"t\"\nflow = '''{}'''\n[steps.a]\nkind = \"noop\"\n",
        names.join(" -> ")
    );
    let loaded = kaon_model::load_str(Path::new("wf.toml"), &text);
    assert_eq!(
        loaded.diagnostics.len(),
        3_001,
        "3,000 unknown steps, `a` unused"
    );
    assert_renders_small(&loaded);
    let rich = loaded.diagnostics.render(&loaded.sources, false);
    let col = text.find("step2999").unwrap() - text.find("step0").unwrap() + 11;
    let want = format!(
        "error[unknown-step]: the flow uses step `step2999`, which is not declared\n  ┌─ wf.toml:3:{col}\n  │\n  = line 3 is too long to quote\n  = help: "
    );
    assert!(rich.contains(&want), "{}", &rich[rich.len() - 600..]);
    let short = loaded.diagnostics.render_short(&loaded.sources);
    assert!(
        short.contains(&format!(
            "wf.toml:3:{col}: error[unknown-step]: the flow uses step `step2999`"
        )),
        "{short}"
    );
    // Lines of ordinary length are still quoted and underlined.
    assert!(rich.contains("[steps.a]"), "{}", &rich[..600]);
}
