//! What can go wrong with Spark, as one error type with variants a caller
//! can act on.

use std::path::PathBuf;

use crate::version::{SparkVersion, VersionReq};

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
    /// A Python or SQL application placed in cluster mode on a standalone
    /// master, which cannot run them there (a Spark limitation).
    #[error(
        "a standalone master ({master}) cannot run Python or SQL applications in cluster mode (a Spark limitation); use deploy_mode = \"client\", or a jar application"
    )]
    PythonOnStandaloneCluster {
        /// The master.
        master: String,
    },
    /// Cluster mode on a standalone master without a REST submission
    /// server to send the driver to.
    #[error("no REST submission server is known for this master ({master})")]
    NoRestServer {
        /// The master.
        master: String,
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
    /// The drivers of a standalone master cannot be listed because its
    /// web UI (which lists them) is not known.
    #[error("the master's web UI is not known, so its drivers cannot be listed")]
    MasterUiUnknown,
    /// Listing a standalone master's drivers failed.
    #[error("cannot list the master's drivers: {source}")]
    ListDrivers {
        /// Why.
        source: Box<SparkError>,
    },
    /// A JDK tool (`javac`, `jar`) could not be started: no JDK, or not
    /// where `JAVA_HOME` says.
    #[error("cannot run {tool}: {source}")]
    ToolMissing {
        /// The tool.
        tool: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A JDK tool ran and failed.
    #[error("{tool} failed: {message}")]
    ToolFailed {
        /// The tool.
        tool: &'static str,
        /// The first line of what it printed.
        message: String,
    },
    /// A file kaon writes for Spark could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SparkError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SparkError::Rest { transient, .. } => *transient,
            SparkError::NoAnswer { .. } => true,
            SparkError::ListDrivers { source } => source.is_transient(),
            _ => false,
        }
    }

    /// The error of an I/O failure on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> SparkError {
        SparkError::Io {
            path: path.to_path_buf(),
            source,
        }
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
