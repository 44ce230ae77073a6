//! What finds an attempt again: the [`Handle`] an executor returns from
//! [`crate::Executor::start`] and is given back to re-attach or kill.
//!
//! The engine keeps handles opaque (JSON in the run's state); they cross
//! into and out of the executors here, at the boundary:
//! [`Handle::to_stored`] writes the versioned form
//! (`{"v":1,"kind":"process","pid":..,"start":..}`) and
//! [`Handle::from_stored`] reads it, and also the untyped shapes that runs
//! stored before handles had a version, so that those runs still resume.

use kaon_spark::record::{DRIVER, DriverRecord, PENDING, PendingSubmission};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version [`Handle::to_stored`] writes.
pub const HANDLE_VERSION: u64 = 1;

/// How to find an attempt again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Handle {
    /// A process group on this machine (the local executor's wrapper).
    Process {
        /// The wrapper's pid, also its process group (0: it had already
        /// ended when found, and left its exit status).
        pid: i32,
        /// Its start time in clock ticks after boot (tells pid reuse apart).
        start: u64,
    },
    /// spark-submit in client mode, supervised as a local process.
    SparkClient {
        /// As [`Handle::Process`].
        pid: i32,
        /// As [`Handle::Process`].
        start: u64,
        /// The driver's UI, polled for progress.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ui: Option<String>,
    },
    /// A driver a standalone master accepted through its REST server.
    SparkRest {
        /// The submission id (`driver-...`).
        submission: String,
        /// The master's REST submission server.
        rest: String,
        /// The master's web UI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ui: Option<String>,
        /// The Spark version it was submitted with.
        version: String,
    },
    /// A REST submission that may have gone out, its answer unrecorded:
    /// the master is asked whether it has the driver.
    SparkPending {
        /// The submission's `spark.kaon.tag`.
        tag: String,
        /// The master's REST submission server.
        rest: String,
        /// The master's web UI, which lists its drivers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ui: Option<String>,
        /// The Spark version it is submitted with.
        version: String,
        /// The application's main class, as the master lists it.
        main_class: String,
        /// Drivers the master knew before the submission (none: unknown).
        #[serde(default)]
        known: Option<Vec<String>>,
        /// The run.
        run: String,
        /// The node.
        node: u32,
        /// The attempt.
        attempt: u32,
    },
    /// A sub-workflow step's child run (the engine's own, not an
    /// executor's).
    ChildRun {
        /// The child run's id.
        run: String,
    },
    /// A wait step waiting for a signal (the engine's own).
    Wait {
        /// The signal's name.
        signal: String,
    },
    /// An attempt of the in-memory executor ([`crate::MemoryExecutor`]).
    Memory {
        /// Its id on the simulated machine.
        id: u64,
    },
}

/// Why a stored handle cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Written by a newer kaon.
    #[error("the stored handle has version {found}; this kaon reads up to {HANDLE_VERSION}")]
    Version {
        /// The version found.
        found: Value,
    },
    /// Not a handle of any known shape.
    #[error("the stored handle {stored} is not one this kaon knows: {why}")]
    Shape {
        /// The stored JSON, abridged.
        stored: String,
        /// What did not fit.
        why: String,
    },
}

