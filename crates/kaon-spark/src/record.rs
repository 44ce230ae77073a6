//! What kaon writes down about a cluster-mode submission on a standalone
//! master, in the attempt's `<attempt>.spark.json` and in the step's
//! handle: first the intent ([`PendingSubmission`]), then the driver the
//! master accepted ([`DriverRecord`]). Both are stored data: their fields
//! and the `spark` tag keep their names.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A REST-submitted driver, as stored in the handle and the attempt files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRecord {
    /// `rest`.
    pub spark: String,
    /// The submission id (`driver-...`).
    pub submission: String,
    /// The master's REST submission server.
    pub rest: String,
    /// The master's web UI, for the worker's logs.
    pub ui: Option<String>,
    /// The Spark version it was submitted with.
    pub version: String,
}

/// The tag of a [`DriverRecord`].
pub const DRIVER: &str = "rest";
/// The tag of a [`PendingSubmission`].
pub const PENDING: &str = "rest-pending";

/// What `<attempt>.spark.json` holds from just before a REST submission
/// until the master has answered: enough to find the driver later if the
/// answer was lost with kaon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSubmission {
    /// `rest-pending`.
    pub spark: String,
    /// The submission's `spark.kaon.tag`, in the driver's launch command.
    pub tag: String,
    /// The master's REST submission server.
    pub rest: String,
    /// The master's web UI, which lists its drivers.
    pub ui: Option<String>,
    /// The Spark version it is submitted with.
    pub version: String,
    /// The application's main class, as the master lists it.
    pub main_class: String,
    /// Drivers the master knew before the submission (none: not known).
    pub known: Option<Vec<String>>,
    /// The run.
    pub run: String,
    /// The node.
    pub node: u32,
    /// The attempt.
    pub attempt: u32,
}

impl PendingSubmission {
    /// The record of the driver this submission became.
    pub fn driver(&self, submission: String) -> DriverRecord {
        DriverRecord {
            spark: DRIVER.into(),
            submission,
            rest: self.rest.clone(),
            ui: self.ui.clone(),
            version: self.version.clone(),
        }
    }
}

/// What an attempt's `.spark.json` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SparkFile {
    /// The master accepted this driver.
    Driver(DriverRecord),
    /// The submission may have gone out; its answer was not written.
    Pending(PendingSubmission),
}

/// Reads an attempt's `.spark.json`; none when it is missing, torn or of
/// another kind.
pub fn read_spark_file(path: &Path) -> Option<SparkFile> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    match v["spark"].as_str()? {
        DRIVER => serde_json::from_value(v).ok().map(SparkFile::Driver),
        PENDING => serde_json::from_value(v).ok().map(SparkFile::Pending),
        _ => None,
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file, synced,
/// then renamed), readable by its owner only.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes a record with [`write_synced`].
pub fn write_record(path: &Path, record: &impl Serialize) -> std::io::Result<()> {
    write_synced(path, &serde_json::to_vec(record)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;

    #[test]
    fn records_read_back_by_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0-s.1.spark.json");
        assert_eq!(read_spark_file(&path), None);
        let p = PendingSubmission {
            spark: PENDING.into(),
            tag: "t".into(),
            rest: "http://m:6066".into(),
            ui: None,
            version: "3.5.9".into(),
            main_class: "Job".into(),
            known: Some(vec![]),
            run: "r".into(),
            node: 0,
            attempt: 1,
        };
        write_record(&path, &p).unwrap();
        assert_eq!(read_spark_file(&path), Some(SparkFile::Pending(p.clone())));
        let d = p.driver("driver-1".into());
        write_record(&path, &d).unwrap();
        assert_eq!(read_spark_file(&path), Some(SparkFile::Driver(d)));
        std::fs::write(&path, r#"{"spark":"client"}"#).unwrap();
        assert_eq!(read_spark_file(&path), None);
    }
}
