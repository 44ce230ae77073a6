//! The Spark job of one attempt: what kaon submits, built from the step as
//! the workflow defines it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kaon_model::spec::{self, RenderedSparkStep};
use serde::{Deserialize, Serialize};

use crate::SparkError;

/// Where the driver runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployMode {
    /// On the machine that submits (spark-submit is supervised there).
    Client,
    /// On the cluster (a standalone master's worker, a YARN container, a
    /// Kubernetes pod).
    Cluster,
}

impl DeployMode {
    /// The name Spark and kaon's files use: `client`, `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployMode::Client => "client",
            DeployMode::Cluster => "cluster",
        }
    }
}

impl fmt::Display for DeployMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeployMode {
    type Err = SparkError;

    fn from_str(s: &str) -> Result<DeployMode, SparkError> {
        match s {
            "client" => Ok(DeployMode::Client),
            "cluster" => Ok(DeployMode::Cluster),
            other => Err(SparkError::Placement {
                message: format!("`{other}` is not a deploy mode (client or cluster)"),
            }),
        }
    }
}

impl From<spec::DeployMode> for DeployMode {
    fn from(m: spec::DeployMode) -> DeployMode {
        match m {
            spec::DeployMode::Client => DeployMode::Client,
            spec::DeployMode::Cluster => DeployMode::Cluster,
        }
    }
}

/// A Spark step's job with every template rendered and every local path
/// made absolute. Where it runs (which distribution, which master) is
/// decided from kaon's configuration ([`crate::planner`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SparkJob {
    /// Requested Spark version (`"3.5"`, `"3.5.9"`), or the default.
    pub version: Option<String>,
    /// The application: a `.jar` or `.py` file (absolute) or a URL.
    pub app: Option<String>,
    /// A SQL query, run by kaon's bundled SQL runner.
    pub sql: Option<String>,
    /// `--class`.
    pub main_class: Option<String>,
    /// Application arguments.
    pub args: Vec<String>,
    /// The master URL the step names.
    pub master: Option<String>,
    /// The configured cluster the step names.
    pub cluster: Option<String>,
    /// `None` for the cluster's default (else client).
    pub deploy_mode: Option<DeployMode>,
    /// `--conf` pairs.
    pub conf: BTreeMap<String, String>,
    /// `--driver-memory`, bytes.
    pub driver_memory: Option<u64>,
    /// `--executor-memory`, bytes.
    pub executor_memory: Option<u64>,
    /// `--driver-cores`.
    pub driver_cores: Option<u32>,
    /// `--executor-cores`.
    pub executor_cores: Option<u32>,
    /// `--num-executors`.
    pub num_executors: Option<u32>,
    /// `--total-executor-cores`.
    pub max_cores: Option<u32>,
    /// `--packages` (Maven coordinates).
    pub packages: Vec<String>,
    /// `--jars` (absolute paths or URLs).
    pub jars: Vec<String>,
    /// `--py-files` (absolute paths or URLs).
    pub py_files: Vec<String>,
    /// Placement constraints, canonical text.
    pub constraints: Option<String>,
}

impl SparkJob {
    /// The job of a rendered Spark step placed under `constraints` (the
    /// step's, in canonical text; empty counts as none).
    pub fn from_step(step: &RenderedSparkStep, constraints: Option<&str>) -> SparkJob {
        let s = step.clone();
        SparkJob {
            version: s.version,
            app: s.app,
            sql: s.sql,
            main_class: s.main_class,
            args: s.args,
            master: s.master,
            cluster: s.cluster,
            deploy_mode: s.deploy_mode.map(DeployMode::from),
            conf: s.conf,
            driver_memory: s.driver_memory,
            executor_memory: s.executor_memory,
            driver_cores: s.driver_cores,
            executor_cores: s.executor_cores,
            num_executors: s.num_executors,
            max_cores: s.max_cores,
            packages: s.packages,
            jars: s.jars,
            py_files: s.py_files,
            constraints: constraints.filter(|c| !c.is_empty()).map(str::to_string),
        }
    }

    /// True for `.py` applications and SQL (run by kaon's Python runner):
    /// what a standalone master cannot run in cluster mode.
    pub fn is_python(&self) -> bool {
        self.sql.is_some() || self.app.as_deref().is_some_and(|a| a.ends_with(".py"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;

    #[test]
    fn deploy_modes_read_and_write_as_spark_names_them() {
        assert_eq!(
            serde_json::to_string(&DeployMode::Cluster).unwrap(),
            "\"cluster\""
        );
        let m: DeployMode = serde_json::from_str("\"client\"").unwrap();
        assert_eq!(m, DeployMode::Client);
        assert_eq!(
            "cluster".parse::<DeployMode>().unwrap(),
            DeployMode::Cluster
        );
        assert!("both".parse::<DeployMode>().is_err());
    }

    #[test]
    fn a_job_keeps_the_step_and_its_constraints() {
        let step = RenderedSparkStep {
            app: Some("/w/job.py".into()),
            deploy_mode: Some(spec::DeployMode::Cluster),
            jars: vec!["/w/dep.jar".into()],
            ..RenderedSparkStep::default()
        };
        let job = SparkJob::from_step(&step, Some("zone:a"));
        assert_eq!(job.deploy_mode, Some(DeployMode::Cluster));
        assert_eq!(job.constraints.as_deref(), Some("zone:a"));
        assert_eq!(job.jars, ["/w/dep.jar"]);
        assert!(job.is_python());
        assert_eq!(SparkJob::from_step(&step, Some("")).constraints, None);
    }
}
