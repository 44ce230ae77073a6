//! The Spark executor: `kind = "spark"` steps, and everything else handed
//! to the local executor. What Spark is and how it behaves lives in
//! `kaon-spark`; this adapter maps it onto the [`Executor`] contract.
//!
//! - Client mode (and cluster mode on YARN and Kubernetes, where
//!   spark-submit waits for the application): spark-submit runs as a
//!   supervised local process, so kill, timeouts, logs and re-attach are
//!   the local executor's. kaon only reads the driver's error out of its
//!   logs when it fails.
//! - Cluster mode on a standalone master ([`cluster`]): the REST submission
//!   API. The submission id is written to the attempt's files as soon as
//!   the master accepts it and is part of the handle the driver stores
//!   before the step counts as running, so a restarted kaon watches the
//!   same driver instead of submitting a second one. Before the request
//!   goes out, the intent is written too ([`kaon_spark::record`]); a kaon
//!   that died between the two writes finds out from the master whether
//!   its submission arrived ([`kaon_spark::driver::resolve`]). The end is
//!   the master's word (`FINISHED`, `FAILED`, `KILLED`, `ERROR`), never
//!   spark-submit's exit status, and a retry is only ordered after that
//!   word has come.
//!
//! Progress comes from kaon's listener inside the driver (posting to the
//! callback endpoint, see [`kaon_spark::callback`]) and, while no events
//! arrive, from polling the driver's monitoring REST API.

mod cluster;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaon_artifacts::ArtifactStore;
use kaon_engine::event::Invocation;
use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_model::types::Type;
use kaon_spark::callback::{EventSink, ListenerEvent};
use kaon_spark::listener::Helpers;
use kaon_spark::progress::{Monitor, SparkProgress};
use kaon_spark::record::{DriverRecord, SparkFile, read_spark_file};
use kaon_spark::submit::{Submission, pin_ui_port};
use kaon_spark::target::Mode;
use kaon_spark::{Distribution, Plan, Planner, SparkError, SparkJob, SparkSettings};
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::files::AttemptFiles;
use crate::{ExecEvent, Executor, Handle, LaunchError, LocalExecutor};

pub use kaon_spark::callback::Callback;

/// How long the listener must be silent before the driver's UI is polled.
const QUIET: Duration = Duration::from_secs(3);

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
    driver: Option<DriverRecord>,
}

type Key = (String, u32, u32);

struct Inner {
    planner: Planner,
    tx: UnboundedSender<ExecEvent>,
    poll: Duration,
    store: Option<ArtifactStore>,
    callback: Option<Callback>,
    live: Mutex<HashMap<Key, Live>>,
    runtime: Mutex<Option<Runtime>>,
    monitor: Monitor,
}

