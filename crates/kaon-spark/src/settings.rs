//! The `[spark]` part of kaon's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[spark]` in `kaon.toml`.
///
/// ```toml
/// [spark]
/// default_version = "3.5"          # for steps that name none
/// master = "local[2]"              # for steps that name no master or cluster
/// versions = { "3.5.1" = "/opt/spark-3.5.1" }
///
/// [spark.clusters.batch]
/// master = "spark://10.0.0.5:7077"
/// deploy_mode = "cluster"
/// attributes = "zone:us-east-1a;tier:batch"
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SparkSettings {
    /// The version for steps that name none (else the newest installed).
    pub default_version: Option<String>,
    /// The master for steps that name no master, cluster or constraints
    /// (else `local[*]`).
    pub master: Option<String>,
    /// Where `kaon spark install` puts runtimes (else kaon's user data
    /// directory, `$XDG_DATA_HOME/kaon/spark`).
    pub install_dir: Option<PathBuf>,
    /// Spark distributions installed elsewhere: a name (anything; the
    /// version is read from the distribution) to its `SPARK_HOME`.
    pub versions: BTreeMap<String, PathBuf>,
    /// Named clusters.
    pub clusters: BTreeMap<String, ClusterSettings>,
    /// The address Spark listeners post events to, when drivers run on
    /// other machines (`http://kaon-host:7480`). Default: loopback, on a
    /// port chosen at start.
    pub callback: Option<String>,
    /// `JAVA_HOME` for spark-submit (else inherited).
    pub java_home: Option<PathBuf>,
}

/// `[spark.clusters.NAME]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// Its master URL (`spark://`, `yarn`, `k8s://`, `mesos://`).
    pub master: String,
    /// The REST submission server of a standalone master, for cluster
    /// mode (default: the master's host, port 6066).
    pub rest: Option<String>,
    /// The master's web UI (default: the master's host, port 8080); kaon
    /// reads driver logs through the workers it lists.
    pub ui: Option<String>,
    /// `client` or `cluster` for steps that do not say (default client).
    pub deploy_mode: Option<String>,
    /// Its attributes, in the constraint grammar's attribute form
    /// (`zone:us-east-1a;cpus:8;tier:batch`).
    pub attributes: Option<String>,
    /// `--conf` pairs every step on it gets (the step's own win).
    pub conf: BTreeMap<String, String>,
}

/// kaon's user data directory: `$XDG_DATA_HOME/kaon`, else
/// `~/.local/share/kaon`.
pub fn user_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("kaon");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/kaon"),
        None => PathBuf::from(".kaon"),
    }
}

impl SparkSettings {
    /// Where managed runtimes live: `install_dir`, `$KAON_SPARK_DIR`, or
    /// `<user data dir>/spark`.
    pub fn install_dir(&self) -> PathBuf {
        if let Some(d) = &self.install_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("KAON_SPARK_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        user_data_dir().join("spark")
    }
}
