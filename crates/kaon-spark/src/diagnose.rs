//! A failed driver's error, for the step's failure message: read from its
//! logs (Java stack traces, Python tracebacks) or from the listener.

use std::path::Path;

/// How much of the end of each log is read.
const TAIL: u64 = 256 * 1024;
/// Longest message kept, in characters.
const LONGEST: usize = 400;

/// The driver's error: the line that names the exception (the last
/// `Caused by:` of a Java trace, the last line of a Python traceback, or
/// Java's `Exception in thread "main"`), else the listener's last job
/// failure, else a pointer to the logs. PySpark's launcher merges the
/// Python driver's stderr into its stdout, so `stdout` is searched when
/// `stderr` names nothing.
pub fn driver_error(stderr: &Path, stdout: &Path, listener: Option<&str>) -> String {
    error_line(&read_tail(stderr, TAIL))
        .or_else(|| error_line(&read_tail(stdout, TAIL)))
        .or_else(|| listener.map(|m| m.lines().next().unwrap_or(m).trim().to_string()))
        .map(|mut m| {
            if m.chars().count() > LONGEST {
                m = m.chars().take(LONGEST).collect::<String>() + "…";
            }
            m
        })
        .unwrap_or_else(|| "see `kaon logs` for the driver's output".into())
}

/// The line of `text` that names the error, if any.
fn error_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let is_exception = |l: &str| {
        let head = l.split(':').next().unwrap_or("");
        !head.contains(' ')
            && (head.ends_with("Exception") || head.ends_with("Error"))
            && head.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    };
    // Java wraps the job's exception (DriverWrapper, reflection): the last
    // `Caused by:` is the root cause.
    lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Caused by: "))
        .or_else(|| {
            lines
                .iter()
                .rev()
                .map(|l| l.trim())
                .find(|l| is_exception(l))
        })
        .or_else(|| {
            lines
                .iter()
                .rev()
                .find(|l| l.starts_with("Exception in thread"))
                .copied()
        })
        .map(|l| {
            // PySpark prints some exceptions' names and messages on
            // separate lines: `...ParseException: ` then the message.
            let l = l.trim();
            if l.ends_with(':')
                && let Some(next) = lines
                    .iter()
                    .skip_while(|x| x.trim() != l)
                    .nth(1)
                    .map(|x| x.trim())
                    .filter(|x| !x.is_empty())
            {
                return format!("{l} {next}");
            }
            l.to_string()
        })
}

/// The last `max` bytes of a file (empty when it cannot be read).
fn read_tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;

    #[test]
    fn the_root_cause_of_a_java_trace() {
        let trace = "Exception in thread \"main\" java.lang.reflect.InvocationTargetException\n\
            \tat org.apache.spark.deploy.worker.DriverWrapper.main\n\
            Caused by: org.apache.spark.SparkException: Job aborted\n\
            \tat Job.main\n\
            Caused by: java.io.FileNotFoundException: /data/in.csv (No such file)\n\
            \tat java.io.FileInputStream.open0\n";
        assert_eq!(
            error_line(trace).as_deref(),
            Some("java.io.FileNotFoundException: /data/in.csv (No such file)")
        );
    }

    #[test]
    fn the_last_line_of_a_python_traceback() {
        let tb = "Traceback (most recent call last):\n  File \"job.py\", line 3\n\
            pyspark.errors.exceptions.captured.ParseException: \n\
            [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'.\n";
        assert_eq!(
            error_line(tb).as_deref(),
            Some(
                "pyspark.errors.exceptions.captured.ParseException: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'."
            )
        );
        assert_eq!(
            error_line("ValueError: bad row\n").as_deref(),
            Some("ValueError: bad row")
        );
        assert_eq!(error_line("all fine\n"), None);
    }

    #[test]
    fn stdout_then_the_listener_then_a_pointer_to_the_logs() {
        let dir = tempfile::tempdir().unwrap();
        let (err, out) = (dir.path().join("err"), dir.path().join("out"));
        assert_eq!(
            driver_error(&err, &out, None),
            "see `kaon logs` for the driver's output"
        );
        assert_eq!(
            driver_error(&err, &out, Some("Job 0 failed\nmore")),
            "Job 0 failed"
        );
        std::fs::write(&out, "RuntimeError: boom\n").unwrap();
        assert_eq!(driver_error(&err, &out, None), "RuntimeError: boom");
        std::fs::write(&err, format!("KeyError: {}\n", "k".repeat(500))).unwrap();
        assert!(driver_error(&err, &out, None).ends_with("k…"));
    }
}