/// kaon's files for Spark applications, decided once per process.
#[derive(Clone, Debug)]
struct Runtime {
    helpers: Helpers,
    /// None when it could not be built (warned about once).
    jar: Option<PathBuf>,
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

/// `run/node/attempt`, for messages and the submission's tag.
fn attempt_label(order: &LaunchOrder) -> String {
    kaon_model::ids::AttemptId::new(&order.run, order.node.0, order.attempt).to_string()
}

/// The step's settings are to blame.
fn user(e: SparkError) -> LaunchError {
    LaunchError {
        message: e.to_string(),
        platform: false,
    }
}

/// kaon has no logging framework yet; warnings go to stderr like the CLI's.
fn warn(msg: &str) {
    eprintln!("kaon: warning: {msg}");
}

/// The Spark job of a launch order, if it runs one.
fn job_of(order: &LaunchOrder) -> Option<SparkJob> {
    match &order.invocation {
        Invocation::Spark { step, constraints } => {
            Some(SparkJob::from_step(step, constraints.as_deref()))
        }
        _ => None,
    }
}

/// The driver's error, for the step's failure message: see
/// [`kaon_spark::diagnose::driver_error`].
pub fn driver_error(files: &AttemptFiles, listener: Option<&str>) -> String {
    kaon_spark::diagnose::driver_error(&files.stderr, &files.stdout, listener)
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
        let inner = Arc::new(Inner {
            planner: Planner::new(settings),
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

    /// The distribution a job asks for; the runtimes are looked for again
    /// when nothing matches (a runtime installed while kaon runs).
    pub fn distribution(&self, version: Option<&str>) -> Result<Distribution, SparkError> {
        self.inner.planner.distribution(version)
    }

    fn start_spark(&self, order: &LaunchOrder, job: &SparkJob) -> Result<Handle, LaunchError> {
        if order.adopt
            && let Some(SparkFile::Driver(h)) = read_spark_file(&self.local.files(order).spark)
        {
            // Submitted before kaon died, handle not stored: the same
            // driver, whatever the settings or runtimes say now.
            let v = Handle::from(h.clone());
            self.watch_rest(order, h);
            return Ok(v);
        }
        let Plan { dist, target } = self.inner.planner.plan(job).map_err(user)?;
        let rt = self.inner.runtime(&dist);
        let listener = match (&self.inner.callback, &rt.jar) {
            (Some(cb), Some(jar)) => {
                Some(cb.listener(jar, &order.run, order.node.0, order.attempt))
            }
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
        let client_ui = pin_ui_port(&mut job, &target);
        let sub = Submission {
            job: &job,
            dist: &dist,
            target: &target,
            app_name: format!("kaon {} {} #{}", order.run, order.key, order.attempt),
            listener,
            sql_runner: Some(rt.helpers.sql_runner.clone()),
            py_helper: Some(rt.helpers.py_helper.clone()),
            sql_output,
        };
        let files = self.local.files(order);
        match target.mode {
            Mode::Client | Mode::SubmitCluster => {
                let mut env = order.env.clone();
                let java_home = self.inner.planner.settings().java_home.as_deref();
                env.extend(dist.submit_env(java_home, &order.env));
                let local_order = LaunchOrder {
                    invocation: Invocation::Argv { argv: sub.argv() },
                    env,
                    ..order.clone()
                };
                self.inner.register(order, files, client_ui.clone(), true);
                let h = self.local.start(&local_order).inspect_err(|_| {
                    self.inner.forget(&key(order));
                })?;
                let (pid, start) = h.process().unwrap_or((0, 0));
                Ok(Handle::SparkClient {
                    pid,
                    start,
                    ui: client_ui,
                })
            }
            Mode::StandaloneCluster => self.start_rest(order, &sub, &target, files),
        }
    }
}

impl EventSink for Inner {
    fn deliver(&self, run: &str, node: u32, attempt: u32, ev: Value) {
        let k = (run.to_string(), node, attempt);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(l) = live.get_mut(&k) else { return };
        l.last_event = Some(Instant::now());
        match ListenerEvent::of(&ev) {
            ListenerEvent::Output(line) => {
                if let Some(line) = line
                    && let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&l.files.reported)
                {
                    let _ = writeln!(f, "{line}");
                }
            }
            ListenerEvent::Progress { ui_url } => {
                if let Some(u) = ui_url {
                    l.ui = Some(u);
                }
                if l.progress.apply(&ev) {
                    let snapshot = l.progress.clone();
                    drop(live);
                    self.progress_event(&k, &snapshot);
                }
            }
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
    fn start(&self, order: &LaunchOrder) -> Result<Handle, LaunchError> {
        match job_of(order) {
            Some(job) => self.start_spark(order, &job),
            None => self.local.start(order),
        }
    }

    fn reattach(&self, order: &LaunchOrder, handle: &Handle) {
        match handle {
            Handle::SparkRest { .. } => match handle.driver_record() {
                Some(h) => self.watch_rest(order, h),
                None => self.local.reattach(order, handle),
            },
            // The stored handle predates the master's answer: the attempt's
            // file says how far it got, exactly as for an adopted launch.
            Handle::SparkPending { .. } => {
                if let Some(job) = job_of(order) {
                    let adopt = LaunchOrder {
                        adopt: true,
                        ..order.clone()
                    };
                    if let Err(e) = self.start_spark(&adopt, &job) {
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
            Handle::SparkClient { ui, .. } => {
                let files = self.local.files(order);
                self.inner.register(order, files, ui.clone(), true);
                self.local.reattach(order, handle);
            }
            _ => self.local.reattach(order, handle),
        }
    }

    fn kill(&self, handle: &Handle) {
        match handle {
            Handle::SparkRest { .. } | Handle::SparkPending { .. } => {
                self.kill_rest(handle);
            }
            _ => self.local.kill(handle),
        }
    }

    fn describe(&self, order: &LaunchOrder) -> Value {
        let Some(job) = job_of(order) else {
            return Value::Null;
        };
        match self.inner.planner.plan(&job) {
            Ok(plan) => plan.facts(),
            Err(_) => Value::Null,
        }
    }
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

    fn forget(&self, k: &Key) -> Option<Live> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k)
    }

    /// The listener jar and Python helpers, written (and compiled, once)
    /// under the install directory.
    fn runtime(&self, dist: &Distribution) -> Runtime {
        // Decided once per process: a listener that cannot be built (no
        // javac) is warned about once, not at every launch.
        let mut slot = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = slot.as_ref() {
            return rt.clone();
        }
        let helpers = Helpers::prepare(&self.planner.settings().install_dir());
        let jar = match helpers.listener_jar(dist) {
            Ok(j) => Some(j),
            Err(e) => {
                warn(&format!(
                    "the Spark listener could not be built ({e}); progress will come from polling the driver's UI"
                ));
                None
            }
        };
        let rt = Runtime { helpers, jar };
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
            let quiet = |l: &Live| l.last_event.is_none_or(|t| t.elapsed() > QUIET);
            loop {
                tick.tick().await;
                let ui = {
                    let live = me.live.lock().unwrap_or_else(|p| p.into_inner());
                    let Some(l) = live.get(&k) else { return };
                    match &l.ui {
                        Some(ui) if quiet(l) => ui.clone(),
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
                if !quiet(l) {
                    continue;
                }
                let changed = l.progress.take_polled(p);
                let snapshot = l.progress.clone();
                drop(live);
                if changed {
                    me.progress_event(&k, &snapshot);
                }
            }
        });
    }
}
