//! The Spark executor: `kind = "spark"` steps, and everything else handed
//! to the local executor.
//!
//! - Client mode (and cluster mode on YARN and Kubernetes, where
//!   spark-submit waits for the application): spark-submit runs as a
//!   supervised local process, so kill, timeouts, logs and re-attach are
//!   the local executor's. kaon only reads the driver's error out of its
//!   stderr when it fails.
//! - Cluster mode on a standalone master: the REST submission API. The
//!   submission id is written to the attempt's files as soon as the master
//!   accepts it and is part of the handle the driver stores before the step
//!   counts as running, so a restarted kaon watches the same driver
//!   instead of submitting a second one. The end is the master's word
//!   (`FINISHED`, `FAILED`, `KILLED`, `ERROR`), never spark-submit's exit
//!   status, and a retry is only ordered after that word has come.
//!
//! Progress comes from kaon's listener inside the driver (posting to the
//! callback endpoint, see [`kaon_spark::callback`]) and, while no events
//! arrive, from polling the driver's monitoring REST API.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaon_artifacts::ArtifactStore;
use kaon_engine::event::{Invocation, SparkJob};
use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_model::types::Type;
use kaon_spark::callback::{EventSink, token};
use kaon_spark::progress::{Monitor, SparkProgress};
use kaon_spark::rest::{DriverState, RestClient, driver_log, worker_ui};
use kaon_spark::submit::{ListenerConf, Submission, is_python};
use kaon_spark::target::{Mode, Target, place};
use kaon_spark::{Distribution, Registry, SparkSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::files::{AttemptFiles, Marker, parse_marker};
use crate::local::collect_outputs;
use crate::{ExecEvent, Executor, LaunchError, LocalExecutor};

/// The listener's Java sources, `(path under spark-listener/src, text)`.
const LISTENER_SOURCES: &[(&str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/listener_sources.rs"));
const PY_HELPER: &str = include_str!("../../../spark-listener/python/kaon_spark.py");
const SQL_RUNNER: &str = include_str!("../../../spark-listener/python/kaon_sql.py");

/// Where the listener posts, and the secret its tokens are made with.
#[derive(Clone)]
pub struct Callback {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The installation's secret.
    pub secret: [u8; 32],
}

/// A REST-submitted driver, as stored in the handle and the attempt files.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RestHandle {
    spark: String,
    submission: String,
    rest: String,
    ui: Option<String>,
    version: String,
}

/// What kaon knows about a Spark attempt while it runs.
struct Live {
    files: AttemptFiles,
    progress: SparkProgress,
    /// The driver UI to poll when the listener is silent.
    ui: Option<String>,
    last_event: Option<Instant>,
    client: bool,
}

type Key = (String, u32, u32);

struct Inner {
    settings: SparkSettings,
    registry: Mutex<Registry>,
    tx: UnboundedSender<ExecEvent>,
    poll: Duration,
    store: Option<ArtifactStore>,
    callback: Option<Callback>,
    live: Mutex<HashMap<Key, Live>>,
    runtime: Mutex<Option<Runtime>>,
    monitor: Monitor,
}

#[derive(Clone, Debug)]
struct Runtime {
    jar: Option<PathBuf>,
    py_helper: PathBuf,
    sql_runner: PathBuf,
}

/// Runs Spark steps; hands every other step to a [`LocalExecutor`].
#[derive(Clone)]
pub struct SparkExecutor {
    local: LocalExecutor,
    inner: Arc<Inner>,
}

fn key(order: &LaunchOrder) -> Key {
    (order.run.clone(), order.node.0, order.attempt)
}

fn user(message: String) -> LaunchError {
    LaunchError {
        message,
        platform: false,
    }
}

impl SparkExecutor {
    /// An executor whose attempts' files live under `root` and whose
    /// events go to `tx`. `callback` is where listeners post (none: no
    /// listener, progress from polling only). Must be called inside a
    /// tokio runtime.
    pub fn new(
        root: PathBuf,
        tx: UnboundedSender<ExecEvent>,
        poll: Duration,
        grace: Duration,
        settings: SparkSettings,
        callback: Option<Callback>,
        store: Option<ArtifactStore>,
    ) -> SparkExecutor {
        let (ltx, lrx) = unbounded_channel();
        let mut local = LocalExecutor::new(root, ltx, poll, grace);
        if let Some(s) = &store {
            local = local.with_artifacts(s.clone());
        }
        let registry = Registry::discover(&settings);
        let inner = Arc::new(Inner {
            settings,
            registry: Mutex::new(registry),
            tx,
            poll,
            store,
            callback,
            live: Mutex::new(HashMap::new()),
            runtime: Mutex::new(None),
            monitor: Monitor::default(),
        });
        tokio::spawn(forward(inner.clone(), lrx));
        SparkExecutor { local, inner }
    }

    /// The sink for the callback endpoint.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.inner.clone()
    }

    /// The distribution a job asks for; the registry is looked at again
    /// when nothing matches (a runtime installed while kaon runs).
    pub fn distribution(&self, version: Option<&str>) -> Result<Distribution, String> {
        let mut reg = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Ok(d) = reg.resolve(version) {
            return Ok(d.clone());
        }
        *reg = Registry::discover(&self.inner.settings);
        reg.resolve(version).cloned().map_err(|e| e.to_string())
    }

    fn plan(&self, job: &SparkJob) -> Result<(Distribution, Target), LaunchError> {
        let dist = self.distribution(job.version.as_deref()).map_err(user)?;
        let target = place(job, &self.inner.settings, dist.version.major)
            .map_err(|e| user(e.to_string()))?;
        if is_python(job) && target.mode == Mode::StandaloneCluster {
            return Err(user(format!(
                "a standalone master ({}) cannot run Python or SQL applications in cluster mode (a Spark limitation); use deploy_mode = \"client\", or a jar application",
                target.master
            )));
        }
        Ok((dist, target))
    }

    fn start_spark(&self, order: &LaunchOrder, job: &SparkJob) -> Result<Value, LaunchError> {
        let (dist, target) = self.plan(job)?;
        let rt = self.inner.runtime(&dist);
        let listener = match (&self.inner.callback, &rt.jar) {
            (Some(cb), Some(jar)) => Some(ListenerConf {
                jar: jar.clone(),
                url: cb.url.clone(),
                token: token(&cb.secret, &order.run),
                run: order.run.clone(),
                node: order.node.0,
                attempt: order.attempt,
            }),
            _ => None,
        };
        let mut job = job.clone();
        let dirs: Vec<&PathBuf> = order
            .outputs
            .iter()
            .filter(|o| o.ty == Type::Dir)
            .filter_map(|o| o.path.as_ref())
            .collect();
        let sql_output = match dirs.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        };
        let mut client_ui = None;
        if target.mode == Mode::Client && !job.conf.contains_key("spark.ui.port") {
            // A known port lets kaon poll the driver's REST API even when
            // no listener event arrives.
            if let Some(port) = free_port() {
                job.conf.insert("spark.ui.port".into(), port.to_string());
                client_ui = Some(format!("http://127.0.0.1:{port}"));
            }
        }
        let sub = Submission {
            job: &job,
            dist: &dist,
            target: &target,
            app_name: format!("kaon {} {} #{}", order.run, order.key, order.attempt),
            listener,
            sql_runner: Some(rt.sql_runner.clone()),
            py_helper: Some(rt.py_helper.clone()),
            sql_output,
        };
        let files = self.local.files(order);
        match target.mode {
            Mode::Client | Mode::SubmitCluster => {
                let mut env = order.env.clone();
                env.extend(self.inner.spark_env(&dist, &order.env));
                let local_order = LaunchOrder {
                    invocation: Invocation::Argv { argv: sub.argv() },
                    env,
                    ..order.clone()
                };
                self.inner.register(order, files, client_ui.clone(), true);
                let mut h = self.local.start(&local_order).inspect_err(|_| {
                    self.inner.forget(&key(order));
                })?;
                if let Value::Object(m) = &mut h {
                    m.insert("spark".into(), "client".into());
                    if let Some(ui) = client_ui {
                        m.insert("ui".into(), ui.into());
                    }
                }
                Ok(h)
            }
            Mode::StandaloneCluster => self.start_rest(order, &sub, &dist, &target, files),
        }
    }

    fn start_rest(
        &self,
        order: &LaunchOrder,
        sub: &Submission<'_>,
        dist: &Distribution,
        target: &Target,
        files: AttemptFiles,
    ) -> Result<Value, LaunchError> {
        if let Some(dir) = files.spark.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LaunchError {
                message: format!("cannot create {}: {e}", dir.display()),
                platform: true,
            })?;
        }
        if order.adopt
            && let Some(h) = std::fs::read(&files.spark)
                .ok()
                .and_then(|b| serde_json::from_slice::<RestHandle>(&b).ok())
        {
            // Submitted before kaon died, handle not stored: the same driver.
            let v = serde_json::to_value(&h).unwrap_or(Value::Null);
            self.watch_rest(order, h);
            return Ok(v);
        }
        for stale in [&files.stdout, &files.stderr, &files.reported, &files.spark] {
            let _ = std::fs::remove_file(stale);
        }
        let Some(rest_url) = target.rest.clone() else {
            return Err(user(
                "no REST submission server is known for this master".into(),
            ));
        };
        let mut env: Vec<(String, String)> = order.env.clone();
        env.push((
            "KAON_ATTEMPT_ID".into(),
            format!("{}/{}/{}", order.run, order.node.0, order.attempt),
        ));
        let body = sub.rest_body(&env);
        let rest = RestClient::new(&rest_url);
        let id = block_on(async move { rest.create(&body).await })
            .ok_or_else(|| LaunchError {
                platform: true,
                message: "the submission thread failed".into(),
            })?
            .map_err(|e| LaunchError {
                platform: e.is_transient(),
                message: e.to_string(),
            })?;
        let h = RestHandle {
            spark: "rest".into(),
            submission: id,
            rest: rest_url,
            ui: target.ui.clone(),
            version: dist.version.to_string(),
        };
        // Written before the handle goes back, so that even a kaon that
        // dies before storing the handle finds this driver again.
        if let Err(e) = write_synced(&files.spark, &serde_json::to_vec(&h).unwrap_or_default()) {
            warn(&format!(
                "cannot record the submission {}: {e}",
                h.submission
            ));
        }
        let _ = std::fs::File::create(&files.stdout);
        let _ = std::fs::File::create(&files.stderr);
        let v = serde_json::to_value(&h).unwrap_or(Value::Null);
        self.watch_rest(order, h);
        Ok(v)
    }

    fn watch_rest(&self, order: &LaunchOrder, h: RestHandle) {
        let files = self.local.files(order);
        self.inner.register(order, files.clone(), None, false);
        let inner = self.inner.clone();
        let order = order.clone();
        tokio::spawn(async move { inner.watch_rest(order, h, files).await });
    }
}

