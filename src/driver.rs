//! The driver: joins the engine, the state store and the executor.
//!
//! One loop per `kaon run`. Each turn ("tick") feeds every event that has
//! arrived to the engine, admits ready steps while resources allow, commits
//! all resulting changes in one transaction, and only then carries out the
//! actions (launch, kill, timers, child runs). A crash at any point leaves
//! the store at the last commit, and every action of that commit is one a
//! restart can find again or redo safely.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use kaon_artifacts::ArtifactStore;
use kaon_engine::{
    Action, Delta, Event, LaunchOrder, Millis, NodeData, NodeId, NodeRecord, Program, RunData,
    RunOptions, RunState, RunStatus, ScopeRecord, StepState, Timer,
};
use kaon_exec::{ExecEvent, Executor};
use kaon_model::Validated;
use kaon_store::{
    ArtifactIndex, ArtifactRow, Batch, KeyRow, MemoRow, MessageBody, NodeRow, ReadRow, RunRow,
    ScopeRow, StateStore,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::memo;
use crate::progress::Observer;
use crate::secrets::{Sealer, secret_values};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How this process names itself as a run's owner: `pid:start@host`.
pub fn owner_id() -> String {
    let pid = std::process::id() as i32;
    let start = kaon_exec::process_start(pid).unwrap_or(0);
    format!("{pid}:{start}@{}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// True when `owner` is a live process (on this host), or, on another
/// host, has stamped its heartbeat in the last 30 seconds.
pub fn owner_alive(owner: &str, heartbeat_ms: Option<i64>) -> bool {
    let parsed = owner.split_once('@').and_then(|(p, host)| {
        let (pid, start) = p.split_once(':')?;
        Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?, host))
    });
    match parsed {
        Some((pid, start, host)) if host == hostname() => kaon_exec::process_alive(pid, start),
        _ => heartbeat_ms.is_some_and(|h| (now_ms() as i64) - h < 30_000),
    }
}

/// A digest of the workflow file and its sub-workflows, to notice edits
/// between a run and its resumption.
pub fn workflow_digest(v: &Validated) -> String {
    let mut h = blake3::Hasher::new();
    fn add(h: &mut blake3::Hasher, v: &Validated) {
        let path =
            std::path::absolute(&v.workflow.path).unwrap_or_else(|_| v.workflow.path.clone());
        h.update(path.to_string_lossy().as_bytes());
        h.update(&std::fs::read(&v.workflow.path).unwrap_or_default());
        for c in v.children.values() {
            add(h, c);
        }
    }
    add(&mut h, v);
    h.finalize().to_hex()[..16].to_string()
}

/// The directory relative paths of a workflow start from (absolute).
pub fn base_dir(v: &Validated) -> PathBuf {
    let parent = v
        .workflow
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// Resources of this machine that steps are admitted against.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// CPU cores.
    pub cpus: f64,
    /// Memory in bytes.
    pub memory: u64,
}

impl Capacity {
    /// What the machine has: its cores and its memory.
    pub fn detect() -> Capacity {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(8 << 30);
        Capacity { cpus, memory }
    }

    /// This capacity with `--cpus` / `--memory` applied.
    pub fn with(mut self, cpus: Option<f64>, memory: Option<u64>) -> Result<Capacity> {
        if let Some(c) = cpus {
            if !(c > 0.0 && c.is_finite()) {
                bail!("--cpus must be a number above 0, not {c}");
            }
            self.cpus = c;
        }
        if let Some(m) = memory {
            if m == 0 {
                bail!("--memory must be above 0");
            }
            self.memory = m;
        }
        Ok(self)
    }
}

struct RunCtx {
    state: RunState,
    validated: Arc<Validated>,
    parent: Option<(String, NodeId, u32)>,
    done: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct TimerEntry {
    at: Millis,
    seq: u64,
    run: String,
    node: u32,
    attempt: u32,
    timer: Timer,
}

/// Settings of one driver.
pub struct DriverOptions {
    /// Resources steps are admitted against.
    pub capacity: Capacity,
    /// How often the inbox (signals, cancels) is read.
    pub inbox_every: Duration,
    /// Seals secret parameters before they are stored, and hides them and
    /// environment values in memo keys.
    pub sealer: Sealer,
}

/// Drives one root run and its child runs to the end.
pub struct Driver<S: StateStore, E: Executor> {
    store: Arc<S>,
    exec: E,
    rx: UnboundedReceiver<ExecEvent>,
    owner: String,
    root: String,
    runs: HashMap<String, RunCtx>,
    pending: VecDeque<(String, Event)>,
    timers: BinaryHeap<Reverse<TimerEntry>>,
    timer_seq: u64,
    queue: VecDeque<(String, NodeId, f64, u64)>,
    held: HashMap<(String, u32), (f64, u64)>,
    free: Capacity,
    opts: DriverOptions,
    consumed: HashMap<String, Vec<i64>>,
    seen: HashSet<i64>,
    observer: Box<dyn Observer>,
    interrupts: u32,
    /// Driving only to cancel (`kaon cancel` of an orphaned run).
    cancelling: bool,
    memo: Option<MemoCtx>,
    /// Memo key parts computed since the last commit.
    keys: Vec<KeyRow>,
}

/// What memoization needs: the blobs, a cache of code digests, and a way
/// to report a memo hit once its files are back in place.
pub struct MemoCtx {
    /// The artifact store.
    pub blobs: ArtifactStore,
    /// Code digests already computed.
    pub code: memo::CodeCache,
    /// The executors' event channel.
    pub tx: UnboundedSender<ExecEvent>,
}

impl<S: StateStore + ArtifactIndex + 'static, E: Executor> Driver<S, E> {
    /// A driver for `root`, which the caller has created (or found) in the
    /// store and claimed for `owner`.
    pub fn new(
        store: Arc<S>,
        exec: E,
        rx: UnboundedReceiver<ExecEvent>,
        owner: String,
        opts: DriverOptions,
        observer: Box<dyn Observer>,
    ) -> Self {
        Driver {
            store,
            exec,
            rx,
            owner,
            root: String::new(),
            runs: HashMap::new(),
            pending: VecDeque::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            queue: VecDeque::new(),
            held: HashMap::new(),
            free: opts.capacity,
            opts,
            consumed: HashMap::new(),
            seen: HashSet::new(),
            observer,
            interrupts: 0,
            cancelling: false,
            memo: None,
            keys: Vec::new(),
        }
    }

    /// Turns memoization on: steps whose memo key has a finished run with
    /// every artifact present are not run again.
    pub fn with_memo(mut self, memo: MemoCtx) -> Self {
        self.memo = Some(memo);
        self
    }

    /// Holds a run in memory and queues its first event.
    fn hold(
        &mut self,
        id: &str,
        state: RunState,
        validated: Arc<Validated>,
        parent: Option<(String, NodeId, u32)>,
        first: Event,
    ) {
        self.runs.insert(
            id.to_string(),
            RunCtx {
                state,
                validated,
                parent,
                done: false,
            },
        );
        self.pending.push_back((id.to_string(), first));
    }

    /// Starts a new run (already recorded in the store) from the beginning.
    pub fn start_new(
        &mut self,
        id: &str,
        validated: Arc<Validated>,
        params: Map<String, Value>,
        options: RunOptions,
    ) {
        let program = Arc::new(Program::new(validated.clone(), base_dir(&validated)));
        let state = RunState::new(id, program, params, options);
        self.root = id.to_string();
        self.hold(id, state, validated, None, Event::RunStarted);
    }

    /// Loads a stored run to carry it on. `params` are its parameters with
    /// secrets in them (see [`Sealer::unseal_params`]).
    pub async fn resume(
        &mut self,
        row: &RunRow,
        validated: Arc<Validated>,
        params: Map<String, Value>,
    ) -> Result<()> {
        let state = load_state(self.store.as_ref(), row, validated.clone(), params).await?;
        self.root = row.id.clone();
        self.hold(&row.id, state, validated, None, Event::Recovered);
        Ok(())
    }

    /// Asks the root run to cancel as soon as the loop starts.
    pub fn cancel_at_start(&mut self, reason: &str) {
        self.cancelling = true;
        self.pending.push_back((
            self.root.clone(),
            Event::CancelRequested {
                reason: reason.to_string(),
            },
        ));
    }

    /// The root run's state (for the final report).
    pub fn root_state(&self) -> Option<&RunState> {
        self.runs.get(&self.root).map(|c| &c.state)
    }

    /// Runs the loop until the root run ends (or this process is told to
    /// let go of it); returns its status, `None` when detached.
    pub async fn drive(&mut self) -> Result<Option<RunStatus>> {
        let mut inbox = tokio::time::interval(self.opts.inbox_every);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        // Signals arrive on a channel that every turn checks, so a busy
        // loop (events always pending) still sees Ctrl-C.
        let (sig_tx, mut sigs) = tokio::sync::mpsc::unbounded_channel::<bool>();
        for (kind, is_term) in [
            (tokio::signal::unix::SignalKind::interrupt(), false),
            (tokio::signal::unix::SignalKind::terminate(), true),
        ] {
            let mut stream =
                tokio::signal::unix::signal(kind).context("cannot listen for signals")?;
            let tx = sig_tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(is_term).is_err() {
                        break;
                    }
                }
            });
        }
        loop {
            self.tick().await?;
            if self.runs.get(&self.root).is_some_and(|c| c.done) && self.held.is_empty() {
                let status = self.runs[&self.root].state.status;
                self.observer.finished(&self.runs[&self.root].state);
                return Ok(Some(status));
            }
            while let Ok(is_term) = sigs.try_recv() {
                if self.on_signal(is_term) {
                    return Ok(None);
                }
            }
            if !self.pending.is_empty() {
                continue;
            }
            let next_timer = self.timers.peek().map(|Reverse(t)| t.at);
            let sleep = match next_timer {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                ev = self.rx.recv() => {
                    if let Some(ev) = ev {
                        self.exec_event(ev);
                    }
                    while let Ok(ev) = self.rx.try_recv() {
                        self.exec_event(ev);
                        if self.pending.len() > 20_000 {
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = inbox.tick() => {
                    // A deleted database would take every later commit
                    // with it, unseen: stop instead.
                    self.store.check_present()?;
                    self.read_inbox().await?;
                }
                _ = heartbeat.tick() => {
                    let now = now_ms() as i64;
                    for id in self.live_runs() {
                        if !self.store.heartbeat(&id, &self.owner, now).await? {
                            bail!("run {id} was taken over by another kaon process; this one stops driving it");
                        }
                    }
                }
                Some(is_term) = sigs.recv() => {
                    if self.on_signal(is_term) {
                        return Ok(None);
                    }
                }
            }
            self.fire_timers();
        }
    }

    /// Ctrl-C once cancels the run, twice leaves; SIGTERM leaves. True
    /// when the loop must stop.
    fn on_signal(&mut self, is_term: bool) -> bool {
        if is_term {
            self.observer
                .note("SIGTERM: leaving the run as it is; `kaon resume` carries it on");
            return true;
        }
        self.interrupts += 1;
        if self.interrupts > 1 {
            self.observer.note("interrupted again: leaving; the steps still running go on, and `kaon resume` picks the run up");
            return true;
        }
        self.observer
            .note("cancelling the run (Ctrl-C again to leave at once)");
        self.pending.push_back((
            self.root.clone(),
            Event::CancelRequested {
                reason: "interrupted (Ctrl-C)".into(),
            },
        ));
        false
    }

    /// Lets go of every run this driver holds.
    pub async fn release(&self) {
        for id in self.runs.keys() {
            let _ = self
                .store
                .claim(id, Some(&self.owner), None, now_ms() as i64)
                .await;
        }
    }

    fn live_runs(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|(_, c)| !c.done)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn fire_timers(&mut self) {
        let now = now_ms();
        while let Some(Reverse(t)) = self.timers.peek() {
            if t.at > now {
                break;
            }
            let Some(Reverse(t)) = self.timers.pop() else {
                break;
            };
            self.pending.push_back((
                t.run,
                Event::TimerFired {
                    node: NodeId(t.node),
                    attempt: t.attempt,
                    timer: t.timer,
                },
            ));
        }
    }

    fn exec_event(&mut self, ev: ExecEvent) {
        if let Event::StepExited { node, .. }
        | Event::StepMemoized { node, .. }
        | Event::LaunchFailed { node, .. } = &ev.event
        {
            self.release_resources(&ev.run, *node);
        }
        self.pending.push_back((ev.run, ev.event));
    }

    /// Counts a step against capacity (once; a request above capacity is
    /// capped so that the step runs alone).
    fn hold_resources(&mut self, run: &str, node: NodeId, cpus: f64, memory: u64) {
        let key = (run.to_string(), node.0);
        if self.held.contains_key(&key) {
            return;
        }
        let c = cpus.min(self.opts.capacity.cpus);
        let m = memory.min(self.opts.capacity.memory);
        self.free.cpus -= c;
        self.free.memory = self.free.memory.saturating_sub(m);
        self.held.insert(key, (c, m));
    }

    /// A launch that did not happen: its resources go back, and the
    /// engine hears why.
    fn launch_failed(&mut self, run: &str, order: &LaunchOrder, message: String, platform: bool) {
        self.release_resources(run, order.node);
        self.pending.push_back((
            run.to_string(),
            Event::LaunchFailed {
                node: order.node,
                attempt: order.attempt,
                message,
                platform,
            },
        ));
    }

    fn release_resources(&mut self, run: &str, node: NodeId) {
        if let Some((c, m)) = self.held.remove(&(run.to_string(), node.0)) {
            self.free.cpus += c;
            self.free.memory += m;
        }
    }

    async fn read_inbox(&mut self) -> Result<()> {
        for id in self.live_runs() {
            for m in self.store.inbox(&id).await? {
                if !self.seen.insert(m.id) {
                    continue;
                }
                let ev = match m.body {
                    MessageBody::Signal { name, value } => Event::SignalReceived {
                        name,
                        value: serde_json::from_str(&value).unwrap_or(Value::String(value)),
                    },
                    MessageBody::Cancel { reason } => Event::CancelRequested { reason },
                    MessageBody::Kill { step, reason } => Event::KillRequested { step, reason },
                };
                self.consumed.entry(id.clone()).or_default().push(m.id);
                self.pending.push_back((id.clone(), ev));
            }
        }
        Ok(())
    }

    /// One turn: apply, admit, commit, act.
    async fn tick(&mut self) -> Result<()> {
        let now = now_ms();
        let mut actions: Vec<(String, Action)> = Vec::new();
        while let Some((run, ev)) = self.pending.pop_front() {
            let Some(ctx) = self.runs.get_mut(&run) else {
                continue;
            };
            let out = ctx.state.apply(ev, now)?;
            self.route(&run, out, &mut actions);
        }
        // Admission: first fit in FIFO order, so one big step does not hold
        // up small ones behind it.
        let mut i = 0;
        let mut looked = 0;
        while i < self.queue.len() && looked < 10_000 && self.free.cpus > 0.0 {
            looked += 1;
            let (run, node, cpus, mem) = self.queue[i].clone();
            let cpus = cpus.min(self.opts.capacity.cpus);
            let mem = mem.min(self.opts.capacity.memory);
            let fits = cpus <= self.free.cpus + 1e-9 && mem <= self.free.memory;
            if !fits {
                i += 1;
                continue;
            }
            self.queue.remove(i);
            let Some(ctx) = self.runs.get_mut(&run) else {
                continue;
            };
            let out = ctx.state.apply(Event::StepAdmitted { node }, now)?;
            self.hold_resources(&run, node, cpus, mem);
            let launched = out.iter().any(|a| matches!(a, Action::Launch(_)));
            if !launched {
                self.release_resources(&run, node);
            }
            self.route(&run, out, &mut actions);
        }
        self.commit(now).await?;
        for (run, a) in actions {
            self.act(&run, a, now).await?;
        }
        Ok(())
    }

    /// Queues ready steps at once (only memory changes) and keeps every
    /// other action for after the commit.
    fn route(&mut self, run: &str, out: Vec<Action>, actions: &mut Vec<(String, Action)>) {
        for a in out {
            match a {
                Action::Enqueue { node, cpus, memory } => {
                    self.queue.push_back((run.to_string(), node, cpus, memory))
                }
                other => actions.push((run.to_string(), other)),
            }
        }
    }

    async fn commit(&mut self, now: Millis) -> Result<()> {
        let mut batches = Vec::new();
        let mut changed: Vec<(String, NodeRecord)> = Vec::new();
        for (id, ctx) in &mut self.runs {
            let delta = ctx.state.take_delta();
            let consumed = self.consumed.remove(id).unwrap_or_default();
            if delta.is_empty() && consumed.is_empty() {
                continue;
            }
            let b = to_batch(id, &delta, consumed, now);
            changed.extend(delta.nodes.into_iter().map(|n| (id.clone(), n)));
            batches.push(b);
        }
        if !self.keys.is_empty() {
            batches.push(Batch {
                keys: std::mem::take(&mut self.keys),
                ..Batch::default()
            });
        }
        if !batches.is_empty() {
            self.store
                .commit(&batches)
                .await
                .context("cannot commit the run's state")?;
        }
        let runs: HashMap<&str, &RunState> = self
            .runs
            .iter()
            .map(|(k, v)| (k.as_str(), &v.state))
            .collect();
        self.observer.changed(&self.root, &runs, &changed);
        Ok(())
    }

    /// The secret values a run holds: its own secret parameters' and those
    /// of the runs above it (a child run's parameters may carry a parent's
    /// secret without being marked secret themselves).
    fn secrets_of(&self, run: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut at = self.runs.get(run);
        while let Some(c) = at {
            out.extend(secret_values(&c.validated.workflow.params, &c.state.params));
            at = c.parent.as_ref().and_then(|(p, _, _)| self.runs.get(p));
        }
        out.sort_by_key(|(_, v)| Reverse(v.len()));
        out
    }

    /// Computes a launch's memo key and, when an earlier step run has the
    /// result, links it in instead of running the step.
    async fn memoize(&mut self, run: &str, order: &LaunchOrder, now: Millis) -> Result<Memoized> {
        let (Some(m), Some(spec)) = (&self.memo, &order.memo) else {
            return Ok(Memoized::Run(None));
        };
        let facts = self.exec.describe(order);
        let secrets = self.secrets_of(run);
        let hidden = memo::Hidden {
            sealer: &self.opts.sealer,
            secrets: &secrets,
        };
        let (key, parts) = memo::memo_key(order, &m.code, &facts, &hidden).await?;
        // A launch re-issued after a restart may have a process already:
        // it is found (adopted), never replaced by a reuse.
        let hit = if spec.reuse && !order.adopt {
            memo::lookup(&*self.store, &m.blobs, &key, order).await?
        } else {
            None
        };
        // Where the files would go is checked before the reuse is decided:
        // a destination that refuses them (a file of the user's, a link)
        // means the step runs; a store that cannot give them back drops
        // the entry too.
        let mut outcome = "ran".to_string();
        let hit = match hit {
            Some(hit) => match memo::plan(&m.blobs, &hit, &order.workdir).await {
                Ok(plans) => Some((hit, plans)),
                Err(e) => {
                    if !e.is_in_the_way() {
                        let _ = self
                            .store
                            .forget_memo(&key, &hit.row.run, hit.row.node)
                            .await;
                    }
                    outcome = format!("ran: the result of {} was not put back: {e}", hit.from);
                    None
                }
            },
            None => None,
        };
        if hit.is_some() {
            outcome = "memoized".into();
        }
        self.keys.push(KeyRow {
            run: run.to_string(),
            node: order.node.0,
            attempt: order.attempt,
            step: order.step.clone(),
            step_key: order.key.clone(),
            key: key.clone(),
            parts: serde_json::to_string(&parts).unwrap_or_else(|_| "{}".into()),
            outcome,
            created_ms: now as i64,
        });
        let Some((hit, plans)) = hit else {
            return Ok(Memoized::Run(Some(key)));
        };
        // Files go back in place off the driver's turn; the step counts as
        // done only once they are there.
        let (blobs, tx, store) = (m.blobs.clone(), m.tx.clone(), self.store.clone());
        let (run, node, attempt) = (run.to_string(), order.node, order.attempt);
        tokio::spawn(async move {
            let event = match memo::restore(&blobs, plans).await {
                Ok(()) => Event::StepMemoized {
                    node,
                    attempt,
                    key,
                    from: hit.from,
                    outputs: hit.outputs,
                    artifacts: hit.artifacts,
                },
                Err(e) => {
                    let _ = store.forget_memo(&key, &hit.row.run, hit.row.node).await;
                    Event::LaunchFailed {
                        node,
                        attempt,
                        message: format!(
                            "{e:#} (the cached result is dropped; the next attempt runs the step)"
                        ),
                        platform: true,
                    }
                }
            };
            let _ = tx.send(ExecEvent { run, event });
        });
        Ok(Memoized::Reused)
    }

    async fn act(&mut self, run: &str, a: Action, now: Millis) -> Result<()> {
        match a {
            // Queued by `route` before the commit.
            Action::Enqueue { .. } => {}
            Action::Launch(order) => {
                // Launches re-issued after a restart were admitted by the
                // previous process: they count against capacity here.
                self.hold_resources(run, order.node, order.cpus, order.memory);
                let memo_key = match self.memoize(run, &order, now).await {
                    Ok(Memoized::Reused) => return Ok(()),
                    Ok(Memoized::Run(key)) => key,
                    Err(e) => {
                        self.launch_failed(run, &order, format!("{e:#}"), false);
                        return Ok(());
                    }
                };
                match self.exec.start(&order) {
                    Ok(handle) => self.pending.push_back((
                        run.to_string(),
                        Event::StepLaunched {
                            node: order.node,
                            attempt: order.attempt,
                            handle,
                            memo_key,
                        },
                    )),
                    Err(e) => self.launch_failed(run, &order, e.message, e.platform),
                }
            }
            Action::Reattach {
                node,
                handle,
                order,
                ..
            } => {
                self.hold_resources(run, node, order.cpus, order.memory);
                self.exec.reattach(&order, &handle);
            }
            Action::Kill { handle, .. } => self.exec.kill(&handle),
            Action::SetTimer {
                node,
                attempt,
                at,
                timer,
            } => {
                self.timer_seq += 1;
                self.timers.push(Reverse(TimerEntry {
                    at,
                    seq: self.timer_seq,
                    run: run.to_string(),
                    node: node.0,
                    attempt,
                    timer,
                }));
            }
            Action::StartChildRun {
                node,
                attempt,
                child,
                step,
                params,
            } => {
                self.start_child(run, node, attempt, &child, &step, params, now)
                    .await?
            }
            Action::CancelChildRun { child } => {
                if self.runs.contains_key(&child) {
                    self.pending.push_back((
                        child,
                        Event::CancelRequested {
                            reason: "the parent run cancelled it".into(),
                        },
                    ));
                }
            }
            Action::RunFinished { status } => {
                let Some(ctx) = self.runs.get_mut(run) else {
                    return Ok(());
                };
                ctx.done = true;
                if let Some((parent, node, attempt)) = ctx.parent.clone() {
                    let outputs = ctx.state.data.outputs.clone().unwrap_or_default();
                    let message = ctx.state.data.message.clone();
                    self.pending.push_back((
                        parent,
                        Event::ChildRunFinished {
                            node,
                            attempt,
                            status,
                            outputs,
                            message,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_child(
        &mut self,
        parent: &str,
        node: NodeId,
        attempt: u32,
        child: &str,
        step: &str,
        params: Map<String, Value>,
        now: Millis,
    ) -> Result<()> {
        if self.runs.contains_key(child) {
            return Ok(());
        }
        let pctx = &self.runs[parent];
        let validated =
            Arc::new(pctx.validated.children.get(step).cloned().ok_or_else(|| {
                anyhow!("sub-workflow step `{step}` has no loaded child workflow")
            })?);
        let options = pctx.state.options.clone();
        let link = Some((parent.to_string(), node, attempt));
        // A child's own `from_env`/`from_file` parameters the parent does
        // not give are read as for a root run.
        let mut params = params;
        let base = base_dir(&validated);
        let sourced = crate::secrets::take_from_sources(
            &validated.workflow.params,
            &mut params,
            &base,
            false,
        );
        let bound = match sourced {
            Ok(()) => kaon_engine::eval::bind_params(&validated.workflow.params, &params),
            Err(e) => Err(vec![format!("{e:#}")]),
        };
        if let Some(row) = self.store.run(child).await? {
            // Made before a restart: carry it on, with its parameters as the
            // parent gives them now (the stored ones have secrets sealed).
            let stored: Map<String, Value> = serde_json::from_str(&row.params)
                .with_context(|| format!("run {}: stored parameters are damaged", row.id))?;
            let current = bound.clone().unwrap_or_default();
            // A run being cancelled launches nothing: its secrets may stay
            // sealed.
            let params = if self.cancelling {
                stored
            } else {
                self.opts
                    .sealer
                    .unseal_params(&validated.workflow.params, &stored, &current)?
            };
            let state = load_state(self.store.as_ref(), &row, validated.clone(), params).await?;
            let expected = row.owner.clone();
            self.store
                .claim(child, expected.as_deref(), Some(&self.owner), now as i64)
                .await?;
            self.hold(child, state, validated, link, Event::Recovered);
            return Ok(());
        }
        let params = match bound {
            Ok(p) => p,
            Err(errs) => {
                self.pending.push_back((
                    parent.to_string(),
                    Event::ChildRunFinished {
                        node,
                        attempt,
                        status: RunStatus::Failed,
                        outputs: Map::new(),
                        message: Some(errs.join("; ")),
                    },
                ));
                return Ok(());
            }
        };
        let inherited = self.secrets_of(parent);
        let row = new_run_row(
            child,
            &validated,
            &self
                .opts
                .sealer
                .seal_params(&validated.workflow.params, &params, &inherited),
            &options,
            Some((parent, node.0)),
            &self.owner,
            now,
        );
        self.store.create_run(&row).await?;
        let program = Arc::new(Program::new(validated.clone(), base_dir(&validated)));
        let state = RunState::new(child, program, params, options);
        self.hold(child, state, validated, link, Event::RunStarted);
        Ok(())
    }
}

/// The stored row of a new run, owned by `owner`.
pub fn new_run_row(
    id: &str,
    v: &Validated,
    params: &Map<String, Value>,
    options: &RunOptions,
    parent: Option<(&str, u32)>,
    owner: &str,
    now: Millis,
) -> RunRow {
    RunRow {
        id: id.to_string(),
        workflow: v.workflow.name.clone(),
        path: std::path::absolute(&v.workflow.path)
            .unwrap_or_else(|_| v.workflow.path.clone())
            .display()
            .to_string(),
        digest: workflow_digest(v),
        params: Value::Object(params.clone()).to_string(),
        options: serde_json::to_string(options).unwrap_or_else(|_| "{}".into()),
        parent: parent.map(|(p, n)| (p.to_string(), n)),
        status: RunStatus::Running.name().to_string(),
        data: "{}".into(),
        created_ms: now as i64,
        finished_ms: None,
        owner: Some(owner.to_string()),
        heartbeat_ms: Some(now as i64),
    }
}

/// Rebuilds a run's state from the store, with its parameters as given
/// (the stored ones have their secrets sealed).
pub async fn load_state<S: StateStore>(
    store: &S,
    row: &RunRow,
    validated: Arc<Validated>,
    params: Map<String, Value>,
) -> Result<RunState> {
    let options: RunOptions = serde_json::from_str(&row.options).unwrap_or_default();
    let data: RunData = serde_json::from_str(&row.data).unwrap_or_default();
    let status = RunStatus::parse(&row.status)
        .ok_or_else(|| anyhow!("run {}: unknown stored status `{}`", row.id, row.status))?;
    let mut scopes = Vec::new();
    for s in store.scopes(&row.id).await? {
        scopes.push(ScopeRecord {
            id: s.id,
            tmpl: s.tmpl,
            parent: s.parent,
            index: s.index,
            vars: serde_json::from_str(&s.vars)
                .with_context(|| format!("run {}: scope {} is damaged", row.id, s.id))?,
        });
    }
    let mut nodes = Vec::new();
    for n in store.nodes(&row.id).await? {
        let d: NodeData = serde_json::from_str(&n.data)
            .with_context(|| format!("run {}: node {} ({}) is damaged", row.id, n.id, n.key))?;
        nodes.push((NodeId(n.id), d));
    }
    let program = Arc::new(Program::new(validated.clone(), base_dir(&validated)));
    let fresh = RunState::new(row.id.clone(), program, params, options);
    Ok(RunState::restore(fresh, status, data, scopes, nodes)?)
}

/// The store batch of one run's delta (`consumed`: inbox messages acted on).
pub fn to_batch(id: &str, d: &Delta, consumed: Vec<i64>, now: Millis) -> Batch {
    let mut b = Batch {
        run: id.to_string(),
        status: d.run.as_ref().map(|(status, data)| {
            (
                status.name().to_string(),
                serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
                status.is_terminal().then_some(now as i64),
            )
        }),
        scopes: d
            .scopes
            .iter()
            .map(|s| ScopeRow {
                id: s.id,
                tmpl: s.tmpl,
                parent: s.parent,
                index: s.index,
                vars: serde_json::to_string(&s.vars).unwrap_or_else(|_| "[]".into()),
            })
            .collect(),
        nodes: d.nodes.iter().map(node_row).collect(),
        consumed,
        ..Batch::default()
    };
    artifact_rows(id, d, &mut b, now);
    b
}

/// What [`Driver::memoize`] decided.
enum Memoized {
    /// An earlier result is being linked in.
    Reused,
    /// The step runs, under this memo key (none when it is not cached).
    Run(Option<String>),
}

/// Artifact, lineage and memo rows of the nodes in a delta: artifacts and
/// reads of step runs that ended, a memo entry for each that succeeded
/// under a memo key.
fn artifact_rows(id: &str, d: &Delta, b: &mut Batch, now: Millis) {
    for n in &d.nodes {
        let info = &n.data.info;
        let state = &n.data.state;
        if !state.is_terminal() {
            continue;
        }
        let done = matches!(state, StepState::Succeeded | StepState::Memoized { .. });
        for i in &info.inputs {
            b.reads.push(ReadRow {
                run: id.to_string(),
                node: n.id.0,
                attempt: info.attempts,
                artifact: i.artifact.clone(),
            });
        }
        if !done {
            continue;
        }
        for a in &info.artifacts {
            b.artifacts.push(ArtifactRow {
                id: a.id.clone(),
                digest: a.digest.clone(),
                kind: a.kind.clone(),
                size: a.size as i64,
                files: a.files as i64,
                media_type: a.media_type.clone(),
                name: a.name.clone(),
                run: Some(id.to_string()),
                node: Some(n.id.0),
                step: Some(n.name.clone()),
                step_key: Some(n.key.clone()),
                attempt: Some(info.attempts),
                path: a.path.clone(),
                created_ms: info.finished.unwrap_or(now) as i64,
                tags: "{}".into(),
                memoized_from: a.memoized_from.clone(),
            });
        }
        if let (StepState::Succeeded, Some(key)) = (state, &info.memo_key) {
            let ids: Map<String, Value> = info
                .artifacts
                .iter()
                .map(|a| (a.name.clone(), Value::String(a.id.clone())))
                .collect();
            b.memo.push(MemoRow {
                key: key.clone(),
                run: id.to_string(),
                node: n.id.0,
                attempt: info.attempts,
                step: n.name.clone(),
                step_key: n.key.clone(),
                outputs: serde_json::to_string(&info.outputs.clone().unwrap_or_default())
                    .unwrap_or_else(|_| "{}".into()),
                artifacts: Value::Object(ids).to_string(),
                created_ms: info.finished.unwrap_or(now) as i64,
            });
        }
    }
}

/// The stored row of a node record.
pub fn node_row(n: &NodeRecord) -> NodeRow {
    NodeRow {
        id: n.id.0,
        scope: n.scope,
        key: n.key.clone(),
        name: n.name.clone(),
        kind: n.kind.to_string(),
        state: n.data.state.name().to_string(),
        attempt: n.data.info.attempts,
        started_ms: n.data.info.started.map(|t| t as i64),
        finished_ms: n.data.info.finished.map(|t| t as i64),
        data: serde_json::to_string(&n.data).unwrap_or_else(|_| "{}".into()),
    }
}
