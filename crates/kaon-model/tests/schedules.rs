//! `[[workflow.schedule]]` and `[[workflow.trigger]]`: what a good file
//! reads into, and every mistake reported at its file:line:col.
//!
//! As in `malformed.rs`, the expected place is a `|` inside a snippet of
//! the case's own text, so positions are never counted by hand.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::path::Path;

use kaon_model::Loaded;
use kaon_model::diag::{Code, Severity};
use kaon_schedule::{CatchUp, Concurrency};
use serde_json::json;

/// A workflow with parameters of each sort, and `extra` appended.
fn wf(extra: &str) -> String {
    format!(
        r#"[workflow]
name = "train"
flow = '''a'''

[params]
cohort_size = {{ type = "int" }}
region = "US"
day = {{ type = "string", default = "today" }}
token = {{ type = "string", secret = true, from_env = "TOKEN" }}
weights = {{ type = "list<float>", default = [1.0] }}

[steps.a]
kind = "noop"
{extra}"#
    )
}

fn load(text: &str) -> Loaded {
    kaon_model::load_str(Path::new("wf.toml"), text)
}

/// Line and column of the `|` in `at`, a snippet of `text`.
fn line_col(text: &str, at: &str) -> (usize, usize) {
    let needle = at.replace('|', "");
    let bar = at.find('|').expect("marker has a |");
    let start = text
        .find(&needle)
        .unwrap_or_else(|| panic!("snippet {needle:?} not in text"));
    let before = &text[..start + bar];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The errors as `(code, (line, col), message, help)`.
fn errors(loaded: &Loaded) -> Vec<(Code, (usize, usize), String, String)> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            (
                d.code,
                d.line_col(&loaded.sources),
                d.message.clone(),
                d.help.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_good_file_reads_into_schedules_and_triggers() {
    let text = wf(r#"
[[workflow.schedule]]
name = "nightly"
cron = "0 3 * * *"
timezone = "Europe/Amsterdam"
params = { cohort_size = 1000, weights = [1, 2.5] }
catch_up = "all"
catch_up_limit = 10
concurrency = "queue"

[[workflow.schedule]]
cron = "*/30 * * * * *"
params = { cohort_size = 5, region = "CA" }

[[workflow.trigger]]
name = "after-ingest"
on_success = "ingest"
params = { cohort_size = "${outputs.rows}", day = "day=${outputs.day}", token = "${outputs.token}" }
concurrency = "queue"

[[workflow.trigger]]
on_success = "export"
[workflow.trigger.params]
cohort_size = 3
"#);
    let loaded = load(&text);
    let shown = loaded.diagnostics.render_short(&loaded.sources);
    assert!(loaded.diagnostics.is_empty(), "{shown}");
    let w = loaded.result.unwrap().workflow;

    assert_eq!(w.schedules.len(), 2);
    let s = &w.schedules[0];
    assert_eq!(s.name, "nightly");
    assert_eq!(s.cron, "0 3 * * *");
    assert_eq!(s.timezone, "Europe/Amsterdam");
    assert_eq!(
        serde_json::to_value(&s.params).unwrap(),
        json!({ "cohort_size": 1000, "weights": [1, 2.5] })
    );
    assert_eq!(s.catch_up, CatchUp::All);
    assert_eq!(s.catch_up_limit, 10);
    assert_eq!(s.concurrency, Concurrency::Queue);
    assert_eq!(s.parse_cron().unwrap().timezone(), "Europe/Amsterdam");
    // Defaults.
    let s = &w.schedules[1];
    assert_eq!(s.name, "schedule-2");
    assert_eq!(s.timezone, "UTC");
    assert_eq!(s.catch_up, CatchUp::Latest);
    assert_eq!(s.catch_up_limit, 100);
    assert_eq!(s.concurrency, Concurrency::Skip);

    assert_eq!(w.triggers.len(), 2);
    let t = &w.triggers[0];
    assert_eq!(t.name, "after-ingest");
    assert_eq!(t.on_success, "ingest");
    assert_eq!(t.concurrency, Concurrency::Queue);
    let up = json!({ "rows": 12, "day": "2024-06-01", "token": "s3cr3t" });
    assert_eq!(
        serde_json::Value::Object(t.bind(up.as_object().unwrap()).unwrap()),
        json!({ "cohort_size": 12, "day": "day=2024-06-01", "token": "s3cr3t" })
    );
    let t = &w.triggers[1];
    assert_eq!(t.name, "trigger-2");
    assert_eq!(t.concurrency, Concurrency::Skip);

    // The workflow's JSON form carries them.
    let j = serde_json::to_value(&w).unwrap();
    assert_eq!(j["schedules"][0]["catch_up"], "all");
    assert_eq!(j["triggers"][0]["on_success"], "ingest");
}

#[test]
fn a_workflow_without_them_has_none() {
    let loaded = load(&wf("").replace("cohort_size = { type = \"int\" }\n", ""));
    let w = loaded.result.unwrap().workflow;
    assert!(w.schedules.is_empty());
    assert!(w.triggers.is_empty());
}

#[test]
fn a_single_table_is_one_schedule() {
    let loaded = load(&wf(
        "\n[workflow.schedule]\ncron = \"@daily\"\nparams = { cohort_size = 1 }\n",
    ));
    let shown = loaded.diagnostics.render_short(&loaded.sources);
    let w = loaded.result.unwrap_or_else(|| panic!("{shown}")).workflow;
    assert_eq!(w.schedules.len(), 1);
    assert_eq!(w.schedules[0].name, "schedule-1");
}

#[test]
fn catch_up_limit_without_all_is_a_warning() {
    let text = wf(
        "\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = { cohort_size = 1 }\ncatch_up_limit = 5\n",
    );
    let loaded = load(&text);
    assert!(loaded.result.is_some());
    let warnings: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| (d.code, d.line_col(&loaded.sources)))
        .collect();
    assert_eq!(
        warnings,
        [(Code::Conflict, line_col(&text, "catch_up_limit = |5"))]
    );
}

/// A schedule with the required parameter given, and `body` added.
fn schedule(body: &str) -> String {
    wf(&format!(
        "\n[[workflow.schedule]]\nparams = {{ cohort_size = 1 }}\n{body}\n"
    ))
}

fn trigger(body: &str) -> String {
    wf(&format!(
        "\n[[workflow.trigger]]\non_success = \"ingest\"\n{body}\n"
    ))
}

struct Case {
    name: &'static str,
    code: Code,
    text: String,
    /// A snippet of `text` with `|` where the error must point.
    at: &'static str,
    /// Words the message or the help must hold.
    says: &'static [&'static str],
}

fn case(
    name: &'static str,
    code: Code,
    text: String,
    at: &'static str,
    says: &'static [&'static str],
) -> Case {
    Case {
        name,
        code,
        text,
        at,
        says,
    }
}

