//! `kaon spark install|list`

use std::process::ExitCode;

use anyhow::{Result, bail};
use kaon::config::Config;
use kaon_spark::{Registry, VersionReq};

/// Spark runtimes: install one from the `pyspark` package, list what kaon
/// can use.
///
/// A step picks its runtime with `spark = "3.5"` (the newest 3.5.x) or an
/// exact version. kaon finds runtimes in `[spark.versions]` of kaon.toml,
/// in `$SPARK_HOME`, and among its own installs (`$KAON_SPARK_DIR`, default
/// `~/.local/share/kaon/spark`).
///
/// Examples:
///   kaon spark install 3.5
///   kaon spark install 4.x 3.5.9
///   kaon spark list
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Install Spark runtimes from PyPI's `pyspark` (a Python virtual
    /// environment per version, with numpy for MLlib).
    Install {
        /// Versions: `3.5` (newest 3.5.x), `4.x` (newest 4), or exact.
        #[arg(required = true)]
        versions: Vec<String>,
        /// The Python that makes the environment.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Install even when a matching runtime is already there.
        #[arg(long)]
        force: bool,
    },
    /// List the Spark runtimes kaon can use.
    List,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load()?;
    match args.verb {
        Verb::Install {
            versions,
            python,
            force,
        } => {
            let mut reqs = Vec::new();
            for v in &versions {
                reqs.push(v.parse::<VersionReq>()?);
            }
            let dir = config.spark.install_dir();
            for req in reqs {
                let reg = Registry::discover(&config.spark);
                if !force
                    && let Some(d) = reg.dists.iter().find(|d| {
                        d.source == kaon_spark::dist::Source::Managed && req.matches(&d.version)
                    })
                {
                    kaon::outln!(
                        "Spark {} is installed ({}): {}",
                        d.version,
                        req,
                        d.home.display()
                    );
                    continue;
                }
                kaon::outln!(
                    "installing Spark {req} ({}) into {} ...",
                    req.pip_requirement(),
                    dir.display()
                );
                let d = kaon_spark::install(&req, &dir, &python)?;
                kaon::outln!(
                    "installed Spark {} (Scala {}): {}",
                    d.version,
                    d.scala,
                    d.home.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::List => {
            let reg = Registry::discover(&config.spark);
            if reg.dists.is_empty() && reg.problems.is_empty() {
                kaon::outln!("no Spark runtime found; `kaon spark install 3.5` installs one");
                return Ok(ExitCode::SUCCESS);
            }
            kaon::outln!("{:<8} {:<6} {:<10} SPARK_HOME", "VERSION", "SCALA", "FROM");
            for d in &reg.dists {
                kaon::outln!(
                    "{:<8} {:<6} {:<10} {}",
                    d.version.to_string(),
                    d.scala,
                    d.source.name(),
                    d.home.display()
                );
            }
            for p in &reg.problems {
                eprintln!("warning: {p}");
            }
            if let Some(v) = &reg.default_version
                && reg.resolve(Some(v)).is_err()
            {
                bail!("[spark] default_version = \"{v}\" is not installed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
