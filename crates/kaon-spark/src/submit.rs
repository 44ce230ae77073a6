//! What kaon hands Spark: the spark-submit command line, or the body of a
//! REST `CreateSubmissionRequest`. Both come from one merged conf, so the
//! two ways of submitting cannot drift apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::dist::Distribution;
use crate::job::SparkJob;
use crate::target::{Mode, Target};

/// The flags Spark's own launcher (`org.apache.spark.launcher.
/// JavaModuleOptions`, 3.3-3.5) adds so that Spark runs on Java 17. Spark
/// 3.5 drivers started by a standalone master in cluster mode do not get
/// them and die at once (`IllegalAccessError ... sun.nio.ch.DirectBuffer`),
/// so kaon adds them to driver and executor options itself. Spark 4 adds
/// them on its own.
pub const JAVA_MODULE_OPTIONS: &str = "-XX:+IgnoreUnrecognizedVMOptions \
--add-opens=java.base/java.lang=ALL-UNNAMED \
--add-opens=java.base/java.lang.invoke=ALL-UNNAMED \
--add-opens=java.base/java.lang.reflect=ALL-UNNAMED \
--add-opens=java.base/java.io=ALL-UNNAMED \
--add-opens=java.base/java.net=ALL-UNNAMED \
--add-opens=java.base/java.nio=ALL-UNNAMED \
--add-opens=java.base/java.util=ALL-UNNAMED \
--add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED \
--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED \
--add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
--add-opens=java.base/sun.nio.cs=ALL-UNNAMED \
--add-opens=java.base/sun.security.action=ALL-UNNAMED \
--add-opens=java.base/sun.util.calendar=ALL-UNNAMED \
--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED \
-Djdk.reflect.useDirectMethodHandle=false";

/// The listener's settings for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConf {
    /// The listener jar.
    pub jar: PathBuf,
    /// Where it posts (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The run's token.
    pub token: String,
    /// The run.
    pub run: String,
    /// The node.
    pub node: u32,
    /// The attempt.
    pub attempt: u32,
}

/// One attempt's submission, before it is turned into a command line or
/// a REST body.
#[derive(Clone, Debug)]
pub struct Submission<'a> {
    /// The step's job.
    pub job: &'a SparkJob,
    /// The runtime.
    pub dist: &'a Distribution,
    /// Where it goes.
    pub target: &'a Target,
    /// `spark.app.name` unless the step sets one.
    pub app_name: String,
    /// The listener, when kaon has one for this attempt.
    pub listener: Option<ListenerConf>,
    /// kaon's SQL runner (`kaon_sql.py`), for `sql` steps.
    pub sql_runner: Option<PathBuf>,
    /// kaon's Python helper (`kaon_spark.py`), shipped with Python apps.
    pub py_helper: Option<PathBuf>,
    /// Where the SQL runner writes the last statement's result (the step's
    /// only `dir` output).
    pub sql_output: Option<PathBuf>,
}

/// Gives a client-mode driver a known UI port (unless the job sets one),
/// so that kaon can poll its monitoring REST API even when no listener
/// event arrives. Returns the UI's address.
pub fn pin_ui_port(job: &mut SparkJob, target: &Target) -> Option<String> {
    if target.mode != Mode::Client || job.conf.contains_key("spark.ui.port") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()?;
    job.conf.insert("spark.ui.port".into(), port.to_string());
    Some(format!("http://127.0.0.1:{port}"))
}

/// A size the way Spark reads it. A bare number means MiB to Spark, so the
/// unit is always written; sizes are rounded up to whole KiB.
pub fn spark_size(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes.is_multiple_of(K * K * K) {
        format!("{}g", bytes / (K * K * K))
    } else if bytes.is_multiple_of(K * K) {
        format!("{}m", bytes / (K * K))
    } else {
        format!("{}k", bytes.div_ceil(K))
    }
}

fn append(conf: &mut BTreeMap<String, String>, key: &str, value: &str, sep: &str) {
    match conf.get_mut(key) {
        Some(v) if !v.split(sep).any(|p| p.trim() == value) => {
            v.push_str(sep);
            v.push_str(value);
        }
        Some(_) => {}
        None => {
            conf.insert(key.to_string(), value.to_string());
        }
    }
}