fn cases() -> Vec<Case> {
    use Code::*;
    let two = |a: &str, b: &str| {
        wf(&format!(
            "\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = {{ cohort_size = 1 }}\n{a}\n\n[[workflow.schedule]]\ncron = \"@hourly\"\nparams = {{ cohort_size = 2 }}\n{b}\n"
        ))
    };
    vec![
        // --- cron and time zone ---
        case(
            "cron with 4 fields",
            InvalidValue,
            schedule("cron = \"0 3 * *\""),
            "cron = |\"0 3 * *\"",
            &["has 4 fields", "minute hour"],
        ),
        case(
            "cron field out of range",
            InvalidValue,
            schedule("cron = \"61 3 * * *\""),
            "cron = |\"61",
            &["minute field `61`", "0-59"],
        ),
        case(
            "cron nickname misspelt",
            InvalidValue,
            schedule("cron = \"@dayly\""),
            "cron = |\"@dayly\"",
            &["did you mean `@daily`?"],
        ),
        case(
            "cron that never fires",
            InvalidValue,
            schedule("cron = \"0 0 30 2 *\""),
            "cron = |\"0 0 30",
            &["never fires"],
        ),
        case(
            "cron not a string",
            InvalidValue,
            schedule("cron = 3"),
            "cron = |3",
            &["must be a string"],
        ),
        case(
            "no cron",
            MissingKey,
            wf("\n[[workflow.schedule]]\nparams = { cohort_size = 1 }\n"),
            "|[[workflow.schedule]]",
            &["has no `cron`"],
        ),
        case(
            "unknown time zone",
            InvalidValue,
            schedule("cron = \"@daily\"\ntimezone = \"Europe/Amsterdm\""),
            "timezone = |\"Europe",
            &[
                "unknown time zone `Europe/Amsterdm`",
                "did you mean `Europe/Amsterdam`?",
            ],
        ),
        case(
            "time zone in lower case",
            InvalidValue,
            schedule("cron = \"@daily\"\ntimezone = \"america/new_york\""),
            "timezone = |\"america",
            &["did you mean `America/New_York`?"],
        ),
        // --- parameters ---
        case(
            "unknown parameter",
            UnknownKey,
            wf(
                "\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = { cohort_size = 1, cohort_sise = 2 }\n",
            ),
            "|cohort_sise = 2",
            &["no parameter `cohort_sise`", "did you mean `cohort_size`?"],
        ),
        case(
            "parameter of the wrong type",
            TypeMismatch,
            wf("\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = { cohort_size = \"big\" }\n"),
            "cohort_size = |\"big\"",
            &["is an int", "gives a string"],
        ),
        case(
            "list item of the wrong type",
            TypeMismatch,
            schedule("cron = \"@daily\"")
                .replace("cohort_size = 1 }", "cohort_size = 1, weights = [\"x\"] }"),
            "weights = |[\"x\"]",
            &["list<float>"],
        ),
        case(
            "required parameter not given",
            MissingKey,
            wf("\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = { region = \"CA\" }\n"),
            "params = |{ region",
            &["required parameter `cohort_size`", "nobody to ask"],
        ),
        case(
            "required parameter, no params",
            MissingKey,
            wf("\n[[workflow.schedule]]\ncron = \"@daily\"\n"),
            "|[[workflow.schedule]]",
            &["required parameter `cohort_size`"],
        ),
        case(
            "secret written in the file",
            Conflict,
            schedule("cron = \"@daily\"")
                .replace("cohort_size = 1 }", "cohort_size = 1, token = \"abc\" }"),
            "token = |\"abc\"",
            &["secret parameter `token`", "from_env"],
        ),
        case(
            "params not a table",
            InvalidValue,
            wf("\n[[workflow.schedule]]\ncron = \"@daily\"\nparams = 3\n"),
            "params = |3",
            &["must be a table"],
        ),
        // --- names ---
        case(
            "duplicate names",
            DuplicateName,
            two("name = \"nightly\"", "name = \"nightly\""),
            "cohort_size = 2 }\nname = |\"nightly\"",
            &["`nightly` is used twice"],
        ),
        case(
            "a name equal to a default one",
            DuplicateName,
            two("", "name = \"schedule-1\""),
            "name = |\"schedule-1\"",
            &["`schedule-1` is used twice"],
        ),
        case(
            "a trigger named like a schedule",
            DuplicateName,
            schedule("cron = \"@daily\"\nname = \"nightly\"")
                + "\n[[workflow.trigger]]\nname = \"nightly\"\non_success = \"x\"\nparams = { cohort_size = 1 }\n",
            "[[workflow.trigger]]\nname = |\"nightly\"",
            &["`nightly` is used twice"],
        ),
        case(
            "a name with a space",
            InvalidValue,
            schedule("cron = \"@daily\"\nname = \"my schedule\""),
            "name = |\"my schedule\"",
            &["not a valid schedule name"],
        ),
        // --- keys and policies ---
        case(
            "unknown schedule key",
            UnknownKey,
            schedule("cron = \"@daily\"\ncatchup = \"all\""),
            "|catchup = ",
            &["did you mean `catch_up`?"],
        ),
        case(
            "unknown workflow key",
            UnknownKey,
            wf("\n[[workflow.schedules]]\ncron = \"@daily\"\n"),
            "[[workflow.|schedules]]",
            &["did you mean `schedule`?"],
        ),
        case(
            "unknown catch-up policy",
            InvalidValue,
            schedule("cron = \"@daily\"\ncatch_up = \"newest\""),
            "catch_up = |\"newest\"",
            &["`newest` is not a `catch_up` policy", "skip, latest, all"],
        ),
        case(
            "misspelt concurrency policy",
            InvalidValue,
            schedule("cron = \"@daily\"\nconcurrency = \"queu\""),
            "concurrency = |\"queu\"",
            &["did you mean `queue`?"],
        ),
        case(
            "catch-up limit of 0",
            InvalidValue,
            schedule("cron = \"@daily\"\ncatch_up = \"all\"\ncatch_up_limit = 0"),
            "catch_up_limit = |0",
            &["between 1 and"],
        ),
        case(
            "catch-up limit not a number",
            InvalidValue,
            schedule("cron = \"@daily\"\ncatch_up = \"all\"\ncatch_up_limit = \"ten\""),
            "catch_up_limit = |\"ten\"",
            &["must be an integer"],
        ),
        case(
            "schedule not a table",
            InvalidValue,
            wf("").replace("flow = '''a'''", "flow = '''a'''\nschedule = \"@daily\""),
            "schedule = |\"@daily\"",
            &["must be tables", "[[workflow.schedule]]"],
        ),
        // --- triggers ---
        case(
            "no on_success",
            MissingKey,
            wf("\n[[workflow.trigger]]\nparams = { cohort_size = 1 }\n"),
            "|[[workflow.trigger]]",
            &["has no `on_success`"],
        ),
        case(
            "triggers itself",
            Conflict,
            wf("\n[[workflow.trigger]]\non_success = \"train\"\nparams = { cohort_size = 1 }\n"),
            "on_success = |\"train\"",
            &["this same workflow"],
        ),
        case(
            "unknown trigger key",
            UnknownKey,
            trigger("on_sucess = \"x\"\nparams = { cohort_size = 1 }"),
            "|on_sucess",
            &["did you mean `on_success`?"],
        ),
        case(
            "reference to a parameter",
            InvalidValue,
            trigger("params = { cohort_size = 1, day = \"d-${params.day}\" }"),
            "\"d-|${params.day}\"",
            &["`${params.day}` is not a reference", "${outputs.NAME}"],
        ),
        case(
            "unclosed reference",
            InvalidValue,
            trigger("params = { cohort_size = 1, day = \"${outputs.day\" }"),
            "day = \"|${outputs.day\"",
            &["not a reference"],
        ),
        case(
            "text into an int",
            TypeMismatch,
            trigger("params = { cohort_size = \"n-${outputs.rows}\" }"),
            "cohort_size = |\"n-",
            &["is an int", "gives a string"],
        ),
        case(
            "trigger without a required parameter",
            MissingKey,
            trigger("concurrency = \"allow\""),
            "|[[workflow.trigger]]",
            &["trigger `trigger-1` does not give the required parameter `cohort_size`"],
        ),
        case(
            "trigger with a literal secret",
            Conflict,
            trigger("params = { cohort_size = 1, token = \"t-${outputs.x}\" }"),
            "token = |\"t-",
            &["secret parameter `token`"],
        ),
        case(
            "trigger with a bad concurrency",
            InvalidValue,
            trigger("params = { cohort_size = 1 }\nconcurrency = \"later\""),
            "concurrency = |\"later\"",
            &["allow, skip, queue"],
        ),
    ]
}

