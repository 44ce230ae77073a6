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
//!   instead of submitting a second one. Before the request goes out, the
//!   intent is written too (a random tag the driver carries as
//!   `spark.kaon.tag`, and the drivers the master already knows); a kaon
//!   that died between the two writes finds out from the master's driver
//!   list and the drivers' launch commands whether its submission arrived
//!   (see [`Inner::resolve`]). The end is the master's word
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
use kaon_spark::rest::{DriverState, RestClient, driver_log, drivers, worker_ui};
use kaon_spark::submit::{ListenerConf, Submission, is_python};
use kaon_spark::target::{Mode, Target, place};
use kaon_spark::{Distribution, Registry, SparkError, SparkSettings};
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

/// What `<attempt>.spark.json` holds from just before a REST submission
/// until the master has answered: enough to find the driver later if the
/// answer was lost with kaon.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    /// `rest-pending`.
    spark: String,
    /// The submission's `spark.kaon.tag`, in the driver's launch command.
    tag: String,
    rest: String,
    ui: Option<String>,
    version: String,
    main_class: String,
    /// Drivers the master knew before the submission (none: not known).
    known: Option<Vec<String>>,
    run: String,
    node: u32,
    attempt: u32,
}

/// What an attempt's `.spark.json` says.
enum SparkFile {
    Driver(RestHandle),
    Pending(Pending),
}

fn read_spark_file(path: &Path) -> Option<SparkFile> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    match v["spark"].as_str()? {
        "rest" => serde_json::from_value(v).ok().map(SparkFile::Driver),
        "rest-pending" => serde_json::from_value(v).ok().map(SparkFile::Pending),
        _ => None,
    }
}

