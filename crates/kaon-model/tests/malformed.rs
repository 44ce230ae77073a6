//! Table-driven tests of malformed workflows: each case must produce an error
//! of the expected kind at the expected line and column.
//!
//! The expected place is written as a `|` inside a snippet of the case's own
//! text (`"-> |zz"` means: where `zz` follows `-> `), so positions are never
//! counted by hand and move with the text.

use std::path::Path;

use kaon_model::diag::{Code, Severity};

const BASE_STEPS: &str = r#"
[params]
regions = ["US", "CA"]
n = 3

[steps.a]
kind = "command"
command = ["true"]
outputs = { items = "list<string>", ok = "bool", score = "float" }

[steps.b]
kind = "command"
command = ["true"]

[steps.c]
kind = "command"
command = ["true"]
outputs = { x = "string" }

[steps.d]
kind = "noop"
"#;

/// A workflow around `flow`, with extra TOML appended.
fn wf(flow: &str, extra: &str) -> String {
    format!("[workflow]\nname = \"t\"\nflow = '''{flow}'''\n{BASE_STEPS}{extra}")
}

struct Case {
    name: &'static str,
    code: Code,
    text: String,
    /// A snippet of `text` with `|` where the error must point.
    at: &'static str,
}

fn case(name: &'static str, code: Code, text: String, at: &'static str) -> Case {
    Case {
        name,
        code,
        text,
        at,
    }
}

