//! kaon's configuration file, `kaon.toml`.
//!
//! Looked for at `$KAON_CONFIG`, else `./kaon.toml`, else
//! `~/.config/kaon/kaon.toml` (`$XDG_CONFIG_HOME/kaon/kaon.toml`); having
//! none is fine. Settings are layered: built-in defaults, then the file,
//! then `KAON_*` variables and flags where a setting has them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kaon_spark::SparkSettings;
use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[spark]`: runtimes, clusters, the listener's callback address.
    pub spark: SparkSettings,
    /// Where it was read from, if anywhere.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("KAON_CONFIG").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut c = vec![PathBuf::from("kaon.toml")];
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(b) = base {
        c.push(b.join("kaon/kaon.toml"));
    }
    c
}

impl Config {
    /// Reads the first configuration file found (see the module docs).
    /// `$KAON_CONFIG` naming a missing file is an error.
    pub fn load() -> Result<Config> {
        let explicit = std::env::var_os("KAON_CONFIG").is_some_and(|p| !p.is_empty());
        for p in candidates() {
            if p.is_file() || explicit {
                return Config::read(&p);
            }
        }
        Ok(Config::default())
    }

    /// Reads one file.
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let mut c: Config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid kaon configuration", path.display()))?;
        c.path = Some(path.to_path_buf());
        Ok(c)
    }
}