/// What kaon knows about a Spark attempt while it runs.
struct Live {
    files: AttemptFiles,
    progress: SparkProgress,
    /// The driver UI to poll when the listener is silent.
    ui: Option<String>,
    last_event: Option<Instant>,
    client: bool,
    /// A kill came while kaon was still finding out whether its submission
    /// reached the master.
    kill_requested: bool,
    /// The REST driver, once known.
    driver: Option<RestHandle>,
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
            monitor: Monitor,
        });
        tokio::spawn(forward(inner.clone(), lrx));
        SparkExecutor { local, inner }
    }

    /// Tells steps kaon's data directory: see
    /// [`LocalExecutor::with_data_dir`].
    pub fn with_data_dir(mut self, dir: &Path) -> SparkExecutor {
        self.local = self.local.with_data_dir(dir);
        self
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
        if order.adopt
            && let Some(SparkFile::Driver(h)) = read_spark_file(&self.local.files(order).spark)
        {
            // Submitted before kaon died, handle not stored: the same
            // driver, whatever the settings or runtimes say now.
            let v = serde_json::to_value(&h).unwrap_or(Value::Null);
            self.watch_rest(order, h);
            return Ok(v);
        }
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
        let mut env: Vec<(String, String)> = order.env.clone();
        env.push(("KAON_ATTEMPT_ID".into(), attempt_label(order)));
        let body = sub.rest_body(&env);
        // kaon died while submitting (a recorded driver was adopted in
        // `start_spark`): the master may or may not have the driver.
        if order.adopt
            && let Some(SparkFile::Pending(p)) = read_spark_file(&files.spark)
        {
            return Ok(self.resolve_later(order, p, body, files));
        }
        for stale in [&files.stdout, &files.stderr, &files.reported, &files.spark] {
            let _ = std::fs::remove_file(stale);
        }
        let Some(rest_url) = target.rest.clone() else {
            return Err(user(
                "no REST submission server is known for this master".into(),
            ));
        };
        let ui = target.ui.clone();
        let known = match &ui {
            Some(ui) => {
                let ui = ui.clone();
                block_on(async move { drivers(&ui).await })
                    .and_then(Result::ok)
                    .map(|ds| ds.into_iter().map(|d| d.id).collect())
            }
            None => None,
        };
        let p = Pending {
            spark: "rest-pending".into(),
            tag: new_tag(order),
            rest: rest_url.clone(),
            ui,
            version: dist.version.to_string(),
            main_class: body["mainClass"].as_str().unwrap_or("").to_string(),
            known,
            run: order.run.clone(),
            node: order.node.0,
            attempt: order.attempt,
        };
        // Without the intent on disk, a crash during the request could
        // lead to a second driver: no record, no submission.
        write_synced(&files.spark, &serde_json::to_vec(&p).unwrap_or_default()).map_err(|e| {
            LaunchError {
                message: format!(
                    "cannot record the submission in {}: {e}",
                    files.spark.display()
                ),
                platform: true,
            }
        })?;
        kaon_artifacts::failpoint("spark-before-create");
        let rest = RestClient::new(&rest_url);
        let tagged = with_tag(body, &p.tag);
        let sent = tagged.clone();
        let created =
            block_on(async move { rest.create(&sent).await }).ok_or_else(|| LaunchError {
                platform: true,
                message: "the submission thread failed".into(),
            })?;
        let id = match created {
            Ok(id) => id,
            // Sent, unanswered: as after a crash, the master is asked.
            Err(e @ SparkError::NoAnswer { .. }) => {
                warn(&format!("{}: {e}", attempt_label(order)));
                return Ok(self.resolve_later(order, p, tagged, files));
            }
            Err(e) => {
                return Err(LaunchError {
                    platform: e.is_transient(),
                    message: e.to_string(),
                });
            }
        };
        kaon_artifacts::failpoint("spark-after-create");
        let h = p.handle(id);
        // Written before the handle goes back, so that even a kaon that
        // dies before storing the handle finds this driver again.
        if let Err(e) = write_synced(&files.spark, &serde_json::to_vec(&h).unwrap_or_default()) {
            warn(&format!(
                "cannot record the submission {}: {e}",
                h.submission
            ));
        }
        let _ = crate::files::create_private(&files.stdout);
        let _ = crate::files::create_private(&files.stderr);
        let v = serde_json::to_value(&h).unwrap_or(Value::Null);
        self.watch_rest(order, h);
        Ok(v)
    }

    fn watch_rest(&self, order: &LaunchOrder, h: RestHandle) {
        let files = self.local.files(order);
        self.inner.register(order, files.clone(), None, false);
        self.inner.set_driver(&key(order), &h);
        let inner = self.inner.clone();
        let order = order.clone();
        tokio::spawn(async move { inner.watch_rest(order, h, files).await });
    }
}

impl SparkExecutor {
    /// Finds out in the background whether the master has the driver of
    /// `p` (see [`Inner::resolve`]): a driver waiting for a worker has no
    /// launch command yet, so this can take a while. Returns the handle.
    fn resolve_later(
        &self,
        order: &LaunchOrder,
        p: Pending,
        body: Value,
        files: AttemptFiles,
    ) -> Value {
        let v = serde_json::to_value(&p).unwrap_or(Value::Null);
        self.inner.register(order, files.clone(), None, false);
        let inner = self.inner.clone();
        let order = order.clone();
        tokio::spawn(async move { inner.resolve(order, p, body, files).await });
        v
    }
}

impl Pending {
    fn handle(&self, submission: String) -> RestHandle {
        RestHandle {
            spark: "rest".into(),
            submission,
            rest: self.rest.clone(),
            ui: self.ui.clone(),
            version: self.version.clone(),
        }
    }
}