impl Submission<'_> {
    /// The application resource.
    pub fn app_resource(&self) -> String {
        match (&self.job.sql, &self.sql_runner) {
            (Some(_), Some(r)) => r.display().to_string(),
            _ => self.job.app.clone().unwrap_or_default(),
        }
    }

    /// The application's arguments (for SQL: the runner's).
    pub fn app_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(sql) = &self.job.sql {
            args.push("--query".to_string());
            args.push(sql.clone());
            if let Some(out) = &self.sql_output {
                args.push("--output".to_string());
                args.push(out.display().to_string());
            }
        }
        args.extend(self.job.args.iter().cloned());
        args
    }

    /// The jars besides the application: the step's and the listener's.
    pub fn jars(&self) -> Vec<String> {
        let mut jars = self.job.jars.clone();
        if let Some(l) = &self.listener {
            jars.push(l.jar.display().to_string());
        }
        jars
    }

    /// The py-files: the step's and kaon's helper.
    pub fn py_files(&self) -> Vec<String> {
        let mut files = self.job.py_files.clone();
        if self.job.is_python()
            && let Some(h) = &self.py_helper
        {
            files.push(h.display().to_string());
        }
        files
    }

    /// Every conf pair, merged: placement conf, then the step's conf
    /// (which wins), then what kaon needs (app name if unset, listener,
    /// resources, Java module flags appended to the step's options).
    pub fn conf(&self) -> BTreeMap<String, String> {
        let mut c = self.target.conf.clone();
        c.extend(self.job.conf.clone());
        c.entry("spark.app.name".into())
            .or_insert_with(|| self.app_name.clone());
        let j = self.job;
        let sizes = [
            ("spark.driver.memory", j.driver_memory),
            ("spark.executor.memory", j.executor_memory),
        ];
        for (k, v) in sizes {
            if let Some(v) = v {
                c.insert(k.into(), spark_size(v));
            }
        }
        let counts = [
            ("spark.driver.cores", j.driver_cores),
            ("spark.executor.cores", j.executor_cores),
            ("spark.executor.instances", j.num_executors),
            ("spark.cores.max", j.max_cores),
        ];
        for (k, v) in counts {
            if let Some(v) = v {
                c.insert(k.into(), v.to_string());
            }
        }
        if let Some(l) = &self.listener {
            append(
                &mut c,
                "spark.extraListeners",
                crate::listener::LISTENER_CLASS,
                ",",
            );
            c.insert("spark.kaon.url".into(), l.url.clone());
            c.insert("spark.kaon.token".into(), l.token.clone());
            c.insert("spark.kaon.run".into(), l.run.clone());
            c.insert("spark.kaon.node".into(), l.node.to_string());
            c.insert("spark.kaon.attempt".into(), l.attempt.to_string());
        }
        if self.dist.needs_module_flags() {
            for k in [
                "spark.driver.extraJavaOptions",
                "spark.executor.extraJavaOptions",
            ] {
                if !c.get(k).is_some_and(|v| v.contains("--add-opens")) {
                    append(&mut c, k, JAVA_MODULE_OPTIONS, " ");
                }
            }
        }
        c
    }

    /// The spark-submit command line (client mode, and cluster mode on
    /// YARN and Kubernetes).
    pub fn argv(&self) -> Vec<String> {
        let mut a = vec![
            self.dist.spark_submit().display().to_string(),
            "--master".into(),
            self.target.master.clone(),
            "--deploy-mode".into(),
            match self.target.mode {
                Mode::Client => "client".into(),
                Mode::StandaloneCluster | Mode::SubmitCluster => "cluster".into(),
            },
        ];
        if let Some(c) = &self.job.main_class {
            a.extend(["--class".into(), c.clone()]);
        }
        let lists = [
            ("--packages", self.job.packages.clone()),
            ("--jars", self.jars()),
            ("--py-files", self.py_files()),
        ];
        for (flag, list) in lists {
            if !list.is_empty() {
                a.extend([flag.to_string(), list.join(",")]);
            }
        }
        for (k, v) in self.conf() {
            a.extend(["--conf".into(), format!("{k}={v}")]);
        }
        a.push(self.app_resource());
        a.extend(self.app_args());
        a
    }

    /// The body of `POST /v1/submissions/create` on a standalone master's
    /// REST server. Spark 3.5 insists on every key being present.
    pub fn rest_body(&self, env: &[(String, String)]) -> Value {
        let mut conf = self.conf();
        let app = self.app_resource();
        let app_url = if app.contains(':') {
            app.clone()
        } else {
            format!("file:{app}")
        };
        // The application jar must be in spark.jars too, or executors
        // cannot load the job's classes.
        let mut jars = vec![app_url.clone()];
        jars.extend(self.jars().into_iter().map(|j| {
            if j.contains(':') {
                j
            } else {
                format!("file:{j}")
            }
        }));
        for j in jars {
            append(&mut conf, "spark.jars", &j, ",");
        }
        if !self.job.packages.is_empty() {
            append(
                &mut conf,
                "spark.jars.packages",
                &self.job.packages.join(","),
                ",",
            );
        }
        conf.insert("spark.master".into(), self.target.master.clone());
        conf.insert("spark.submit.deployMode".into(), "cluster".into());
        conf.entry("spark.driver.supervise".into())
            .or_insert_with(|| "false".into());
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "action": "CreateSubmissionRequest",
            "clientSparkVersion": self.dist.version.to_string(),
            "appResource": app_url,
            "mainClass": self.job.main_class.clone().unwrap_or_default(),
            "appArgs": self.app_args(),
            "environmentVariables": env,
            "sparkProperties": conf,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use crate::dist::Source;

    fn dist(v: &str) -> Distribution {
        Distribution {
            version: v.parse().unwrap(),
            scala: "2.12".into(),
            home: "/opt/spark".into(),
            python: None,
            source: Source::Configured,
        }
    }

    #[test]
    fn sizes_keep_their_unit() {
        assert_eq!(spark_size(4 << 30), "4g");
        assert_eq!(spark_size(512 << 20), "512m");
        assert_eq!(spark_size(1536 << 20), "1536m");
        assert_eq!(spark_size(1000), "1k");
    }

    #[test]
    fn command_line_and_rest_body_agree() {
        let job = SparkJob {
            app: Some("/w/job.jar".into()),
            main_class: Some("com.x.Main".into()),
            args: vec!["--day".into(), "2024-06-01".into()],
            conf: [(
                "spark.executor.extraJavaOptions".to_string(),
                "-Dx=1".to_string(),
            )]
            .into(),
            driver_memory: Some(2 << 30),
            max_cores: Some(4),
            jars: vec!["/w/dep.jar".into()],
            ..SparkJob::default()
        };
        let target = Target {
            cluster: None,
            master: "spark://127.0.0.1:7077".into(),
            mode: Mode::StandaloneCluster,
            rest: Some("http://127.0.0.1:6066".into()),
            ui: None,
            conf: [("spark.eventLog.enabled".to_string(), "true".to_string())].into(),
        };
        let d = dist("3.5.9");
        let s = Submission {
            job: &job,
            dist: &d,
            target: &target,
            app_name: "kaon r1 train #1".into(),
            listener: Some(ListenerConf {
                jar: "/k/listener.jar".into(),
                url: "http://127.0.0.1:9".into(),
                token: "t".into(),
                run: "r1".into(),
                node: 3,
                attempt: 1,
            }),
            sql_runner: None,
            py_helper: Some("/k/kaon_spark.py".into()),
            sql_output: None,
        };
        let argv = s.argv();
        let joined = argv.join(" ");
        assert!(joined.starts_with("/opt/spark/bin/spark-submit --master spark://127.0.0.1:7077 --deploy-mode cluster --class com.x.Main --jars /w/dep.jar,/k/listener.jar"), "{joined}");
        assert!(
            !joined.contains("--py-files"),
            "a jar app gets no Python helper"
        );
        assert!(argv.ends_with(&["/w/job.jar".into(), "--day".into(), "2024-06-01".into()]));
        assert!(joined.contains("--conf spark.driver.memory=2g"));
        assert!(joined.contains("--conf spark.cores.max=4"));
        assert!(joined.contains("--conf spark.extraListeners=dev.kaon.spark.KaonListener"));
        let c = s.conf();
        assert!(
            c["spark.executor.extraJavaOptions"]
                .starts_with("-Dx=1 -XX:+IgnoreUnrecognizedVMOptions")
        );
        assert!(c["spark.driver.extraJavaOptions"].contains("sun.nio.ch"));

        let b = s.rest_body(&[("A".into(), "1".into())]);
        assert_eq!(b["appResource"], "file:/w/job.jar");
        assert_eq!(b["mainClass"], "com.x.Main");
        assert_eq!(b["clientSparkVersion"], "3.5.9");
        let p = &b["sparkProperties"];
        assert_eq!(
            p["spark.jars"],
            "file:/w/job.jar,file:/w/dep.jar,file:/k/listener.jar"
        );
        assert_eq!(p["spark.submit.deployMode"], "cluster");
        assert_eq!(p["spark.eventLog.enabled"], "true");
        assert_eq!(p["spark.kaon.node"], "3");
        assert_eq!(b["environmentVariables"]["A"], "1");

        let d4 = dist("4.1.0");
        let s4 = Submission {
            dist: &d4,
            ..s.clone()
        };
        assert_eq!(s4.conf()["spark.executor.extraJavaOptions"], "-Dx=1");
        assert!(!s4.conf().contains_key("spark.driver.extraJavaOptions"));
    }

    #[test]
    fn sql_runs_through_the_runner() {
        let job = SparkJob {
            sql: Some("SELECT 1".into()),
            ..SparkJob::default()
        };
        let target = Target {
            cluster: None,
            master: "local[2]".into(),
            mode: Mode::Client,
            rest: None,
            ui: None,
            conf: BTreeMap::new(),
        };
        let d = dist("4.1.0");
        let s = Submission {
            job: &job,
            dist: &d,
            target: &target,
            app_name: "a".into(),
            listener: None,
            sql_runner: Some("/k/kaon_sql.py".into()),
            py_helper: Some("/k/kaon_spark.py".into()),
            sql_output: None,
        };
        let argv = s.argv();
        let n = argv.len();
        assert_eq!(argv[n - 3..], ["/k/kaon_sql.py", "--query", "SELECT 1"]);
        assert!(argv.join(" ").contains("--py-files /k/kaon_spark.py"));
    }
}
