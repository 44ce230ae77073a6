//! Where a Spark step runs: its master, deploy mode and cluster settings.

use std::collections::BTreeMap;

use kaon_model::constraints::{Attributes, Constraints};

use crate::SparkError;
use crate::job::{DeployMode, SparkJob};
use crate::settings::{ClusterSettings, SparkSettings};

/// How the driver is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// spark-submit runs the driver here, supervised as a process.
    Client,
    /// A standalone master runs the driver; kaon uses its REST submission
    /// API (create, status, kill).
    StandaloneCluster,
    /// YARN or Kubernetes run the driver; spark-submit waits for it.
    SubmitCluster,
}

/// The placement of one Spark step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The configured cluster chosen, if any.
    pub cluster: Option<String>,
    /// The master URL.
    pub master: String,
    /// How the driver is started.
    pub mode: Mode,
    /// The REST submission server (standalone cluster mode).
    pub rest: Option<String>,
    /// The master's web UI (standalone), for worker log links.
    pub ui: Option<String>,
    /// Conf the placement adds (cluster conf, `spark.mesos.constraints`);
    /// the step's own conf wins.
    pub conf: BTreeMap<String, String>,
}

fn host_of(master: &str) -> Option<&str> {
    let rest = master.split_once("://")?.1;
    let first = rest.split(',').next()?;
    Some(first.rsplit_once(':').map(|(h, _)| h).unwrap_or(first))
}

/// A target on `master`; a standalone master's REST server and UI default
/// to its host's ports 6066 and 8080.
fn on_master(master: &str, mode: Mode, cluster: Option<(&str, &ClusterSettings)>) -> Target {
    let host = host_of(master).unwrap_or("127.0.0.1");
    let c = cluster.map(|(_, c)| c);
    Target {
        cluster: cluster.map(|(n, _)| n.to_string()),
        master: master.to_string(),
        mode,
        rest: (mode == Mode::StandaloneCluster).then(|| {
            c.and_then(|c| c.rest.clone())
                .unwrap_or_else(|| format!("http://{host}:6066"))
        }),
        ui: master.starts_with("spark://").then(|| {
            c.and_then(|c| c.ui.clone())
                .unwrap_or_else(|| format!("http://{host}:8080"))
        }),
        conf: c.map(|c| c.conf.clone()).unwrap_or_default(),
    }
}

/// The mode a deploy mode comes to on `master`; `place` names who asked,
/// for messages.
fn mode_on(mode: Option<DeployMode>, master: &str, place: &str) -> Result<Mode, SparkError> {
    match mode {
        None | Some(DeployMode::Client) => Ok(Mode::Client),
        Some(DeployMode::Cluster) if master.starts_with("spark://") => Ok(Mode::StandaloneCluster),
        Some(DeployMode::Cluster) if master.starts_with("local") => Err(SparkError::Placement {
            message: format!("{place}: cluster mode needs a cluster master, not `{master}`"),
        }),
        Some(DeployMode::Cluster) => Ok(Mode::SubmitCluster),
    }
}

/// A cluster's `deploy_mode` setting (text in `kaon.toml`, checked when a
/// step is placed on it).
fn configured_mode(text: Option<&str>, place: &str) -> Result<Option<DeployMode>, SparkError> {
    match text {
        None => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| SparkError::Placement {
            message: format!("{place}: `{t}` is not a deploy mode (client or cluster)"),
        }),
    }
}