/// A tag no other submission has: it only has to be unique, not secret.
fn new_tag(order: &LaunchOrder) -> String {
    let mut h = blake3::Hasher::new();
    h.update(attempt_label(order).as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.finalize().to_hex()[..24].to_string()
}

fn attempt_label(order: &LaunchOrder) -> String {
    format!("{}/{}/{}", order.run, order.node.0, order.attempt)
}

/// The REST body with `spark.kaon.tag` set: the driver's launch command
/// (the first line of its stderr on the worker) then names the tag.
fn with_tag(mut body: Value, tag: &str) -> Value {
    if let Some(props) = body["sparkProperties"].as_object_mut() {
        props.insert("spark.kaon.tag".into(), tag.into());
    }
    body
}

/// True when a driver's launch command sets `spark.kaon.tag` to `tag`
/// (the whole value: the worker quotes each argument).
fn carries_tag(log: &str, tag: &str) -> bool {
    let needle = format!("-Dspark.kaon.tag={tag}");
    log.match_indices(&needle).any(|(i, _)| {
        log[i + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '"' || c == '\'' || c.is_whitespace())
    })
}

/// Where a pending submission stands on the master.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// This driver carries the tag.
    Driver(String),
    /// No driver carries it: the master never got the submission.
    Nothing,
    /// These drivers may carry it but have not launched yet (or their
    /// logs cannot be read right now).
    Undecided(Vec<String>),
}

/// Looks for the driver of `p` among the master's drivers that are new
/// since `p` was written and have its main class, by reading the launch
/// command each worker writes at the top of the driver's stderr.
///
/// A driver in `ERROR` without a readable launch command is taken as not
/// this one: the master could not start it, so it ran nothing, and
/// submitting again cannot make two drivers run. Any other driver whose
/// launch command cannot be read (not launched yet, its worker gone) stays
/// undecided.
async fn find_driver(p: &Pending) -> Result<Found, String> {
    let Some(ui) = &p.ui else {
        return Err("the master's web UI is not known, so its drivers cannot be listed".into());
    };
    let all = drivers(ui)
        .await
        .map_err(|e| format!("cannot list the master's drivers: {e}"))?;
    let mut undecided = Vec::new();
    let candidates = all.into_iter().filter(|d| {
        d.main_class == p.main_class && !p.known.as_ref().is_some_and(|k| k.contains(&d.id))
    });
    for d in candidates {
        let log = match &d.worker_ui {
            Some(w) => driver_log(w, &d.id, "stderr", 0, 64 * 1024).await.ok(),
            None => None,
        };
        match log {
            Some(text) if carries_tag(&text, &p.tag) => return Ok(Found::Driver(d.id)),
            Some(text) if text.contains("Launch Command:") => {}
            _ if d.state == DriverState::Error => {}
            _ => undecided.push(d.id),
        }
    }
    Ok(if undecided.is_empty() {
        Found::Nothing
    } else {
        Found::Undecided(undecided)
    })
}

