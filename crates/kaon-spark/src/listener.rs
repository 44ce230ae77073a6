//! kaon's side of a Spark application: the listener jar (Java, compiled
//! here against the runtime's own jars) and the Python helpers shipped
//! with Python and SQL applications.
//!
//! The sources are part of this crate (`spark-listener/` in the
//! repository), so the files always match the kaon that ships them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SparkError;
use crate::dist::Distribution;
use crate::record::write_synced;

/// The listener's Java sources, `(path under spark-listener/src, text)`.
const LISTENER_SOURCES: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/listener_sources.rs"));
const PY_HELPER: &str = include_str!("../../../spark-listener/python/kaon_spark.py");
const SQL_RUNNER: &str = include_str!("../../../spark-listener/python/kaon_sql.py");

/// The listener's class, for `spark.extraListeners`.
pub const LISTENER_CLASS: &str = "dev.kaon.spark.KaonListener";

/// kaon's files for Spark applications, in a folder of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helpers {
    /// Where they are: named after a digest of their sources, so that
    /// another kaon's files are never taken for this one's.
    pub dir: PathBuf,
    /// `kaon_spark.py`, shipped with Python applications.
    pub py_helper: PathBuf,
    /// `kaon_sql.py`, which runs SQL steps.
    pub sql_runner: PathBuf,
}

impl Helpers {
    /// Writes the Python helpers under `install_dir` (`<install
    /// dir>/runtime/<digest>/`) unless they are there already. Failing to
    /// write them is not reported here: the submission that needs them
    /// fails with Spark's own message.
    pub fn prepare(install_dir: &Path) -> Helpers {
        let mut h = blake3::Hasher::new();
        for (name, text) in LISTENER_SOURCES {
            h.update(name.as_bytes());
            h.update(text.as_bytes());
        }
        h.update(PY_HELPER.as_bytes());
        h.update(SQL_RUNNER.as_bytes());
        let digest = h.finalize().to_hex();
        let dir = install_dir.join("runtime").join(&digest.as_str()[..16]);
        let _ = std::fs::create_dir_all(&dir);
        let put = |name: &str, text: &str| -> PathBuf {
            let p = dir.join(name);
            if !p.is_file() {
                let _ = write_synced(&p, text.as_bytes());
            }
            p
        };
        let py_helper = put("kaon_spark.py", PY_HELPER);
        let sql_runner = put("kaon_sql.py", SQL_RUNNER);
        Helpers {
            dir,
            py_helper,
            sql_runner,
        }
    }

    /// The listener jar, compiled against `dist` the first time it is
    /// asked for (see [`compile_listener`]).
    pub fn listener_jar(&self, dist: &Distribution) -> Result<PathBuf, SparkError> {
        let jar = self.dir.join("kaon-spark-listener.jar");
        if jar.is_file() {
            return Ok(jar);
        }
        compile_listener(&self.dir, dist)
    }
}

/// `JAVA_HOME/bin/<tool>` when `JAVA_HOME` has it, else `tool` on `PATH`.
fn java_bin(tool: &str) -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join(tool))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

/// Runs a JDK tool; its failure is its stderr's first line (`all`: the
/// whole of it, trimmed).
fn run_tool(tool: &'static str, cmd: &mut Command, all: bool) -> Result<(), SparkError> {
    let out = cmd
        .output()
        .map_err(|source| SparkError::ToolMissing { tool, source })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(SparkError::ToolFailed {
        tool,
        message: if all {
            err.trim().to_string()
        } else {
            err.lines().next().unwrap_or("").to_string()
        },
    })
}

/// Builds the listener jar in `dir` against the distribution's jars:
/// `javac --release 17 -cp "$SPARK_HOME/jars/*"`, then `jar`, the same
/// commands as `spark-listener/build.sh`. One jar serves Spark 3.5 and 4.x
/// (the listener reads Scala collections by reflection). Built in a
/// scratch folder and renamed into place, so concurrent kaons never see
/// half a jar.
pub fn compile_listener(dir: &Path, dist: &Distribution) -> Result<PathBuf, SparkError> {
    let work = dir.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let built = build_in(&work, dist).and_then(|tmp_jar| {
        let jar = dir.join("kaon-spark-listener.jar");
        std::fs::rename(&tmp_jar, &jar).map_err(|e| SparkError::io(&jar, e))?;
        Ok(jar)
    });
    let _ = std::fs::remove_dir_all(&work);
    built
}

fn build_in(work: &Path, dist: &Distribution) -> Result<PathBuf, SparkError> {
    let src = work.join("src");
    let classes = work.join("classes");
    std::fs::create_dir_all(&classes).map_err(|e| SparkError::io(&classes, e))?;
    let mut paths = Vec::new();
    for (name, text) in LISTENER_SOURCES {
        let p = src.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| SparkError::io(d, e))?;
        }
        std::fs::write(&p, text).map_err(|e| SparkError::io(&p, e))?;
        paths.push(p);
    }
    run_tool(
        "javac",
        Command::new(java_bin("javac"))
            .args(["--release", "17", "-nowarn", "-cp"])
            .arg(format!("{}/jars/*", dist.home.display()))
            .arg("-d")
            .arg(&classes)
            .args(&paths),
        false,
    )?;
    let jar = work.join("kaon-spark-listener.jar");
    run_tool(
        "jar",
        Command::new(java_bin("jar"))
            .arg("--create")
            .arg("--file")
            .arg(&jar)
            .arg("-C")
            .arg(&classes)
            .arg("."),
        true,
    )?;
    Ok(jar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sources_are_embedded() {
        assert!(
            LISTENER_SOURCES
                .iter()
                .any(|(name, text)| name.ends_with("KaonListener.java")
                    && text.contains("SparkListener"))
        );
        assert!(!PY_HELPER.is_empty() && !SQL_RUNNER.is_empty());
    }
}
