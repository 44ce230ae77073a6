//! Spark for kaon.
//!
//! - [`dist`]: the Spark runtimes on this machine ([`Registry`]), chosen per
//!   step by version request ([`VersionReq`]); [`install`] adds one from
//!   the `pyspark` package.
//! - [`target`]: where a step runs (master, deploy mode, named clusters
//!   chosen by constraint labels, `spark.mesos.constraints`).
//! - [`submit`]: the spark-submit command line and the REST submission
//!   body, from one merged conf.
//! - [`rest`]: a standalone master's REST submission API and worker logs.
//! - [`progress`]: progress from listener events or the monitoring API.
//! - [`callback`]: the HTTP endpoint kaon's listener posts to.
//!
//! Nothing here decides what a step's attempt means for the run; the
//! executor in `kaon-exec` does that.

pub mod callback;
pub mod dist;
pub mod install;
pub mod progress;
pub mod rest;
pub mod settings;
pub mod submit;
pub mod target;
pub mod version;

use std::path::PathBuf;

pub use dist::{Distribution, Registry};
pub use install::install;
pub use settings::{ClusterSettings, SparkSettings};
pub use version::{SparkVersion, VersionReq};

/// What can go wrong with Spark.
#[derive(Debug, thiserror::Error)]
pub enum SparkError {
    /// Not a version.
    #[error("`{text}` is not a Spark version (write 3.5, 3.5.9 or 4.x)")]
    BadVersion {
        /// What was given.
        text: String,
    },
    /// No installed distribution matches.
    #[error("{}", not_installed(requested, available))]
    NotInstalled {
        /// What was asked for (`None`: any).
        requested: Option<VersionReq>,
        /// What is installed.
        available: Vec<SparkVersion>,
    },
    /// A folder that is not a Spark distribution.
    #[error("{home} is not a Spark distribution: {why}")]
    NotADistribution {
        /// The folder.
        home: PathBuf,
        /// Why not.
        why: String,
    },
    /// `kaon spark install` failed.
    #[error("installing Spark failed: {message}")]
    Install {
        /// What failed.
        message: String,
    },
    /// The step names a cluster the configuration does not have.
    #[error("no Spark cluster named `{name}` is configured (configured: {})", if known.is_empty() { "none; add [spark.clusters.NAME] to kaon.toml".to_string() } else { known.join(", ") })]
    UnknownCluster {
        /// The name.
        name: String,
        /// The configured names.
        known: Vec<String>,
    },
    /// No configured cluster satisfies the step's constraints.
    #[error("no configured Spark cluster satisfies the constraints `{constraints}` (clusters: {})", if clusters.is_empty() { "none configured; add [spark.clusters.NAME] with `attributes` to kaon.toml".to_string() } else { clusters.iter().map(|(n, a)| format!("{n} ({a})")).collect::<Vec<_>>().join(", ") })]
    NoClusterMatches {
        /// The step's constraints.
        constraints: String,
        /// Each cluster and its attributes.
        clusters: Vec<(String, String)>,
    },
    /// Where the step would run does not work.
    #[error("{message}")]
    Placement {
        /// Why.
        message: String,
    },
    /// A Spark HTTP endpoint failed or refused.
    #[error("{url}: {message}")]
    Rest {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
        /// True when trying again may work (connection refused, 5xx).
        transient: bool,
    },
    /// A request went out but no answer came (a timeout, a connection
    /// lost after sending): the server may or may not have acted on it.
    #[error("{url}: no answer: {message}")]
    NoAnswer {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
}

impl SparkError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SparkError::Rest {
                transient: true,
                ..
            } | SparkError::NoAnswer { .. }
        )
    }
}

fn not_installed(requested: &Option<VersionReq>, available: &[SparkVersion]) -> String {
    let have = if available.is_empty() {
        "none is installed".to_string()
    } else {
        format!(
            "installed: {}",
            available
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match requested {
        Some(r) => format!(
            "Spark {r} is not installed ({have}); run `kaon spark install {r}`, or point [spark.versions] in kaon.toml at a distribution"
        ),
        None => format!(
            "no Spark is installed ({have}); run `kaon spark install 3.5`, or set SPARK_HOME"
        ),
    }
}