#[test]
fn every_mistake_is_reported_at_its_place() {
    let mut failures = Vec::new();
    let cases = cases();
    for c in &cases {
        let loaded = load(&c.text);
        let want = line_col(&c.text, c.at);
        let errors = errors(&loaded);
        if loaded.result.is_some() {
            failures.push(format!("{}: accepted", c.name));
            continue;
        }
        let Some((_, _, message, help)) = errors
            .iter()
            .find(|(code, lc, _, _)| *code == c.code && *lc == want)
        else {
            failures.push(format!(
                "{}: want {:?} at {}:{}, got {:?}",
                c.name, c.code, want.0, want.1, errors
            ));
            continue;
        };
        let said = format!("{message} / {help}");
        for word in c.says {
            if !said.contains(word) {
                failures.push(format!("{}: `{word}` not in: {said}", c.name));
            }
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
fn the_rendered_error_names_file_line_and_column() {
    let text = schedule("cron = \"0 3 * *\"");
    let loaded = load(&text);
    let short = loaded.diagnostics.render_short(&loaded.sources);
    let (line, col) = line_col(&text, "cron = |\"0 3");
    assert!(
        short.starts_with(&format!("wf.toml:{line}:{col}: error[invalid-value]: `0 3 * *` is not a cron expression: it has 4 fields")),
        "{short}"
    );
}

#[test]
fn a_sub_workflow_may_have_schedules() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kaon-model-schedules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("child.toml"),
        "[workflow]\nname = \"child\"\nflow = '''a'''\n\n[[workflow.schedule]]\ncron = \"@daily\"\n\n[steps.a]\nkind = \"noop\"\n",
    )
    .unwrap();
    let parent = dir.join("parent.toml");
    std::fs::write(
        &parent,
        "[workflow]\nname = \"parent\"\nflow = '''c'''\n\n[steps.c]\nkind = \"subworkflow\"\nworkflow = \"child.toml\"\n",
    )
    .unwrap();
    let loaded = kaon_model::load(&parent);
    let shown = loaded.diagnostics.render_short(&loaded.sources);
    let v = loaded.result.unwrap_or_else(|| panic!("{shown}"));
    assert!(v.workflow.schedules.is_empty());
    assert_eq!(v.children["c"].workflow.schedules.len(), 1);
}
