//! A cluster-mode driver's stdout and stderr, copied from its worker's log
//! endpoint into local files as they grow.

use std::io::Write;
use std::path::PathBuf;

use crate::rest::driver_log;

/// How much one request asks for.
const CHUNK: u64 = 1 << 20;

/// Copies a driver's logs into two local files, remembering how far each
/// has been copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverLogs {
    stdout: PathBuf,
    stderr: PathBuf,
    /// Bytes of each already copied.
    copied: (u64, u64),
}

impl DriverLogs {
    /// Copies into `stdout` and `stderr` (appended to), from the start of
    /// the driver's logs.
    pub fn new(stdout: PathBuf, stderr: PathBuf) -> DriverLogs {
        DriverLogs {
            stdout,
            stderr,
            copied: (0, 0),
        }
    }

    /// Copies what the driver `id` wrote since the last call, from the
    /// worker whose web UI is `worker`. A worker that does not answer is
    /// asked again at the next call.
    pub async fn copy(&mut self, worker: &str, id: &str) {
        for (which, path, off) in [
            ("stdout", &self.stdout, &mut self.copied.0),
            ("stderr", &self.stderr, &mut self.copied.1),
        ] {
            loop {
                let Ok(text) = driver_log(worker, id, which, *off, CHUNK).await else {
                    break;
                };
                // The worker prefixes what it returns with a header line:
                // `==== Bytes 0-1234 of 1234 of /work/driver-.../stderr ====`.
                let (header, body) = match text.split_once('\n') {
                    Some((h, b)) if h.starts_with("==== Bytes") => (h, b),
                    _ => ("", text.as_str()),
                };
                let (end, total) = parse_range(header).unwrap_or((*off, *off));
                if end <= *off {
                    break;
                }
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = f.write_all(body.as_bytes());
                }
                *off = end;
                if end >= total {
                    break;
                }
            }
        }
    }
}

/// `==== Bytes 0-1234 of 5678 of ... ====` -> (1234, 5678).
fn parse_range(header: &str) -> Option<(u64, u64)> {
    let rest = header.strip_prefix("==== Bytes ")?;
    let (range, rest) = rest.split_once(" of ")?;
    let end = range.split_once('-')?.1.parse().ok()?;
    let total = rest.split_whitespace().next()?.parse().ok()?;
    Some((end, total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use serde_json::json;

    #[test]
    fn the_header_says_how_far_the_log_goes() {
        assert_eq!(
            parse_range("==== Bytes 10-1234 of 5678 of /w/driver-1/stderr ===="),
            Some((1234, 5678))
        );
        assert_eq!(parse_range("no header"), None);
    }

    #[tokio::test]
    async fn copies_a_drivers_log_from_its_worker() {
        let ui = crate::discover::tests::fake_master(
            json!({}),
            vec![("driver-1", "line one\n".to_string())],
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let mut logs = DriverLogs::new(out.clone(), err.clone());
        logs.copy(&ui, "driver-1").await;
        // The fake worker serves the same text for both logs, once.
        logs.copy(&ui, "driver-1").await;
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "line one\n");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "line one\n");
    }
}