impl Handle {
    /// The form the engine stores: the fields, `kind` and the version `v`.
    pub fn to_stored(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("v".into(), HANDLE_VERSION.into());
        }
        v
    }

    /// Reads a stored handle: the versioned form, or one of the shapes
    /// stored before it (`{"pid","start"}`, the same with
    /// `"spark":"client"`, a `"spark":"rest"` or `"rest-pending"` record,
    /// a child run's id as a string).
    pub fn from_stored(stored: &Value) -> Result<Handle, HandleError> {
        let shape = |why: String| HandleError::Shape {
            stored: abridged(stored),
            why,
        };
        match stored.get("v") {
            Some(v) if v.as_u64() == Some(HANDLE_VERSION) => {
                let mut fields = stored.clone();
                if let Value::Object(m) = &mut fields {
                    m.remove("v");
                }
                return serde_json::from_value(fields).map_err(|e| shape(e.to_string()));
            }
            Some(v) => return Err(HandleError::Version { found: v.clone() }),
            None => {}
        }
        if let Value::String(run) = stored {
            return Ok(Handle::ChildRun { run: run.clone() });
        }
        let process = || -> Result<(i32, u64), HandleError> {
            let pid = stored["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
            match (pid, stored["start"].as_u64()) {
                (Some(pid), Some(start)) => Ok((pid, start)),
                _ => Err(shape("no pid and start time".into())),
            }
        };
        match stored["spark"].as_str() {
            Some(DRIVER) => serde_json::from_value::<DriverRecord>(stored.clone())
                .map(Handle::from)
                .map_err(|e| shape(e.to_string())),
            Some(PENDING) => serde_json::from_value::<PendingSubmission>(stored.clone())
                .map(Handle::from)
                .map_err(|e| shape(e.to_string())),
            Some("client") => {
                let (pid, start) = process()?;
                let ui = stored["ui"].as_str().map(str::to_string);
                Ok(Handle::SparkClient { pid, start, ui })
            }
            Some(other) => Err(shape(format!("unknown Spark handle `{other}`"))),
            None => process().map(|(pid, start)| Handle::Process { pid, start }),
        }
    }

    /// The process group to watch or signal, for the handles that are one
    /// on this machine.
    pub fn process(&self) -> Option<(i32, u64)> {
        match self {
            Handle::Process { pid, start } | Handle::SparkClient { pid, start, .. } => {
                Some((*pid, *start))
            }
            _ => None,
        }
    }
}

