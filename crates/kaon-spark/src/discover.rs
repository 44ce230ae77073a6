//! Finding the driver of a submission whose answer was lost.
//!
//! Before a REST submission goes out, kaon writes down a random tag and
//! the drivers the master already knows ([`PendingSubmission`]). The tag
//! goes into the submission as `spark.kaon.tag`; the worker then prints it
//! in the driver's launch command, the first line of the driver's stderr.
//! Among the master's new drivers with the step's main class, the one
//! whose launch command carries the tag is the step's.

use serde_json::Value;

use crate::SparkError;
use crate::record::PendingSubmission;
use crate::rest::{DriverState, driver_log, drivers};

/// A tag no other submission has, from the attempt's `label`: it only has
/// to be unique, not secret.
pub fn new_tag(label: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(label.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.finalize().to_hex()[..24].to_string()
}

/// The REST body with `spark.kaon.tag` set: the driver's launch command
/// (the first line of its stderr on the worker) then names the tag.
pub fn with_tag(mut body: Value, tag: &str) -> Value {
    if let Some(props) = body["sparkProperties"].as_object_mut() {
        props.insert("spark.kaon.tag".into(), tag.into());
    }
    body
}

/// True when a driver's launch command sets `spark.kaon.tag` to `tag`
/// (the whole value: the worker quotes each argument).
pub fn carries_tag(log: &str, tag: &str) -> bool {
    let needle = format!("-Dspark.kaon.tag={tag}");
    log.match_indices(&needle).any(|(i, _)| {
        log[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '"' || c == '\'' || c.is_whitespace())
    })
}

/// The ids of the drivers a master knows now, for a [`PendingSubmission`];
/// none when they cannot be listed.
pub async fn known_drivers(master_ui: Option<&str>) -> Option<Vec<String>> {
    let ds = drivers(master_ui?).await.ok()?;
    Some(ds.into_iter().map(|d| d.id).collect())
}

/// Where a pending submission stands on the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// This driver carries the tag.
    Driver(String),
    /// No driver carries it: the master never got the submission.
    Nothing,
    /// These drivers may carry it but have not launched yet (or their
    /// logs cannot be read right now).
    Undecided(Vec<String>),
}

