//! Installed Spark distributions and choosing one for a step.

use std::path::{Path, PathBuf};

use crate::SparkError;
use crate::settings::SparkSettings;
use crate::version::{SparkVersion, VersionReq};

/// Where a distribution was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `[spark] versions` in kaon's configuration.
    Configured,
    /// The `SPARK_HOME` environment variable.
    Env,
    /// Installed by `kaon spark install`.
    Managed,
}

impl Source {
    /// For listings.
    pub fn name(self) -> &'static str {
        match self {
            Source::Configured => "config",
            Source::Env => "SPARK_HOME",
            Source::Managed => "kaon",
        }
    }
}

/// One Spark runtime on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    /// Its exact version, read from its jars.
    pub version: SparkVersion,
    /// Its Scala binary version (`2.12`, `2.13`).
    pub scala: String,
    /// `SPARK_HOME`: has `bin/spark-submit` and `jars/`.
    pub home: PathBuf,
    /// The Python that has this version's `pyspark` (managed installs).
    pub python: Option<PathBuf>,
    /// Where it was found.
    pub source: Source,
}

impl Distribution {
    /// Reads a distribution at `home`: the version and Scala version come
    /// from `jars/spark-core_<scala>-<version>.jar`.
    pub fn at(home: &Path, source: Source) -> Result<Distribution, SparkError> {
        let not = |why: &str| SparkError::NotADistribution {
            home: home.to_path_buf(),
            why: why.to_string(),
        };
        if !home.join("bin/spark-submit").is_file() {
            return Err(not("it has no bin/spark-submit"));
        }
        let jars = std::fs::read_dir(home.join("jars")).map_err(|_| not("it has no jars/"))?;
        for e in jars.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix("spark-core_")
                .and_then(|r| r.strip_suffix(".jar"))
            else {
                continue;
            };
            let Some((scala, ver)) = rest.split_once('-') else {
                continue;
            };
            let version: SparkVersion = ver
                .parse()
                .map_err(|_| not("its spark-core jar has no version"))?;
            return Ok(Distribution {
                version,
                scala: scala.to_string(),
                home: home.to_path_buf(),
                python: None,
                source,
            });
        }
        Err(not("jars/ has no spark-core jar"))
    }

    /// `bin/spark-submit`.
    pub fn spark_submit(&self) -> PathBuf {
        self.home.join("bin/spark-submit")
    }

    /// Environment for spark-submit on top of `given` (the step's): its
    /// `SPARK_HOME`, for managed installs their Python (the one with this
    /// version's pyspark) for the driver and the executors, and
    /// `java_home` (`[spark] java_home`) unless the step sets `JAVA_HOME`.
    pub fn submit_env(
        &self,
        java_home: Option<&Path>,
        given: &[(String, String)],
    ) -> Vec<(String, String)> {
        let has = |k: &str| given.iter().any(|(g, _)| g == k);
        let mut env = vec![("SPARK_HOME".to_string(), self.home.display().to_string())];
        if let Some(py) = &self.python {
            for k in ["PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"] {
                if !has(k) && std::env::var_os(k).is_none() {
                    env.push((k.to_string(), py.display().to_string()));
                }
            }
            if let Some(bin) = py.parent()
                && !has("PATH")
            {
                let path = std::env::var("PATH").unwrap_or_default();
                env.push(("PATH".into(), format!("{}:{path}", bin.display())));
            }
        }
        if let Some(j) = java_home
            && !has("JAVA_HOME")
        {
            env.push(("JAVA_HOME".into(), j.display().to_string()));
        }
        env
    }

    /// True for Spark 3.x, which needs the Java module flags on Java 17.
    pub fn needs_module_flags(&self) -> bool {
        self.version.major < 4
    }
}

/// A managed install: a Python virtual environment at `<dir>/<version>`
/// whose site-packages hold `pyspark` (the full runtime).
pub fn managed_at(dir: &Path) -> Result<Distribution, SparkError> {
    let lib = dir.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|_| SparkError::NotADistribution {
        home: dir.to_path_buf(),
        why: "it is not a kaon-managed install (no lib/)".into(),
    })?;
    for e in entries.flatten() {
        let home = e.path().join("site-packages/pyspark");
        if home.is_dir() {
            let mut d = Distribution::at(&home, Source::Managed)?;
            let py = dir.join("bin/python");
            d.python = py.exists().then_some(py);
            return Ok(d);
        }
    }
    Err(SparkError::NotADistribution {
        home: dir.to_path_buf(),
        why: "no lib/python*/site-packages/pyspark".into(),
    })
}

/// Every distribution kaon can use, newest first within each source.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// The distributions.
    pub dists: Vec<Distribution>,
    /// Configured entries that are not usable distributions, for `kaon
    /// spark list` and error messages.
    pub problems: Vec<String>,
    /// Where managed installs live.
    pub install_dir: PathBuf,
    /// `[spark] default_version`.
    pub default_version: Option<String>,
}

impl Registry {
    /// Looks at the configuration, `$SPARK_HOME` and the managed installs.
    pub fn discover(settings: &SparkSettings) -> Registry {
        let mut r = Registry {
            install_dir: settings.install_dir(),
            default_version: settings.default_version.clone(),
            ..Registry::default()
        };
        for (name, home) in &settings.versions {
            match Distribution::at(home, Source::Configured) {
                Ok(d) => r.dists.push(d),
                Err(e) => r.problems.push(format!("[spark.versions] {name}: {e}")),
            }
        }
        if let Some(home) = std::env::var_os("SPARK_HOME").filter(|h| !h.is_empty()) {
            match Distribution::at(Path::new(&home), Source::Env) {
                Ok(d) => r.dists.push(d),
                Err(e) => r.problems.push(format!("SPARK_HOME: {e}")),
            }
        }
        if let Ok(entries) = std::fs::read_dir(&r.install_dir) {
            let mut managed: Vec<Distribution> = entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| managed_at(&e.path()).ok())
                .collect();
            managed.sort_by_key(|d| std::cmp::Reverse(d.version));
            r.dists.extend(managed);
        }
        r
    }

    /// The distribution for a request (`None`: the default version, else
    /// the newest). Configured distributions win over `SPARK_HOME`, which
    /// wins over managed ones; within a source the newest match wins.
    pub fn resolve(&self, requested: Option<&str>) -> Result<&Distribution, SparkError> {
        let text = requested.or(self.default_version.as_deref());
        let Some(text) = text else {
            return self
                .dists
                .iter()
                .max_by(|a, b| a.version.cmp(&b.version).then(b.source.cmp(&a.source)))
                .ok_or_else(|| SparkError::NotInstalled {
                    requested: None,
                    available: Vec::new(),
                });
        };
        let req: VersionReq = text.parse()?;
        self.dists
            .iter()
            .filter(|d| req.matches(&d.version))
            .min_by(|a, b| a.source.cmp(&b.source).then(b.version.cmp(&a.version)))
            .ok_or_else(|| SparkError::NotInstalled {
                requested: Some(req),
                available: self.dists.iter().map(|d| d.version).collect(),
            })
    }
}
