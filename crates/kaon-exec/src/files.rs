//! Where an attempt's logs, outputs and exit status live, and how the step
//! protocol's marker lines are read.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The files of one attempt, under `<root>/<run>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptFiles {
    /// Standard output.
    pub stdout: PathBuf,
    /// Standard error.
    pub stderr: PathBuf,
    /// The JSON object of outputs the step may write (`$KAON_OUTPUTS_FILE`).
    pub outputs: PathBuf,
    /// The exit status, written by the wrapper shell when the step ends,
    /// so that it survives kaon not watching.
    pub exit: PathBuf,
    /// Lines left by `kaon artifact put/get` inside the step
    /// (`$KAON_ARTIFACTS_FILE`).
    pub artifacts: PathBuf,
    /// Outputs reported while the attempt ran, by a channel other than its
    /// stdout (the Spark listener's `output` events): JSON lines
    /// `{"name": .., "value": ..}`, later lines winning.
    pub reported: PathBuf,
    /// A Spark attempt's submission (written as soon as the master has
    /// accepted it, before the handle is stored).
    pub spark: PathBuf,
}

impl AttemptFiles {
    /// The files of `node`'s `attempt` in `run`.
    pub fn new(root: &Path, run: &str, node: u32, step: &str, attempt: u32) -> AttemptFiles {
        let dir = root.join(run);
        let stem = format!("{node}-{step}.{attempt}");
        AttemptFiles {
            stdout: dir.join(format!("{stem}.out")),
            stderr: dir.join(format!("{stem}.err")),
            outputs: dir.join(format!("{stem}.outputs.json")),
            exit: dir.join(format!("{stem}.exit")),
            artifacts: dir.join(format!("{stem}.artifacts.jsonl")),
            reported: dir.join(format!("{stem}.reported.jsonl")),
            spark: dir.join(format!("{stem}.spark.json")),
        }
    }

    /// The exit status the wrapper recorded, if it finished writing it.
    pub fn read_exit(&self) -> Option<i32> {
        std::fs::read_to_string(&self.exit)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Creates (or truncates) a file only its owner can read: logs hold what
/// steps print, which may be secret.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Creates a folder (and its parents) only its owner can enter.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Outputs in [`AttemptFiles::reported`]; a torn last line is ignored.
pub fn read_reported(path: &Path) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line)
            && let Some(name) = v["name"].as_str()
        {
            out.insert(name.to_string(), v["value"].clone());
        }
    }
    out
}

/// A marker line of the step protocol, printed on stdout.
#[derive(Clone, Debug, PartialEq)]
pub enum Marker {
    /// `::kaon::progress <percent> [message]`
    Progress {
        /// 0 to 100.
        percent: Option<f32>,
        /// The rest of the line.
        message: Option<String>,
    },
    /// `::kaon::output <name>=<json>`
    Output {
        /// The output.
        name: String,
        /// Its value.
        value: Value,
    },
}

/// Reads one line; `None` when it is not a well-formed marker.
pub fn parse_marker(line: &str) -> Option<Marker> {
    let rest = line
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("::kaon::")?;
    if let Some(p) = rest.strip_prefix("progress ") {
        let p = p.trim_start();
        let (num, msg) = p.split_once(' ').unwrap_or((p, ""));
        let percent = num
            .trim_end_matches('%')
            .parse::<f32>()
            .ok()
            .map(|x| x.clamp(0.0, 100.0));
        let (percent, message) = match percent {
            Some(x) => (Some(x), msg.trim()),
            None => (None, p.trim()),
        };
        return Some(Marker::Progress {
            percent,
            message: (!message.is_empty()).then(|| message.to_string()),
        });
    }
    if let Some(o) = rest.strip_prefix("output ") {
        let (name, json) = o.split_once('=')?;
        let value = serde_json::from_str(json.trim()).ok()?;
        return Some(Marker::Output {
            name: name.trim().to_string(),
            value,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(
            parse_marker("::kaon::progress 40 training fold 2"),
            Some(Marker::Progress {
                percent: Some(40.0),
                message: Some("training fold 2".into())
            })
        );
        assert_eq!(
            parse_marker("::kaon::progress 250%"),
            Some(Marker::Progress {
                percent: Some(100.0),
                message: None
            })
        );
        assert_eq!(
            parse_marker("::kaon::progress loading"),
            Some(Marker::Progress {
                percent: None,
                message: Some("loading".into())
            })
        );
        assert_eq!(
            parse_marker("::kaon::output regions=[\"US\",\"CA\"]\n"),
            Some(Marker::Output {
                name: "regions".into(),
                value: serde_json::json!(["US", "CA"])
            })
        );
        assert_eq!(parse_marker("::kaon::output n=not json"), None);
        assert_eq!(parse_marker("progress 5"), None);
    }
}