/// Chooses where `job` runs, for Spark `major`:
/// - a named `cluster` must exist and satisfy the step's constraints;
/// - a `master` is used as given;
/// - otherwise, a step with constraints goes to the first configured
///   cluster (by name) whose attributes satisfy them, and one without goes
///   to `[spark] master` (default `local[*]`).
///
/// A Mesos master gets the constraints as `spark.mesos.constraints`;
/// Spark 4 on Mesos is refused (Spark 4.0 removed Mesos).
pub fn place(job: &SparkJob, settings: &SparkSettings, major: u32) -> Result<Target, SparkError> {
    let constraints = match &job.constraints {
        Some(c) => Some(Constraints::parse(c).map_err(|e| SparkError::Placement {
            message: format!("constraints `{c}`: {}", e.message),
        })?),
        None => None,
    };
    let attrs_of = |name: &str, c: &ClusterSettings| -> Result<Attributes, SparkError> {
        Attributes::parse(c.attributes.as_deref().unwrap_or("")).map_err(|e| {
            SparkError::Placement {
                message: format!("[spark.clusters.{name}] attributes: {}", e.message),
            }
        })
    };
    let from_cluster = |name: &str, c: &ClusterSettings| -> Result<Target, SparkError> {
        let place = format!("cluster `{name}`");
        let mode = match job.deploy_mode {
            Some(m) => Some(m),
            None => configured_mode(c.deploy_mode.as_deref(), &place)?,
        };
        let mode = mode_on(mode, &c.master, &place)?;
        Ok(on_master(&c.master, mode, Some((name, c))))
    };
    let mut target = if let Some(name) = &job.cluster {
        let c = settings
            .clusters
            .get(name)
            .ok_or_else(|| SparkError::UnknownCluster {
                name: name.clone(),
                known: settings.clusters.keys().cloned().collect(),
            })?;
        if let Some(k) = &constraints
            && !k.matches(&attrs_of(name, c)?)
        {
            return Err(SparkError::Placement {
                message: format!(
                    "cluster `{name}` (attributes `{}`) does not satisfy the step's constraints `{k}`",
                    c.attributes.as_deref().unwrap_or("")
                ),
            });
        }
        from_cluster(name, c)?
    } else if let Some(master) = &job.master {
        let mode = mode_on(job.deploy_mode, master, "the step")?;
        on_master(master, mode, None)
    } else if let Some(k) = &constraints {
        let mut chosen = None;
        for (name, c) in &settings.clusters {
            if k.matches(&attrs_of(name, c)?) {
                chosen = Some(from_cluster(name, c)?);
                break;
            }
        }
        chosen.ok_or_else(|| SparkError::NoClusterMatches {
            constraints: k.to_string(),
            clusters: settings
                .clusters
                .iter()
                .map(|(n, c)| (n.clone(), c.attributes.clone().unwrap_or_default()))
                .collect(),
        })?
    } else {
        let master = settings.master.as_deref().unwrap_or("local[*]");
        let mode = mode_on(job.deploy_mode, master, "the step")?;
        on_master(master, mode, None)
    };
    if target.master.starts_with("mesos://") {
        if major >= 4 {
            return Err(SparkError::Placement {
                message: format!(
                    "Spark {major} cannot use the Mesos master `{}`: Mesos support was removed in Spark 4.0; pin the step to Spark 3.5 or use another cluster",
                    target.master
                ),
            });
        }
        if let Some(k) = &constraints {
            target
                .conf
                .insert("spark.mesos.constraints".into(), k.to_string());
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;

    fn settings() -> SparkSettings {
        let mut s = SparkSettings::default();
        s.clusters.insert(
            "east".into(),
            ClusterSettings {
                master: "spark://10.0.0.5:7077".into(),
                deploy_mode: Some("cluster".into()),
                attributes: Some("zone:us-east-1a;tier:batch;cpus:16".into()),
                ..ClusterSettings::default()
            },
        );
        s.clusters.insert(
            "mesos".into(),
            ClusterSettings {
                master: "mesos://10.0.0.9:5050".into(),
                attributes: Some("zone:eu-west-1a;tier:batch".into()),
                ..ClusterSettings::default()
            },
        );
        s
    }

    fn job(constraints: Option<&str>) -> SparkJob {
        SparkJob {
            constraints: constraints.map(str::to_string),
            ..SparkJob::default()
        }
    }

    #[test]
    fn constraints_choose_the_cluster() {
        let s = settings();
        let t = place(&job(Some("zone:us-east-1a,us-east-1b;tier:batch")), &s, 3).unwrap();
        assert_eq!(t.cluster.as_deref(), Some("east"));
        assert_eq!(t.mode, Mode::StandaloneCluster);
        assert_eq!(t.rest.as_deref(), Some("http://10.0.0.5:6066"));
        assert_eq!(t.ui.as_deref(), Some("http://10.0.0.5:8080"));

        let t = place(&job(Some("zone:eu-west-1a")), &s, 3).unwrap();
        assert_eq!(t.cluster.as_deref(), Some("mesos"));
        assert_eq!(t.mode, Mode::Client);
        assert_eq!(t.conf["spark.mesos.constraints"], "zone:eu-west-1a");

        let e = place(&job(Some("zone:eu-west-1a")), &s, 4).unwrap_err();
        assert!(e.to_string().contains("removed in Spark 4.0"), "{e}");

        let e = place(&job(Some("zone:ap-south-1a")), &s, 3).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("no configured Spark cluster satisfies"),
            "{text}"
        );
        assert!(
            text.contains("east (zone:us-east-1a;tier:batch;cpus:16)"),
            "{text}"
        );

        let t = place(&job(None), &s, 3).unwrap();
        assert_eq!((t.master.as_str(), t.mode), ("local[*]", Mode::Client));
    }

    #[test]
    fn named_clusters_and_masters() {
        let s = settings();
        let mut j = job(Some("tier:gpu"));
        j.cluster = Some("east".into());
        assert!(
            place(&j, &s, 3)
                .unwrap_err()
                .to_string()
                .contains("does not satisfy")
        );
        j.cluster = Some("west".into());
        let e = place(&j, &s, 3).unwrap_err().to_string();
        assert!(e.contains("`west`") && e.contains("east, mesos"), "{e}");

        let j = SparkJob {
            master: Some("yarn".into()),
            deploy_mode: Some(DeployMode::Cluster),
            ..SparkJob::default()
        };
        assert_eq!(place(&j, &s, 4).unwrap().mode, Mode::SubmitCluster);
        let j = SparkJob {
            master: Some("local[2]".into()),
            deploy_mode: Some(DeployMode::Cluster),
            ..SparkJob::default()
        };
        assert!(place(&j, &s, 4).is_err());
    }
}
