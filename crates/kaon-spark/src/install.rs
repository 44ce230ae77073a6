//! `kaon spark install`: a Spark runtime from the `pyspark` package.
//!
//! The `pyspark` wheel on PyPI carries a whole Spark distribution
//! (spark-submit, spark-class, the jars), so an install is a Python
//! virtual environment with `pyspark` (and `numpy`, which MLlib's Python
//! API needs). It is built in a hidden folder and renamed into place, so a
//! half-finished install is never taken for a runtime.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::SparkError;
use crate::dist::{Distribution, managed_at};
use crate::version::VersionReq;

/// Installs the newest `pyspark` matching `req` into `dir/<version>`,
/// using `python` (a Python 3 interpreter) to make the environment.
/// Installing a version that is already there does nothing more than
/// download it again to find out; the existing install is kept.
pub fn install(req: &VersionReq, dir: &Path, python: &str) -> Result<Distribution, SparkError> {
    let io = |what: &str, e: std::io::Error| SparkError::Install {
        message: format!("{what}: {e}"),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".install-{}-{}", req, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |cmd: &mut Command, what: &str| -> Result<(), SparkError> {
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|e| io(&format!("cannot run {what}"), e))?;
        if status.success() {
            Ok(())
        } else {
            Err(SparkError::Install {
                message: format!("{what} failed ({status})"),
            })
        }
    };
    let result = (|| {
        run(
            Command::new(python).arg("-m").arg("venv").arg(&tmp),
            &format!("`{python} -m venv`"),
        )?;
        run(
            Command::new(tmp.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                ])
                .arg(req.pip_requirement())
                .arg("numpy"),
            &format!("`pip install {}`", req.pip_requirement()),
        )?;
        let d = managed_at(&tmp)?;
        let dest = dir.join(d.version.to_string());
        if managed_at(&dest).is_ok() {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&tmp, &dest)
                .map_err(|e| io("cannot move the install into place", e))?;
        }
        managed_at(&dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
