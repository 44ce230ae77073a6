//! Spark for kaon.
//!
//! - [`job`]: the Spark job of one attempt ([`SparkJob`], [`DeployMode`]),
//!   built from the workflow's Spark step.
//! - [`dist`]: the Spark runtimes on this machine ([`Registry`]), chosen per
//!   step by version request ([`VersionReq`]); [`install`] adds one from
//!   the `pyspark` package.
//! - [`target`]: where a step runs (master, deploy mode, named clusters
//!   chosen by constraint labels, `spark.mesos.constraints`);
//!   [`planner`] picks runtime and placement together.
//! - [`submit`]: the spark-submit command line and the REST submission
//!   body, from one merged conf.
//! - [`listener`]: kaon's listener jar (compiled against the runtime) and
//!   Python helpers, shipped with every job.
//! - [`rest`]: a standalone master's REST submission API and worker logs.
//! - [`record`]: what is written down about a REST submission, so that a
//!   restarted kaon finds its driver; [`discover`] finds a driver whose
//!   submission's answer was lost; [`driver`] watches, kills and resolves
//!   drivers; [`logs`] copies their logs from their workers.
//! - [`diagnose`]: a failed driver's error, from its logs.
//! - [`progress`]: progress from listener events or the monitoring API.
//! - [`callback`]: the HTTP endpoint kaon's listener posts to.
//!
//! Nothing here decides what a step's attempt means for the run; the
//! executor in `kaon-exec` does that.

pub mod callback;
pub mod diagnose;
pub mod discover;
pub mod dist;
pub mod driver;
mod error;
pub mod install;
pub mod job;
pub mod listener;
pub mod logs;
pub mod planner;
pub mod progress;
pub mod record;
pub mod rest;
pub mod settings;
pub mod submit;
pub mod target;
pub mod version;

pub use dist::{Distribution, Registry};
pub use error::SparkError;
pub use install::install;
pub use job::{DeployMode, SparkJob};
pub use planner::{Plan, Planner};
pub use settings::{ClusterSettings, SparkSettings};
pub use version::{SparkVersion, VersionReq};
