#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use serde_json::json;

use super::*;

fn trigger(params: Value) -> TriggerSpec {
    TriggerSpec {
        name: "after-ingest".into(),
        on_success: "ingest".into(),
        params: serde_json::from_value(params).unwrap(),
        concurrency: Concurrency::Queue,
    }
}

fn outputs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn a_whole_reference_takes_the_outputs_value_and_type() {
    let t = trigger(json!({
        "day": "${outputs.day}",
        "n": "${outputs.rows}",
        "regions": "${outputs.regions}",
        "fixed": 3,
        "list": ["${outputs.day}"],
    }));
    let up = outputs(json!({ "day": "2024-06-01", "rows": 1200, "regions": ["US", "CA"] }));
    assert_eq!(
        Value::Object(t.bind(&up).unwrap()),
        json!({
            "day": "2024-06-01",
            "n": 1200,
            "regions": ["US", "CA"],
            "fixed": 3,
            // Only a parameter's own string is bound.
            "list": ["${outputs.day}"],
        })
    );
}

#[test]
fn a_reference_inside_text_is_interpolated() {
    let t = trigger(json!({
        "path": "s3://bucket/${outputs.day}/part-${outputs.rows}.parquet",
        "note": "cost $5, literal $${outputs.day}",
        "spaced": " ${outputs.day}",
    }));
    let up = outputs(json!({ "day": "2024-06-01", "rows": 7 }));
    let bound = t.bind(&up).unwrap();
    assert_eq!(bound["path"], "s3://bucket/2024-06-01/part-7.parquet");
    assert_eq!(bound["note"], "cost $5, literal ${outputs.day}");
    assert_eq!(bound["spaced"], " 2024-06-01");
}

#[test]
fn a_missing_output_is_named() {
    let t = trigger(json!({ "day": "${outputs.date}" }));
    let e = t
        .bind(&outputs(json!({ "day": "x", "rows": 1 })))
        .unwrap_err();
    assert_eq!(
        e,
        ScheduleError::MissingOutput {
            param: "day".into(),
            output: "date".into(),
            available: vec!["day".into(), "rows".into()],
        }
    );
    assert_eq!(
        e.to_string(),
        "parameter `day` takes `${outputs.date}`, but the upstream run has no output `date` (it has: day, rows)"
    );
    let e = trigger(json!({ "p": "x-${outputs.gone}" }))
        .bind(&Map::new())
        .unwrap_err();
    assert!(e.to_string().ends_with("(it has: none)"), "{e}");
}

#[test]
fn other_references_are_refused_with_their_place() {
    for (text, bad, offset) in [
        ("${params.day}", "${params.day}", 0),
        ("a-${outputs.}", "${outputs.}", 2),
        ("x ${outputs.day", "${outputs.day", 2),
        ("${outputs.a b}", "${outputs.a b}", 0),
    ] {
        let e = pieces("p", text).unwrap_err();
        assert_eq!(
            e,
            ScheduleError::InvalidReference {
                param: "p".into(),
                text: bad.into(),
                offset,
            },
            "{text}"
        );
        assert_eq!(&text[offset..offset + bad.len()], bad);
        assert!(trigger(json!({ "p": text })).bind(&Map::new()).is_err());
    }
    assert_eq!(
        pieces("p", "a${outputs.x}b").unwrap(),
        [
            Piece::Text("a".into()),
            Piece::Output("x"),
            Piece::Text("b".into())
        ]
    );
    assert_eq!(pieces("p", "").unwrap(), [Piece::Text(String::new())]);
}

#[test]
fn specs_are_stored_as_json_with_defaults() {
    let s: ScheduleSpec =
        serde_json::from_value(json!({ "name": "nightly", "cron": "0 3 * * *" })).unwrap();
    assert_eq!(s.timezone, "UTC");
    assert_eq!(s.catch_up, CatchUp::Latest);
    assert_eq!(s.catch_up_limit, 100);
    assert_eq!(s.concurrency, Concurrency::Skip);
    assert!(s.params.is_empty());
    assert_eq!(s.parse_cron().unwrap().timezone(), "UTC");

    let s = ScheduleSpec {
        name: "nightly".into(),
        cron: "0 3 * * *".into(),
        timezone: "Europe/Amsterdam".into(),
        params: serde_json::from_value(json!({ "cohort_size": 1000 })).unwrap(),
        catch_up: CatchUp::All,
        catch_up_limit: 10,
        concurrency: Concurrency::Queue,
    };
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["catch_up"], "all");
    assert_eq!(j["concurrency"], "queue");
    assert_eq!(serde_json::from_value::<ScheduleSpec>(j).unwrap(), s);

    let t = trigger(json!({ "day": "${outputs.day}" }));
    let j = serde_json::to_value(&t).unwrap();
    assert_eq!(j["on_success"], "ingest");
    assert_eq!(serde_json::from_value::<TriggerSpec>(j).unwrap(), t);
    let t: TriggerSpec =
        serde_json::from_value(json!({ "name": "t", "on_success": "up" })).unwrap();
    assert_eq!(t.concurrency, Concurrency::Skip);
}
