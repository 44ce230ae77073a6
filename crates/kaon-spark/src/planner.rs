//! Choosing a job's runtime and placement, once per launch.

use std::sync::Mutex;

use serde_json::{Value, json};

use crate::SparkError;
use crate::dist::{Distribution, Registry};
use crate::job::SparkJob;
use crate::settings::SparkSettings;
use crate::target::{Mode, Target, place};

/// Chooses the runtime and the placement of jobs from kaon's `[spark]`
/// settings and the runtimes on this machine.
#[derive(Debug)]
pub struct Planner {
    settings: SparkSettings,
    registry: Mutex<Registry>,
}

/// Where and with what one job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The runtime.
    pub dist: Distribution,
    /// The placement.
    pub target: Target,
}

impl Planner {
    /// A planner over `settings`, looking for runtimes now.
    pub fn new(settings: SparkSettings) -> Planner {
        let registry = Registry::discover(&settings);
        Planner {
            settings,
            registry: Mutex::new(registry),
        }
    }

    /// The settings it plans with.
    pub fn settings(&self) -> &SparkSettings {
        &self.settings
    }

    /// The distribution a job asks for. The runtimes are looked for again
    /// when none matches: one may have been installed while kaon runs.
    pub fn distribution(&self, version: Option<&str>) -> Result<Distribution, SparkError> {
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(d) = reg.resolve(version) {
            return Ok(d.clone());
        }
        *reg = Registry::discover(&self.settings);
        reg.resolve(version).cloned()
    }

    /// The runtime and placement of `job`. Python and SQL applications
    /// are refused in cluster mode on a standalone master, which cannot
    /// run them there.
    pub fn plan(&self, job: &SparkJob) -> Result<Plan, SparkError> {
        let dist = self.distribution(job.version.as_deref())?;
        let target = place(job, &self.settings, dist.version.major)?;
        if job.is_python() && target.mode == Mode::StandaloneCluster {
            return Err(SparkError::PythonOnStandaloneCluster {
                master: target.master,
            });
        }
        Ok(Plan { dist, target })
    }
}

impl Plan {
    /// What the plan fixes that the job's text does not (the exact version
    /// a `"3.5"` comes to, the master, the placement's conf): part of a
    /// step's memo key, so its shape must not change lightly.
    pub fn facts(&self) -> Value {
        json!({
            "spark": self.dist.version.to_string(),
            "scala": self.dist.scala,
            "master": self.target.master,
            "conf": self.target.conf,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use crate::job::DeployMode;

    /// A folder that passes for a Spark 3.5.9 distribution.
    fn fake_dist(dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("jars")).unwrap();
        std::fs::write(dir.join("bin/spark-submit"), "").unwrap();
        std::fs::write(dir.join("jars/spark-core_2.12-3.5.9.jar"), "").unwrap();
    }

    #[test]
    fn plans_runtime_and_placement_and_refuses_python_on_a_standalone_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("spark");
        fake_dist(&home);
        let mut settings = SparkSettings {
            install_dir: Some(tmp.path().join("managed")),
            ..SparkSettings::default()
        };
        settings.versions.insert("mine".into(), home);
        let planner = Planner::new(settings);
        let job = SparkJob {
            version: Some("3.5".into()),
            app: Some("/w/job.jar".into()),
            master: Some("spark://10.0.0.5:7077".into()),
            deploy_mode: Some(DeployMode::Cluster),
            ..SparkJob::default()
        };
        let plan = planner.plan(&job).unwrap();
        assert_eq!(plan.facts()["spark"], "3.5.9");
        assert_eq!(plan.facts()["master"], "spark://10.0.0.5:7077");
        let py = SparkJob {
            app: Some("/w/job.py".into()),
            ..job.clone()
        };
        assert!(matches!(
            planner.plan(&py),
            Err(SparkError::PythonOnStandaloneCluster { .. })
        ));
        let newer = SparkJob {
            version: Some("9.9".into()),
            ..job
        };
        assert!(matches!(
            planner.plan(&newer),
            Err(SparkError::NotInstalled { .. })
        ));
    }
}