/// Asks the master to kill a driver until it has ended. The watcher
/// reports the end once the master says KILLED; asking again covers a kill
/// that raced the driver's start.
fn kill_rest(h: RestHandle) {
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
    let mut f = crate::files::create_private(&tmp)?;
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
                kill_requested: false,
                driver: None,
            },
        );
        drop(live);
        self.spawn_poller(order);
    }

    /// Records the attempt's driver; a kill that came before it was known
    /// is sent now.
    fn set_driver(&self, k: &Key, h: &RestHandle) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(l) = live.get_mut(k) else { return };
        l.driver = Some(h.clone());
        if l.kill_requested {
            kill_rest(h.clone());
        }
    }

    /// After a crash between writing a [`Pending`] and the master's answer:
    /// finds the driver the submission made and watches it, or, once it
    /// is certain the master never got the submission, submits it now.
    /// Never submits while a driver that may be this one has not launched.
    async fn resolve(
        self: Arc<Self>,
        order: LaunchOrder,
        p: Pending,
        body: Value,
        files: AttemptFiles,
    ) {
        let k = key(&order);
        let kill_requested = || {
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&k)
                .is_some_and(|l| l.kill_requested)
        };
        let body = with_tag(body, &p.tag);
        let mut told: Option<String> = None;
        let exit = loop {
            let waiting = match find_driver(&p).await {
                Ok(Found::Driver(id)) => return self.adopted(order, p.handle(id), files).await,
                Ok(Found::Nothing) if kill_requested() => break Exit::Signal { signal: 15 },
                // Certain now that the master never got it: the same
                // submission, with the same tag, goes out again.
                Ok(Found::Nothing) => match RestClient::new(&p.rest).create(&body).await {
                    Ok(id) => {
                        kaon_artifacts::failpoint("spark-after-create");
                        let _ = crate::files::create_private(&files.stdout);
                        let _ = crate::files::create_private(&files.stderr);
                        return self.adopted(order, p.handle(id), files).await;
                    }
                    // Unanswered again: the master is asked again.
                    Err(e @ SparkError::NoAnswer { .. }) => e.to_string(),
                    Err(e) => {
                        break Exit::Lost {
                            message: format!("the submission could not be made again: {e}"),
                        };
                    }
                },
                Ok(Found::Undecided(ids)) => format!(
                    "the submission's answer was lost; waiting for {} to launch to tell whether it is this step's driver",
                    ids.join(", ")
                ),
                Err(e) => e,
            };
            if kill_requested() {
                // Nothing is submitted any more, so there is no second
                // driver; one of these may still be this step's.
                warn(&format!(
                    "{}: killed before kaon could tell whether the master has this step's driver ({waiting}); kill it by hand if it is",
                    attempt_label(&order)
                ));
                break Exit::Signal { signal: 15 };
            }
            if told.as_deref() != Some(waiting.as_str()) {
                warn(&format!("{}: {waiting}", attempt_label(&order)));
                self.send(
                    &order.run,
                    Event::StepProgressed {
                        node: order.node,
                        attempt: order.attempt,
                        percent: None,
                        message: Some(waiting.clone()),
                    },
                );
                told = Some(waiting);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        self.forget(&k);
        self.send(
            &order.run,
            Event::StepExited {
                node: order.node,
                attempt: order.attempt,
                exit,
                outputs: Map::new(),
                problems: Vec::new(),
                artifacts: Vec::new(),
                reads: Vec::new(),
            },
        );
    }

    /// Records and watches the driver a pending submission turned out to have.
    async fn adopted(self: Arc<Self>, order: LaunchOrder, h: RestHandle, files: AttemptFiles) {
        if let Err(e) = write_synced(&files.spark, &serde_json::to_vec(&h).unwrap_or_default()) {
            warn(&format!(
                "cannot record the submission {}: {e}",
                h.submission
            ));
        }
        self.set_driver(&key(&order), &h);
        self.watch_rest(order, h, files).await;
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
            // The stored handle predates the master's answer: the attempt's
            // file says how far it got, exactly as for an adopted launch.
            Some("rest-pending") => {
                if let Invocation::Spark { job } = &order.invocation {
                    let adopt = LaunchOrder {
                        adopt: true,
                        ..order.clone()
                    };
                    if let Err(e) = self.start_spark(&adopt, job) {
                        self.inner.send(
                            &order.run,
                            Event::LaunchFailed {
                                node: order.node,
                                attempt: order.attempt,
                                message: e.message,
                                platform: e.platform,
                            },
                        );
                    }
                }
            }
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
        match handle["spark"].as_str() {
            Some("rest") => {
                if let Ok(h) = serde_json::from_value::<RestHandle>(handle.clone()) {
                    kill_rest(h);
                }
            }
            Some("rest-pending") => {
                let Ok(p) = serde_json::from_value::<Pending>(handle.clone()) else {
                    return;
                };
                let k = (p.run, p.node, p.attempt);
                let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(l) = live.get_mut(&k) {
                    match &l.driver {
                        Some(h) => kill_rest(h.clone()),
                        // Sent by `set_driver` once the driver is known.
                        None => l.kill_requested = true,
                    }
                }
            }
            _ => self.local.kill(handle),
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;
    use axum::routing::get;

    /// A fake standalone master and worker on one port: `/json/` lists
    /// `drivers`, `/log/` serves `logs` (driver id -> stderr).
    async fn fake_master(drivers: Value, logs: Vec<(&'static str, String)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut page = drivers;
        page["workers"] = json!([{"id": "worker-1", "webuiaddress": base}]);
        let app = axum::Router::new()
            .route("/json/", get(move || async move { axum::Json(page) }))
            .route(
                "/log/",
                get(move |uri: axum::http::Uri| async move {
                    let id = uri
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("driverId="))
                        .unwrap_or("")
                        .to_string();
                    match logs.iter().find(|(d, _)| *d == id) {
                        Some((_, text)) => Ok(format!(
                            "==== Bytes 0-{n} of {n} of /work/{id}/stderr ====\n{text}",
                            n = text.len()
                        )),
                        None => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn pending(ui: &str, known: &[&str]) -> Pending {
        Pending {
            spark: "rest-pending".into(),
            tag: "t0g".into(),
            rest: "http://127.0.0.1:1".into(),
            ui: Some(ui.into()),
            version: "3.5.9".into(),
            main_class: "Job".into(),
            known: Some(known.iter().map(|s| s.to_string()).collect()),
            run: "r".into(),
            node: 0,
            attempt: 1,
        }
    }

    fn driver(id: &str, state: &str, class: &str, worker: Option<&str>) -> Value {
        json!({"id": id, "state": state, "mainclass": class, "worker": worker.unwrap_or("None")})
    }

    fn launch(tag: &str) -> String {
        format!("Launch Command: \"java\" \"-Dspark.kaon.tag={tag}\" \"DriverWrapper\"\n====\n")
    }

    #[tokio::test]
    async fn finds_the_tagged_driver_among_new_ones_with_its_main_class() {
        let ui = fake_master(
            json!({
                "activedrivers": [
                    driver("d-old", "RUNNING", "Job", Some("worker-1")),
                    driver("d-other", "RUNNING", "Other", Some("worker-1")),
                    driver("d-mine", "RUNNING", "Job", Some("worker-1")),
                ],
                "completeddrivers": [driver("d-done", "FINISHED", "Job", Some("worker-1"))],
            }),
            vec![
                ("d-old", launch("t0g")),   // known before: never a candidate
                ("d-other", launch("t0g")), // another main class
                ("d-done", launch("someone-else")),
                ("d-mine", launch("t0g")),
            ],
        )
        .await;
        let found = find_driver(&pending(&ui, &["d-old"])).await.unwrap();
        assert_eq!(found, Found::Driver("d-mine".into()));
    }

    #[tokio::test]
    async fn nothing_when_every_candidate_launched_without_the_tag_or_never_ran() {
        let ui = fake_master(
            json!({
                "activedrivers": [driver("d-a", "RUNNING", "Job", Some("worker-1"))],
                "completeddrivers": [driver("d-err", "ERROR", "Job", None)],
            }),
            vec![("d-a", launch("t0g-not"))],
        )
        .await;
        // `t0g` is a prefix of `t0g-not`: still not the same tag.
        let mut p = pending(&ui, &[]);
        p.tag = "t0g-no".into();
        assert_eq!(find_driver(&p).await.unwrap(), Found::Nothing);
        p.tag = "zzz".into();
        assert_eq!(find_driver(&p).await.unwrap(), Found::Nothing);
    }

    #[tokio::test]
    async fn undecided_while_a_candidate_has_not_launched() {
        let ui = fake_master(
            json!({
                "activedrivers": [
                    driver("d-waiting", "SUBMITTED", "Job", None),
                    driver("d-starting", "RUNNING", "Job", Some("worker-1")),
                ],
                // Ended, but its worker is gone: it may have run, so it is
                // not taken as "not this one".
                "completeddrivers": [driver("d-gone", "FINISHED", "Job", Some("worker-9"))],
            }),
            vec![], // no logs yet
        )
        .await;
        assert_eq!(
            find_driver(&pending(&ui, &[])).await.unwrap(),
            Found::Undecided(vec![
                "d-waiting".into(),
                "d-starting".into(),
                "d-gone".into()
            ])
        );
    }

    #[tokio::test]
    async fn an_unreachable_master_is_an_error_not_an_answer() {
        let mut p = pending("http://127.0.0.1:1", &[]);
        assert!(find_driver(&p).await.is_err());
        p.ui = None;
        assert!(find_driver(&p).await.is_err());
    }
}