/// Runs a future to completion from synchronous code inside or outside a
/// runtime, on a thread of its own (submissions are rare and short).
fn block_on<F: Future + Send>(f: F) -> Option<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
                .map(|rt| rt.block_on(f))
        })
        .join()
        .ok()
        .flatten()
    })
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// kaon has no logging framework yet; warnings go to stderr like the CLI's.
fn warn(msg: &str) {
    eprintln!("kaon: warning: {msg}");
}

impl Inner {
    fn register(
        self: &Arc<Self>,
        order: &LaunchOrder,
        files: AttemptFiles,
        ui: Option<String>,
        client: bool,
    ) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(
            key(order),
            Live {
                files,
                progress: SparkProgress::default(),
                ui,
                last_event: None,
                client,
            },
        );
        drop(live);
        self.spawn_poller(order);
    }

    fn forget(&self, k: &Key) -> Option<Live> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k)
    }

    /// Environment for spark-submit: its `SPARK_HOME`, and for managed
    /// installs their Python (the one with this version's pyspark) for
    /// the driver and the executors.
    fn spark_env(&self, dist: &Distribution, given: &[(String, String)]) -> Vec<(String, String)> {
        let has = |k: &str| given.iter().any(|(g, _)| g == k);
        let mut env = vec![("SPARK_HOME".to_string(), dist.home.display().to_string())];
        if let Some(py) = &dist.python {
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
        if let Some(j) = &self.settings.java_home
            && !has("JAVA_HOME")
        {
            env.push(("JAVA_HOME".into(), j.display().to_string()));
        }
        env
    }

    /// The listener jar and Python helpers, written (and compiled, once)
    /// under the install directory, keyed by a digest of their sources.
    fn runtime(&self, dist: &Distribution) -> Runtime {
        // Decided once per process: a listener that cannot be built (no
        // javac) is warned about once, not at every launch.
        let mut slot = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = slot.as_ref() {
            return rt.clone();
        }
        let mut h = blake3::Hasher::new();
        for (name, text) in LISTENER_SOURCES {
            h.update(name.as_bytes());
            h.update(text.as_bytes());
        }
        h.update(PY_HELPER.as_bytes());
        h.update(SQL_RUNNER.as_bytes());
        let digest = h.finalize().to_hex();
        let dir = self
            .settings
            .install_dir()
            .join("runtime")
            .join(&digest.as_str()[..16]);
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
        let jar = dir.join("kaon-spark-listener.jar");
        let jar = if jar.is_file() {
            Some(jar)
        } else {
            match compile_listener(&dir, dist) {
                Ok(j) => Some(j),
                Err(e) => {
                    warn(&format!(
                        "the Spark listener could not be built ({e}); progress will come from polling the driver's UI"
                    ));
                    None
                }
            }
        };
        let rt = Runtime {
            jar,
            py_helper,
            sql_runner,
        };
        *slot = Some(rt.clone());
        rt
    }

    fn send(&self, run: &str, event: Event) {
        let _ = self.tx.send(ExecEvent {
            run: run.to_string(),
            event,
        });
    }

    fn progress_event(&self, k: &Key, p: &SparkProgress) {
        self.send(
            &k.0,
            Event::StepProgressed {
                node: kaon_engine::NodeId(k.1),
                attempt: k.2,
                percent: p.percent(),
                message: Some(p.message()),
            },
        );
    }

    /// Polls the driver UI while the listener is silent.
    fn spawn_poller(self: &Arc<Self>, order: &LaunchOrder) {
        let k = key(order);
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let ui = {
                    let live = me.live.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(l) = live.get(&k) else { return };
                    let quiet = l
                        .last_event
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(3));
                    match (&l.ui, quiet) {
                        (Some(ui), true) => ui.clone(),
                        _ => continue,
                    }
                };
                let Ok(p) = me.monitor.poll(&ui).await else {
                    continue;
                };
                if p.stages_total == 0 {
                    continue;
                }
                let mut live = me.live.lock().unwrap_or_else(|p| p.into_inner());
                let Some(l) = live.get_mut(&k) else { return };
                if l.last_event
                    .is_some_and(|t| t.elapsed() <= Duration::from_secs(3))
                {
                    continue;
                }
                let changed = l.progress.stages_done != p.stages_done
                    || l.progress.tasks_done != p.tasks_done
                    || l.progress.stages_total != p.stages_total;
                let last_error = l.progress.last_error.take();
                l.progress = SparkProgress {
                    last_error: p.last_error.clone().or(last_error),
                    ..p
                };
                let snapshot = l.progress.clone();
                drop(live);
                if changed {
                    me.progress_event(&k, &snapshot);
                }
            }
        });
    }

    async fn watch_rest(self: Arc<Self>, order: LaunchOrder, h: RestHandle, files: AttemptFiles) {
        let rest = RestClient::new(&h.rest);
        let k = key(&order);
        let mut unknown = 0u32;
        let mut failures = 0u32;
        let mut worker: Option<String> = None;
        let mut offsets = (0u64, 0u64);
        let mut last_logs = Instant::now() - Duration::from_secs(10);
        let status = loop {
            match rest.status(&h.submission).await {
                Ok(st) if st.state.is_terminal() => break st,
                Ok(st) => {
                    failures = 0;
                    if st.state == DriverState::Unknown {
                        unknown += 1;
                        // The master forgot it (restarted without recovery).
                        if unknown > 50 {
                            break st;
                        }
                    } else {
                        unknown = 0;
                    }
                    if worker.is_none()
                        && let (Some(ui), Some(w)) = (&h.ui, &st.worker_id)
                    {
                        worker = worker_ui(ui, w).await.ok().flatten();
                    }
                    if let Some(w) = &worker
                        && last_logs.elapsed() > Duration::from_secs(1)
                    {
                        last_logs = Instant::now();
                        fetch_logs(w, &h.submission, &files, &mut offsets).await;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(100) {
                        warn(&format!(
                            "cannot read the status of {} ({e}); still trying",
                            h.submission
                        ));
                    }
                }
            }
            tokio::time::sleep(self.poll.min(Duration::from_millis(250))).await;
        };
        if worker.is_none()
            && let (Some(ui), Some(w)) = (&h.ui, &status.worker_id)
        {
            worker = worker_ui(ui, w).await.ok().flatten();
        }
        if let Some(w) = &worker {
            fetch_logs(w, &h.submission, &files, &mut offsets).await;
        }
        let live = self.forget(&k);
        let last_error = live.and_then(|l| l.progress.last_error);
        let exit = match status.state {
            DriverState::Finished => Exit::Code { code: 0 },
            DriverState::Killed => Exit::Signal { signal: 15 },
            DriverState::Failed => Exit::Failed {
                code: None,
                message: format!(
                    "the Spark driver {} failed: {}",
                    h.submission,
                    driver_error(&files, last_error.as_deref())
                ),
            },
            DriverState::Error => Exit::Failed {
                code: None,
                message: format!(
                    "the Spark master could not start the driver {}: {}",
                    h.submission,
                    status.message.as_deref().unwrap_or("no reason given")
                ),
            },
            _ => Exit::Lost {
                message: format!(
                    "the Spark master no longer knows the driver {}",
                    h.submission
                ),
            },
        };
        let (mut outputs, mut problems) = (Map::new(), Vec::new());
        let (mut artifacts, mut reads) = (Vec::new(), Vec::new());
        if exit == (Exit::Code { code: 0 }) {
            let markers = markers_of(&files.stdout);
            (outputs, problems) = collect_outputs(&order, &files, markers);
            if let Some(store) = &self.store
                && problems.is_empty()
            {
                let (w, r, p) =
                    crate::outputs::store_outputs(store, &order, &files.artifacts).await;
                problems.extend(p);
                (artifacts, reads) = (w, r);
            }
        }
        self.send(
            &order.run,
            Event::StepExited {
                node: order.node,
                attempt: order.attempt,
                exit,
                outputs,
                problems,
                artifacts,
                reads,
            },
        );
    }
}

