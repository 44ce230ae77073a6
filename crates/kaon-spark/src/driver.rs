//! A cluster-mode driver on a standalone master, from the submission to
//! its end: watching it ([`watch`]), killing it ([`kill_until_ended`]),
//! and, when the master's answer to the submission was lost, finding it or
//! submitting again ([`resolve`]).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::SparkError;
use crate::discover::{Found, find_driver, with_tag};
use crate::logs::DriverLogs;
use crate::record::{DriverRecord, PendingSubmission};
use crate::rest::{DriverState, DriverStatus, RestClient, worker_ui};

/// Status polls in a row that may say `UNKNOWN` before the driver counts
/// as forgotten (a master restarted without recovery).
const UNKNOWN_POLLS: u32 = 50;

/// Watches the driver of `record` until the master reports an end,
/// copying its logs from its worker into `logs` on the way (at most once a
/// second, and once more at the end). Polls every `poll`, at most 250 ms
/// apart. A master that cannot be reached is asked again, with `warn`
/// told of the first failure and every hundredth. Returns the last status:
/// terminal, or [`DriverState::Unknown`] when the master forgot the driver.
pub async fn watch(
    record: &DriverRecord,
    poll: Duration,
    logs: &mut DriverLogs,
    warn: impl Fn(&str),
) -> DriverStatus {
    let rest = RestClient::new(&record.rest);
    let id = &record.submission;
    let mut unknown = 0u32;
    let mut failures = 0u32;
    let mut worker: Option<String> = None;
    let mut last_logs = Instant::now() - Duration::from_secs(10);
    let status = loop {
        match rest.status(id).await {
            Ok(st) if st.state.is_terminal() => break st,
            Ok(st) => {
                failures = 0;
                if st.state == DriverState::Unknown {
                    unknown += 1;
                    if unknown > UNKNOWN_POLLS {
                        break st;
                    }
                } else {
                    unknown = 0;
                }
                if worker.is_none() {
                    worker = find_worker(record, &st).await;
                }
                if let Some(w) = &worker
                    && last_logs.elapsed() > Duration::from_secs(1)
                {
                    last_logs = Instant::now();
                    logs.copy(w, id).await;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(100) {
                    warn(&format!(
                        "cannot read the status of {id} ({e}); still trying"
                    ));
                }
            }
        }
        tokio::time::sleep(poll.min(Duration::from_millis(250))).await;
    };
    if worker.is_none() {
        worker = find_worker(record, &status).await;
    }
    if let Some(w) = &worker {
        logs.copy(w, id).await;
    }
    status
}

/// How a watched driver ended, for the step's attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The master says `FINISHED`.
    Succeeded,
    /// The master says `KILLED`.
    Killed,
    /// The driver failed (`FAILED`), or the master could not start it
    /// (`ERROR`).
    Failed {
        /// Why, for people: the driver's own error when its logs name one.
        message: String,
    },
    /// The master no longer knows the driver.
    Forgotten {
        /// What was found, for people.
        message: String,
    },
}

impl Ending {
    /// The ending of `record`'s driver from its last status. A failed
    /// driver's error is read from its logs (`stderr`, `stdout`, as copied
    /// by [`watch`]), else taken from the listener's last job failure.
    pub fn of(
        record: &DriverRecord,
        status: &DriverStatus,
        stderr: &Path,
        stdout: &Path,
        listener: Option<&str>,
    ) -> Ending {
        let id = &record.submission;
        match status.state {
            DriverState::Finished => Ending::Succeeded,
            DriverState::Killed => Ending::Killed,
            DriverState::Failed => Ending::Failed {
                message: format!(
                    "the Spark driver {id} failed: {}",
                    crate::diagnose::driver_error(stderr, stdout, listener)
                ),
            },
            DriverState::Error => Ending::Failed {
                message: format!(
                    "the Spark master could not start the driver {id}: {}",
                    status.message.as_deref().unwrap_or("no reason given")
                ),
            },
            _ => Ending::Forgotten {
                message: format!("the Spark master no longer knows the driver {id}"),
            },
        }
    }
}

/// The web UI of the worker a status names, through the master's UI.
async fn find_worker(record: &DriverRecord, st: &DriverStatus) -> Option<String> {
    let (Some(ui), Some(w)) = (&record.ui, &st.worker_id) else {
        return None;
    };
    worker_ui(ui, w).await.ok().flatten()
}

/// Asks the master to kill a driver until it has ended (ten times, a
/// second apart). Whoever watches the driver reports the end once the
/// master says `KILLED`; asking again covers a kill that raced the
/// driver's start.
pub async fn kill_until_ended(record: &DriverRecord) {
    let rest = RestClient::new(&record.rest);
    for _ in 0..10 {
        let _ = rest.kill(&record.submission).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        match rest.status(&record.submission).await {
            Ok(st) if st.state.is_terminal() => return,
            _ => {}
        }
    }
}