/// A marker snippet built at run time (for long, repetitive ones).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn line_col(text: &str, at: &str) -> (usize, usize) {
    let needle = at.replace('|', "");
    let bar = at.find('|').expect("marker has a |");
    let start = text
        .find(&needle)
        .unwrap_or_else(|| panic!("snippet {needle:?} not in text"));
    let offset = start + bar;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn cases() -> Vec<Case> {
    use Code::*;
    vec![
        // --- the flow language ---
        case("steps side by side", FlowSyntax, wf("a b", ""), "a |b'''"),
        case("arrow to nothing", FlowSyntax, wf("a -> ", ""), "a -> |'''"),
        case("stray character", FlowSyntax, wf("a -> b ; c", ""), "b |; c"),
        case("for-each join without split", UnopenedBlock, wf("a >-- b", ""), "a |>--"),
        case("parallel join without fork", UnopenedBlock, wf("a -> b >== c", ""), "b |>=="),
        case("for-each never joined", UnclosedBlock, wf("a **(x = regions) --< (b) c", ""), "(b) |c'''"),
        case("parallel never joined", UnclosedBlock, wf("a ==> (b, c) d", ""), "c) |d'''"),
        case("verb for-each never closed", UnclosedBlock, wf("forEach(x = regions) a", ""), "regions) a|'''"),
        case("verb closer without opener", UnopenedBlock, wf("a -> forEach", ""), "-> |forEach"),
        case("block body without header", FlowSyntax, wf("--< (a) >--", ""), "'''|--<"),
        case("repeat without max", MissingKey, wf("^^(until = ${a.ok}) --< (a) >--", ""), "^^|(until"),
        case("repeat max zero", InvalidValue, wf("^^(until = ${a.ok}, max = 0) --< (a) >--", ""), "max = |0"),
        case("bare name in condition", FlowSyntax, wf("a ??(ok) --< (b) >--", ""), "??(|ok)"),
        case("chained comparison", FlowSyntax, wf("a ??(${a.score} > 1 > 2) --< (b) >--", ""), "1 |> 2"),
        case("blocks nest too deep", FlowSyntax, wf(&format!("{}a{}", "==> (".repeat(150), ") >==".repeat(150)), ""), leak(format!("'''{}|==> (", "==> (".repeat(100)))),
        case("groups nest too deep", FlowSyntax, wf(&format!("{}a{}", "(".repeat(300), ")".repeat(300)), ""), leak(format!("'''{}|(", "(".repeat(128)))),
        case("condition too long", FlowSyntax, wf(&format!("a ??(true{}) --< (b) >--", " && true".repeat(150)), ""), leak(format!("??(true{} |&&", " && true".repeat(100)))),
        // --- steps and names ---
        case("unknown step in flow", UnknownStep, wf("a -> zz", ""), "-> |zz"),
        case("cycle", Cycle, wf("a -> b -> a", ""), "b -> |a'''"),
        case("step used twice", DuplicateName, wf("a ==> (b -> c, d -> c) >==", ""), "d -> |c)"),
        case("loop variable bound twice", DuplicateName, wf("a **(x = regions, x = regions) --< (b) >--", ""), "regions, |x ="),
        case("reserved step name", ReservedName, wf("a", "\n[steps.parallel]\nkind = \"noop\"\n"), "[steps.|parallel]"),
        case("start not first", Conflict, wf("a -> start -> b", ""), "a -> |start"),
        // --- keys and values ---
        case("unknown step key", UnknownKey, wf("a -> b", "\n[steps.e]\nkind = \"command\"\ncomand = [\"true\"]\n"), "|comand"),
        case("unknown workflow key", UnknownKey, "[workflow]\nname = \"t\"\nnmae = \"x\"\nflow = '''a'''\n[steps.a]\nkind = \"noop\"\n".into(), "|nmae"),
        case("step without kind", MissingKey, wf("a", "\n[steps.e]\ncommand = [\"true\"]\n"), "[steps.|e]"),
        case("unknown kind", InvalidValue, wf("a", "\n[steps.e]\nkind = \"comand\"\n"), "kind = |\"comand\""),
        case("command without program", MissingKey, wf("a", "\n[steps.e]\nkind = \"command\"\n"), "[steps.|e]"),
        case("command and script", Conflict, wf("a", "\n[steps.e]\nkind = \"command\"\ncommand = [\"x\"]\nscript = \"y\"\n"), "command = |[\"x\"]"),
        case("bad memory", InvalidValue, wf("a", "\n[steps.e]\nkind = \"noop\"\nmemory = \"4x\"\n"), "memory = |\"4x\""),
        case("bad timeout", InvalidValue, wf("a", "\n[steps.e]\nkind = \"noop\"\ntimeout = \"soon\"\n"), "timeout = |\"soon\""),
        case("negative retries", InvalidValue, wf("a", "\n[steps.e]\nkind = \"noop\"\nretries = -1\n"), "retries = |-1"),
        case("cpus of wrong type", InvalidValue, wf("a", "\n[steps.e]\nkind = \"noop\"\ncpus = \"two\"\n"), "cpus = |\"two\""),
        case("bad constraint", InvalidConstraint, wf("a", "\n[steps.e]\nkind = \"noop\"\nconstraints = \"zone:a,,b\"\n"), "zone:a,|,b"),
        case("output path on a value", Conflict, wf("a", "\n[steps.e]\nkind = \"noop\"\noutputs = { v = { type = \"string\", path = \"x\" } }\n"), "{ |v = {"),
        case("bad reference syntax", InvalidValue, wf("a -> b", "\n[steps.e]\nkind = \"command\"\ncommand = [\"echo\", \"${a.}\"]\n"), "\"${a.|}\""),
        case("no workflow table", MissingKey, "[steps.a]\nkind = \"noop\"\n".into(), "|[steps.a]"),
        case("invalid toml", TomlSyntax, "[workflow]\nname = \n".into(), "name = |\n"),
        case("mesos on spark 4", Conflict, wf("a -> e", "\n[steps.e]\nkind = \"spark\"\nspark = \"4.0\"\napp = \"job.py\"\nmaster = \"mesos://m:5050\"\n"), "master = |\"mesos"),
        // --- types ---
        case("default of wrong type", TypeMismatch, "[workflow]\nname = \"t\"\nflow = '''a'''\n[params]\nk = { type = \"int\", default = \"x\" }\n[steps.a]\nkind = \"noop\"\n".into(), "default = |\"x\""),
        case("for-each over a non-list", TypeMismatch, wf("a **(x = n) --< (b) >--", ""), "(x = |n)"),
        case("condition not a bool", TypeMismatch, wf("^^(until = ${a.score}, max = 2) --< (a, b) >--", ""), "until = |${a.score}"),
        case("comparing bool with text", TypeMismatch, wf("a ??(${a.ok} == \"yes\") --< (b) >--", ""), "??(|${a.ok} =="),
        // --- references ---
        case("undeclared output", UnknownOutput, wf("a -> b -> c", "").replace("[steps.b]\nkind = \"command\"\ncommand = [\"true\"]", "[steps.b]\nkind = \"command\"\ncommand = [\"echo\", \"${a.nope}\"]"), "\"|${a.nope}\""),
        case("unknown parameter", UnknownReference, wf("a -> b", "").replace("command = [\"true\"]\n\n[steps.c]", "command = [\"${params.nope}\"]\n\n[steps.c]"), "\"|${params.nope}\""),
        case("unknown step in reference", UnknownReference, wf("a -> b", "").replace("command = [\"true\"]\n\n[steps.c]", "command = [\"${zz.out}\"]\n\n[steps.c]"), "\"|${zz.out}\""),
        case("reads a later step", NotUpstream, wf("a -> b -> c", "").replace("command = [\"true\"]\n\n[steps.c]", "command = [\"${c.x}\"]\n\n[steps.c]"), "\"|${c.x}\""),
        case("reads a parallel sibling", NotUpstream, wf("a ==> (b, c) >== d", "").replace("command = [\"true\"]\n\n[steps.c]", "command = [\"${c.x}\"]\n\n[steps.c]"), "\"|${c.x}\""),
        case("loop variable out of scope", OutOfScope, wf("a **(x = regions) --< (c) >-- b", "").replace("command = [\"true\"]\n\n[steps.c]", "command = [\"${x}\"]\n\n[steps.c]"), "\"|${x}\""),
        case("missing sub-workflow file", Io, wf("a -> e", "\n[steps.e]\nkind = \"subworkflow\"\nworkflow = \"no-such-file.toml\"\n"), "workflow = |\"no-such"),
    ]
}

