//! How a server is set up.

use std::path::PathBuf;
use std::time::Duration;

use kaon_runtime::Capacity;
use kaon_spark::SparkSettings;

use crate::auth::Role;

/// A server's settings (the `kaon server` flags and `KAON_*` variables,
/// and `[spark]` of the configuration file, end up here).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The data directory: step logs, the installation's secret, and the
    /// artifact store unless [`ServerConfig::artifacts`] names another.
    pub data_dir: PathBuf,
    /// The artifact store's URL (a folder, `s3://...`, `hdfs://...`).
    pub artifacts: Option<String>,
    /// Resources steps are admitted against.
    pub capacity: Capacity,
    /// SIGTERM to SIGKILL when a step is stopped.
    pub kill_grace: Duration,
    /// `[spark]` of the configuration.
    pub spark: SparkSettings,
    /// The URL Spark listeners and steps post to, when drivers run on
    /// other machines (default: the server's own address).
    pub public_url: Option<String>,
    /// How often schedules are looked at.
    pub tick_every: Duration,
    /// A tick later than this is missed (its schedule's catch-up policy
    /// decides); an earlier one fires.
    pub tick_grace: Duration,
    /// How often runs whose driver died are looked for.
    pub orphan_every: Duration,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// The largest page of a log, in bytes.
    pub log_page_limit: usize,
    /// The role of a request without a token, for `kaon ui`'s single
    /// local user (see [`crate::auth::authorize`]); `None` (every call
    /// needs a token) on a server for a team.
    pub anonymous: Option<Role>,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            data_dir,
            artifacts: None,
            capacity: Capacity::detect(),
            kill_grace: Duration::from_secs(10),
            spark: SparkSettings::default(),
            public_url: None,
            tick_every: Duration::from_millis(500),
            tick_grace: Duration::from_secs(60),
            orphan_every: Duration::from_secs(2),
            body_limit: 1 << 20,
            log_page_limit: 1 << 20,
            anonymous: None,
        }
    }

    /// Where step logs live.
    pub fn logs(&self) -> PathBuf {
        let root = self.data_dir.join("runs");
        std::path::absolute(&root).unwrap_or(root)
    }
}