/// How a submission whose answer was lost came out.
#[derive(Debug)]
pub enum Resolution {
    /// The master has its driver.
    Found(DriverRecord),
    /// The master never got it; it was submitted now, and this is its
    /// driver.
    Resubmitted(DriverRecord),
    /// A kill came first, and nothing was submitted. With the reason kaon
    /// was still waiting when one of the master's drivers may be the
    /// submission's (it may need killing by hand).
    Killed {
        /// Why kaon could not tell, when it could not.
        undecided: Option<String>,
    },
    /// The master never got it, and submitting again failed.
    Failed(SparkError),
}

/// After a submission whose answer was lost (kaon died, or the request
/// went unanswered): finds the driver it made, or, once it is certain the
/// master never got it, submits `body` again with the same tag. Never
/// submits while a driver that may be this one has not launched: it asks
/// the master again every second, telling `waiting` why (each new reason
/// once), and stops when `kill_requested` says so.
pub async fn resolve(
    p: &PendingSubmission,
    body: Value,
    kill_requested: impl Fn() -> bool,
    mut waiting: impl FnMut(&str),
) -> Resolution {
    let body = with_tag(body, &p.tag);
    let mut told: Option<String> = None;
    loop {
        let why = match find_driver(p).await {
            Ok(Found::Driver(id)) => return Resolution::Found(p.driver(id)),
            Ok(Found::Nothing) if kill_requested() => {
                return Resolution::Killed { undecided: None };
            }
            // Certain now that the master never got it: the same
            // submission, with the same tag, goes out again.
            Ok(Found::Nothing) => match RestClient::new(&p.rest).create(&body).await {
                Ok(id) => return Resolution::Resubmitted(p.driver(id)),
                // Unanswered again: the master is asked again.
                Err(e @ SparkError::NoAnswer { .. }) => e.to_string(),
                Err(e) => return Resolution::Failed(e),
            },
            Ok(Found::Undecided(ids)) => format!(
                "the submission's answer was lost; waiting for {} to launch to tell whether it is this step's driver",
                ids.join(", ")
            ),
            Err(e) => e.to_string(),
        };
        if kill_requested() {
            // Nothing is submitted any more, so there is no second
            // driver; one of these may still be this step's.
            return Resolution::Killed {
                undecided: Some(why),
            };
        }
        if told.as_deref() != Some(why.as_str()) {
            waiting(&why);
            told = Some(why);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use serde_json::json;

    #[test]
    fn the_masters_word_is_the_ending() {
        let record = DriverRecord {
            spark: crate::record::DRIVER.into(),
            submission: "driver-1".into(),
            rest: "http://m:6066".into(),
            ui: None,
            version: "3.5.9".into(),
        };
        let status = |state, message: Option<&str>| DriverStatus {
            state,
            worker_id: None,
            message: message.map(str::to_string),
        };
        let none = Path::new("/nonexistent");
        let end = |st: &DriverStatus| Ending::of(&record, st, none, none, Some("Job 3 failed"));
        assert_eq!(end(&status(DriverState::Finished, None)), Ending::Succeeded);
        assert_eq!(end(&status(DriverState::Killed, None)), Ending::Killed);
        assert_eq!(
            end(&status(DriverState::Failed, None)),
            Ending::Failed {
                message: "the Spark driver driver-1 failed: Job 3 failed".into()
            }
        );
        assert_eq!(
            end(&status(DriverState::Error, Some("no jar"))),
            Ending::Failed {
                message: "the Spark master could not start the driver driver-1: no jar".into()
            }
        );
        assert!(matches!(
            end(&status(DriverState::Unknown, None)),
            Ending::Forgotten { .. }
        ));
    }

    #[tokio::test]
    async fn an_undecided_search_ends_at_a_kill_without_submitting() {
        let ui = crate::discover::tests::fake_master(
            json!({"activedrivers": [{"id": "d-1", "state": "SUBMITTED", "mainclass": "Job", "worker": "None"}]}),
            vec![],
        )
        .await;
        let p = PendingSubmission {
            spark: crate::record::PENDING.into(),
            tag: "t".into(),
            rest: "http://127.0.0.1:1".into(),
            ui: Some(ui),
            version: "3.5.9".into(),
            main_class: "Job".into(),
            known: Some(vec![]),
            run: "r".into(),
            node: 0,
            attempt: 1,
        };
        // d-1 has not launched: undecided, so a kill ends the search
        // without submitting.
        let told = std::cell::RefCell::new(Vec::new());
        let calls = std::cell::Cell::new(0);
        let r = resolve(
            &p,
            json!({"sparkProperties": {}}),
            || {
                calls.set(calls.get() + 1);
                calls.get() > 1
            },
            |w| told.borrow_mut().push(w.to_string()),
        )
        .await;
        match r {
            Resolution::Killed {
                undecided: Some(why),
            } => assert!(why.contains("d-1"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(told.borrow().len(), 1);
    }
}