/// A stored value, shortened for a message.
fn abridged(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

impl From<DriverRecord> for Handle {
    fn from(d: DriverRecord) -> Handle {
        Handle::SparkRest {
            submission: d.submission,
            rest: d.rest,
            ui: d.ui,
            version: d.version,
        }
    }
}

impl From<PendingSubmission> for Handle {
    fn from(p: PendingSubmission) -> Handle {
        Handle::SparkPending {
            tag: p.tag,
            rest: p.rest,
            ui: p.ui,
            version: p.version,
            main_class: p.main_class,
            known: p.known,
            run: p.run,
            node: p.node,
            attempt: p.attempt,
        }
    }
}

impl Handle {
    /// The REST driver record of a [`Handle::SparkRest`].
    pub fn driver_record(&self) -> Option<DriverRecord> {
        match self {
            Handle::SparkRest {
                submission,
                rest,
                ui,
                version,
            } => Some(DriverRecord {
                spark: DRIVER.into(),
                submission: submission.clone(),
                rest: rest.clone(),
                ui: ui.clone(),
                version: version.clone(),
            }),
            _ => None,
        }
    }

    /// The pending submission of a [`Handle::SparkPending`].
    pub fn pending_submission(&self) -> Option<PendingSubmission> {
        match self {
            Handle::SparkPending {
                tag,
                rest,
                ui,
                version,
                main_class,
                known,
                run,
                node,
                attempt,
            } => Some(PendingSubmission {
                spark: PENDING.into(),
                tag: tag.clone(),
                rest: rest.clone(),
                ui: ui.clone(),
                version: version.clone(),
                main_class: main_class.clone(),
                known: known.clone(),
                run: run.clone(),
                node: *node,
                attempt: *attempt,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use serde_json::json;

    /// Every shape a run stored before handles had a version, as the
    /// executors of that time wrote it.
    #[test]
    fn reads_the_shapes_stored_before_handles_had_a_version() {
        let cases = [
            (
                json!({"pid": 4242, "start": 987654}),
                Handle::Process {
                    pid: 4242,
                    start: 987654,
                },
            ),
            // An adopted attempt that had already ended.
            (
                json!({"pid": 0, "start": 0}),
                Handle::Process { pid: 0, start: 0 },
            ),
            (
                json!({"pid": 77, "start": 5, "spark": "client", "ui": "http://127.0.0.1:4040"}),
                Handle::SparkClient {
                    pid: 77,
                    start: 5,
                    ui: Some("http://127.0.0.1:4040".into()),
                },
            ),
            (
                json!({"pid": 77, "start": 5, "spark": "client"}),
                Handle::SparkClient {
                    pid: 77,
                    start: 5,
                    ui: None,
                },
            ),
            (
                json!({"spark": "rest", "submission": "driver-20261127-0001",
                       "rest": "http://10.0.0.5:6066", "ui": "http://10.0.0.5:8080",
                       "version": "3.5.9"}),
                Handle::SparkRest {
                    submission: "driver-20261127-0001".into(),
                    rest: "http://10.0.0.5:6066".into(),
                    ui: Some("http://10.0.0.5:8080".into()),
                    version: "3.5.9".into(),
                },
            ),
            (
                json!({"spark": "rest", "submission": "driver-1", "rest": "http://m:6066",
                       "ui": null, "version": "4.0.1"}),
                Handle::SparkRest {
                    submission: "driver-1".into(),
                    rest: "http://m:6066".into(),
                    ui: None,
                    version: "4.0.1".into(),
                },
            ),
            (
                json!({"spark": "rest-pending", "tag": "0a1b2c", "rest": "http://m:6066",
                       "ui": "http://m:8080", "version": "3.5.9", "main_class": "Job",
                       "known": ["driver-0"], "run": "r1", "node": 3, "attempt": 2}),
                Handle::SparkPending {
                    tag: "0a1b2c".into(),
                    rest: "http://m:6066".into(),
                    ui: Some("http://m:8080".into()),
                    version: "3.5.9".into(),
                    main_class: "Job".into(),
                    known: Some(vec!["driver-0".into()]),
                    run: "r1".into(),
                    node: 3,
                    attempt: 2,
                },
            ),
            (
                json!("r1.child.train.1"),
                Handle::ChildRun {
                    run: "r1.child.train.1".into(),
                },
            ),
        ];
        for (stored, want) in cases {
            let h = Handle::from_stored(&stored).unwrap();
            assert_eq!(h, want, "{stored}");
            // And they come back through the versioned form unchanged.
            assert_eq!(Handle::from_stored(&h.to_stored()).unwrap(), want);
        }
    }

    #[test]
    fn the_versioned_form_names_its_kind_and_version() {
        let h = Handle::Process { pid: 12, start: 34 };
        assert_eq!(
            h.to_stored(),
            json!({"kind": "process", "pid": 12, "start": 34, "v": 1})
        );
        let w = Handle::Wait {
            signal: "approve".into(),
        };
        assert_eq!(
            w.to_stored(),
            json!({"kind": "wait", "signal": "approve", "v": 1})
        );
        assert_eq!(Handle::from_stored(&w.to_stored()).unwrap(), w);
        let m = Handle::Memory { id: 9 };
        assert_eq!(Handle::from_stored(&m.to_stored()).unwrap(), m);
    }

    #[test]
    fn the_spark_records_round_trip() {
        let d = DriverRecord {
            spark: DRIVER.into(),
            submission: "driver-1".into(),
            rest: "http://m:6066".into(),
            ui: None,
            version: "3.5.9".into(),
        };
        assert_eq!(Handle::from(d.clone()).driver_record(), Some(d));
        let p = PendingSubmission {
            spark: PENDING.into(),
            tag: "t".into(),
            rest: "http://m:6066".into(),
            ui: Some("http://m:8080".into()),
            version: "3.5.9".into(),
            main_class: "Job".into(),
            known: None,
            run: "r".into(),
            node: 0,
            attempt: 1,
        };
        assert_eq!(Handle::from(p.clone()).pending_submission(), Some(p));
    }

    #[test]
    fn unknown_shapes_and_newer_versions_are_errors() {
        for bad in [
            json!(null),
            json!({}),
            json!({"pid": "12", "start": 1}),
            json!({"spark": "yarn-app", "id": "x"}),
            json!({"spark": "rest", "submission": 3}),
            json!({"v": 1, "kind": "teleport"}),
        ] {
            assert!(
                matches!(Handle::from_stored(&bad), Err(HandleError::Shape { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            Handle::from_stored(&json!({"v": 2, "kind": "process"})),
            Err(HandleError::Version { found: json!(2) })
        );
    }
}