/// Looks for the driver of `p` among the master's drivers that are new
/// since `p` was written and have its main class, by reading the launch
/// command each worker writes at the top of the driver's stderr.
///
/// A driver in `ERROR` without a readable launch command is taken as not
/// this one: the master could not start it, so it ran nothing, and
/// submitting again cannot make two drivers run. Any other driver whose
/// launch command cannot be read (not launched yet, its worker gone) stays
/// undecided.
pub async fn find_driver(p: &PendingSubmission) -> Result<Found, SparkError> {
    let Some(ui) = &p.ui else {
        return Err(SparkError::MasterUiUnknown);
    };
    let all = drivers(ui).await.map_err(|e| SparkError::ListDrivers {
        source: Box::new(e),
    })?;
    let mut undecided = Vec::new();
    let candidates = all.into_iter().filter(|d| {
        d.main_class == p.main_class && !p.known.as_ref().is_some_and(|k| k.contains(&d.id))
    });
    for d in candidates {
        let log = match &d.worker_ui {
            Some(w) => driver_log(w, &d.id, "stderr", 0, 64 * 1024).await.ok(),
            None => None,
        };
        match log {
            Some(text) if carries_tag(&text, &p.tag) => return Ok(Found::Driver(d.id)),
            Some(text) if text.contains("Launch Command:") => {}
            _ if d.state == DriverState::Error => {}
            _ => undecided.push(d.id),
        }
    }
    Ok(if undecided.is_empty() {
        Found::Nothing
    } else {
        Found::Undecided(undecided)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use axum::routing::get;
    use serde_json::json;

    /// A fake standalone master and worker on one port: `/json/` lists
    /// `drivers`, `/log/` serves `logs` (driver id -> stderr).
    pub(crate) async fn fake_master(drivers: Value, logs: Vec<(&'static str, String)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut page = drivers;
        page["workers"] = json!([{"id": "worker-1", "webuiaddress": base}]);
        let app = axum::Router::new()
            .route("/json/", get(move || async move { axum::Json(page) }))
            .route(
                "/log/",
                get(move |uri: axum::http::Uri| async move {
                    let id = uri
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("driverId="))
                        .unwrap_or("")
                        .to_string();
                    match logs.iter().find(|(d, _)| *d == id) {
                        Some((_, text)) => Ok(format!(
                            "==== Bytes 0-{n} of {n} of /work/{id}/stderr ====\n{text}",
                            n = text.len()
                        )),
                        None => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn pending(ui: &str, known: &[&str]) -> PendingSubmission {
        PendingSubmission {
            spark: crate::record::PENDING.into(),
            tag: "t0g".into(),
            rest: "http://127.0.0.1:1".into(),
            ui: Some(ui.into()),
            version: "3.5.9".into(),
            main_class: "Job".into(),
            known: Some(known.iter().map(|s| s.to_string()).collect()),
            run: "r".into(),
            node: 0,
            attempt: 1,
        }
    }

    fn driver(id: &str, state: &str, class: &str, worker: Option<&str>) -> Value {
        json!({"id": id, "state": state, "mainclass": class, "worker": worker.unwrap_or("None")})
    }

    fn launch(tag: &str) -> String {
        format!("Launch Command: \"java\" \"-Dspark.kaon.tag={tag}\" \"DriverWrapper\"\n====\n")
    }

    #[test]
    fn a_tag_matches_only_whole() {
        let log = launch("abc");
        assert!(carries_tag(&log, "abc"));
        assert!(!carries_tag(&log, "ab"));
        assert!(carries_tag("-Dspark.kaon.tag=abc", "abc"));
        let body = with_tag(json!({"sparkProperties": {}}), "abc");
        assert_eq!(body["sparkProperties"]["spark.kaon.tag"], "abc");
        assert_ne!(new_tag("r/0/1"), new_tag("r/0/1"));
    }

    #[tokio::test]
    async fn finds_the_tagged_driver_among_new_ones_with_its_main_class() {
        let ui = fake_master(
            json!({
                "activedrivers": [
                    driver("d-old", "RUNNING", "Job", Some("worker-1")),
                    driver("d-other", "RUNNING", "Other", Some("worker-1")),
                    driver("d-mine", "RUNNING", "Job", Some("worker-1")),
                ],
                "completeddrivers": [driver("d-done", "FINISHED", "Job", Some("worker-1"))],
            }),
            vec![
                ("d-old", launch("t0g")),   // known before: never a candidate
                ("d-other", launch("t0g")), // another main class
                ("d-done", launch("someone-else")),
                ("d-mine", launch("t0g")),
            ],
        )
        .await;
        let found = find_driver(&pending(&ui, &["d-old"])).await.unwrap();
        assert_eq!(found, Found::Driver("d-mine".into()));
        let known = known_drivers(Some(&ui)).await.unwrap();
        assert_eq!(known, ["d-old", "d-other", "d-mine", "d-done"]);
    }

    #[tokio::test]
    async fn nothing_when_every_candidate_launched_without_the_tag_or_never_ran() {
        let ui = fake_master(
            json!({
                "activedrivers": [driver("d-a", "RUNNING", "Job", Some("worker-1"))],
                "completeddrivers": [driver("d-err", "ERROR", "Job", None)],
            }),
            vec![("d-a", launch("t0g-not"))],
        )
        .await;
        // `t0g` is a prefix of `t0g-not`: still not the same tag.
        let mut p = pending(&ui, &[]);
        p.tag = "t0g-no".into();
        assert_eq!(find_driver(&p).await.unwrap(), Found::Nothing);
        p.tag = "zzz".into();
        assert_eq!(find_driver(&p).await.unwrap(), Found::Nothing);
    }

    #[tokio::test]
    async fn undecided_while_a_candidate_has_not_launched() {
        let ui = fake_master(
            json!({
                "activedrivers": [
                    driver("d-waiting", "SUBMITTED", "Job", None),
                    driver("d-starting", "RUNNING", "Job", Some("worker-1")),
                ],
                // Ended, but its worker is gone: it may have run, so it is
                // not taken as "not this one".
                "completeddrivers": [driver("d-gone", "FINISHED", "Job", Some("worker-9"))],
            }),
            vec![], // no logs yet
        )
        .await;
        assert_eq!(
            find_driver(&pending(&ui, &[])).await.unwrap(),
            Found::Undecided(vec![
                "d-waiting".into(),
                "d-starting".into(),
                "d-gone".into()
            ])
        );
    }

    #[tokio::test]
    async fn an_unreachable_master_is_an_error_not_an_answer() {
        let mut p = pending("http://127.0.0.1:1", &[]);
        let e = find_driver(&p).await.unwrap_err();
        assert!(
            matches!(e, SparkError::ListDrivers { .. }) && e.is_transient(),
            "{e}"
        );
        p.ui = None;
        assert!(matches!(
            find_driver(&p).await,
            Err(SparkError::MasterUiUnknown)
        ));
    }
}