async fn fetch_logs(worker: &str, id: &str, files: &AttemptFiles, offsets: &mut (u64, u64)) {
    for (which, path, off) in [
        ("stdout", &files.stdout, &mut offsets.0),
        ("stderr", &files.stderr, &mut offsets.1),
    ] {
        loop {
            let Ok(text) = driver_log(worker, id, which, *off, 1 << 20).await else {
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

/// `==== Bytes 0-1234 of 5678 of ... ====` -> (1234, 5678).
fn parse_range(header: &str) -> Option<(u64, u64)> {
    let rest = header.strip_prefix("==== Bytes ")?;
    let (range, rest) = rest.split_once(" of ")?;
    let end = range.split_once('-')?.1.parse().ok()?;
    let total = rest.split_whitespace().next()?.parse().ok()?;
    Some((end, total))
}

fn markers_of(stdout: &Path) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(text) = std::fs::read_to_string(stdout) {
        for line in text.lines().filter(|l| l.starts_with("::kaon::")) {
            if let Some(Marker::Output { name, value }) = parse_marker(line) {
                out.insert(name, value);
            }
        }
    }
    out
}

/// The driver's error, for the step's failure message: the line that
/// names the exception (the last `Caused by:` of a Java trace, the last
/// line of a Python traceback, or Java's `Exception in thread "main"`),
/// else the listener's last job failure, else a pointer to the logs.
/// PySpark's launcher merges the Python driver's stderr into its stdout,
/// so stdout is searched when stderr names nothing.
pub fn driver_error(files: &AttemptFiles, listener: Option<&str>) -> String {
    error_line(&read_tail(&files.stderr, 256 * 1024))
        .or_else(|| error_line(&read_tail(&files.stdout, 256 * 1024)))
        .or_else(|| listener.map(|m| m.lines().next().unwrap_or(m).trim().to_string()))
        .map(|mut m| {
            if m.chars().count() > 400 {
                m = m.chars().take(400).collect::<String>() + "…";
            }
            m
        })
        .unwrap_or_else(|| "see `kaon logs` for the driver's output".into())
}

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

/// Builds the listener jar in `dir` with the distribution's `javac`-visible
/// jars: `javac --release 17 -cp "$SPARK_HOME/jars/*"`, then `jar`. The
/// same commands as `spark-listener/build.sh`. Built in a scratch folder
/// and renamed into place, so concurrent kaons never see half a jar.
fn compile_listener(dir: &Path, dist: &Distribution) -> Result<PathBuf, String> {
    let work = dir.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let src = work.join("src");
    let classes = work.join("classes");
    std::fs::create_dir_all(&classes).map_err(|e| e.to_string())?;
    let mut paths = Vec::new();
    for (name, text) in LISTENER_SOURCES {
        let p = src.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        paths.push(p);
    }
    let java_bin = |tool: &str| -> PathBuf {
        std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin").join(tool))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(tool))
    };
    let out = std::process::Command::new(java_bin("javac"))
        .args(["--release", "17", "-nowarn", "-cp"])
        .arg(format!("{}/jars/*", dist.home.display()))
        .arg("-d")
        .arg(&classes)
        .args(&paths)
        .output()
        .map_err(|e| format!("cannot run javac: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(format!(
            "javac failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    let tmp_jar = work.join("kaon-spark-listener.jar");
    let out = std::process::Command::new(java_bin("jar"))
        .arg("--create")
        .arg("--file")
        .arg(&tmp_jar)
        .arg("-C")
        .arg(&classes)
        .arg(".")
        .output()
        .map_err(|e| format!("cannot run jar: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(format!(
            "jar failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let jar = dir.join("kaon-spark-listener.jar");
    std::fs::rename(&tmp_jar, &jar).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(jar)
}

impl EventSink for Inner {
    fn deliver(&self, run: &str, node: u32, attempt: u32, ev: Value) {
        let k = (run.to_string(), node, attempt);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(l) = live.get_mut(&k) else { return };
        l.last_event = Some(Instant::now());
        if ev["type"] == "output" {
            if let Some(name) = ev["name"].as_str() {
                let line = json!({"name": name, "value": ev["value"].clone()});
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&l.files.reported)
                {
                    let _ = writeln!(f, "{line}");
                }
            }
            return;
        }
        if let Some(u) = ev["ui_url"].as_str() {
            l.ui = Some(u.to_string());
        }
        if l.progress.apply(&ev) {
            let snapshot = l.progress.clone();
            drop(live);
            self.progress_event(&k, &snapshot);
        }
    }
}

/// Passes the local executor's events on; a failed client-mode driver's
/// exit gets the driver's error as its message.
async fn forward(inner: Arc<Inner>, mut rx: UnboundedReceiver<ExecEvent>) {
    while let Some(mut ev) = rx.recv().await {
        if let Event::StepExited {
            node,
            attempt,
            exit,
            ..
        } = &mut ev.event
        {
            let k = (ev.run.clone(), node.0, *attempt);
            if let Some(l) = inner.forget(&k)
                && l.client
                && let Exit::Code { code } = *exit
                && code != 0
            {
                *exit = Exit::Failed {
                    code: Some(code),
                    message: format!(
                        "the Spark driver exited with status {code}: {}",
                        driver_error(&l.files, l.progress.last_error.as_deref())
                    ),
                };
            }
        }
        let _ = inner.tx.send(ev);
    }
}

impl Executor for SparkExecutor {
    fn start(&self, order: &LaunchOrder) -> Result<Value, LaunchError> {
        match &order.invocation {
            Invocation::Spark { job } => self.start_spark(order, job),
            _ => self.local.start(order),
        }
    }

    fn reattach(&self, order: &LaunchOrder, handle: &Value) {
        match handle["spark"].as_str() {
            Some("rest") => match serde_json::from_value::<RestHandle>(handle.clone()) {
                Ok(h) => self.watch_rest(order, h),
                Err(_) => self.local.reattach(order, handle),
            },
            Some("client") => {
                let files = self.local.files(order);
                let ui = handle["ui"].as_str().map(str::to_string);
                self.inner.register(order, files, ui, true);
                self.local.reattach(order, handle);
            }
            _ => self.local.reattach(order, handle),
        }
    }

    fn kill(&self, handle: &Value) {
        if handle["spark"] != "rest" {
            return self.local.kill(handle);
        }
        let Ok(h) = serde_json::from_value::<RestHandle>(handle.clone()) else {
            return;
        };
        // The watcher reports the end once the master says KILLED; asking
        // again covers a kill that raced the driver's start.
        tokio::spawn(async move {
            let rest = RestClient::new(&h.rest);
            for _ in 0..10 {
                let _ = rest.kill(&h.submission).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                match rest.status(&h.submission).await {
                    Ok(st) if st.state.is_terminal() => return,
                    _ => {}
                }
            }
        });
    }

    fn describe(&self, order: &LaunchOrder) -> Value {
        let Invocation::Spark { job } = &order.invocation else {
            return Value::Null;
        };
        match self.plan(job) {
            Ok((d, t)) => json!({
                "spark": d.version.to_string(),
                "scala": d.scala,
                "master": t.master,
                "conf": t.conf,
            }),
            Err(_) => Value::Null,
        }
    }
}