#[test]
fn every_malformed_workflow_reports_its_error_at_its_place() {
    let cases = cases();
    assert!(cases.len() >= 30, "the issue asks for at least 30 cases");
    let mut failures = Vec::new();
    for c in &cases {
        let loaded = kaon_model::load_str(Path::new("case.toml"), &c.text);
        let want = line_col(&c.text, c.at);
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.code, d.line_col(&loaded.sources), d.message.clone()))
            .collect();
        if loaded.result.is_some() {
            failures.push(format!("{}: accepted", c.name));
            continue;
        }
        if !errors
            .iter()
            .any(|(code, lc, _)| *code == c.code && *lc == want)
        {
            failures.push(format!(
                "{}: want {:?} at {}:{}, got {:?}",
                c.name, c.code, want.0, want.1, errors
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let text = wf(
        "a -> zz -> b",
        "\n[steps.e]\nkind = \"noop\"\nmemory = \"4x\"\ncolour = 1\n",
    );
    let loaded = kaon_model::load_str(Path::new("many.toml"), &text);
    let codes: Vec<Code> = loaded.diagnostics.iter().map(|d| d.code).collect();
    for want in [Code::UnknownStep, Code::InvalidValue, Code::UnknownKey] {
        assert!(codes.contains(&want), "{want:?} missing from {codes:?}");
    }
}

#[test]
fn rich_rendering_names_file_line_column_and_underlines() {
    let text = wf("a -> zz", "");
    let loaded = kaon_model::load_str(Path::new("wf.toml"), &text);
    let out = loaded.diagnostics.render(&loaded.sources, false);
    assert!(out.contains("error[unknown-step]"), "{out}");
    assert!(out.contains("wf.toml:3:16"), "{out}");
    assert!(out.contains("^^"), "underline missing: {out}");
    assert!(out.contains("help:"), "{out}");
    let short = loaded.diagnostics.render_short(&loaded.sources);
    assert!(
        short.starts_with("wf.toml:3:16: error[unknown-step]"),
        "{short}"
    );
}
