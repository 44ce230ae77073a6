//! The loop that drives every run of a [`crate::Runner`]: it joins the
//! engine, the state store, the executor and the artifact store.
//!
//! One loop for all runs of the process. Each turn ("tick") feeds every
//! event that has arrived to the engines of the runs it names, admits
//! ready steps while the machine's resources allow (one queue for all
//! runs, so a hundred runs share the machine instead of each assuming it
//! alone), commits all resulting changes in one transaction, and only then
//! carries out the actions (launch, memo lookup, kill, timers, child
//! runs). A crash at any point leaves the store at the last commit, and
//! every action of that commit is one a restart can find again or redo
//! safely.

mod act;
mod children;
mod control;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kaon_engine::{Action, Event, Millis, NodeId, NodeRecord, RunState, RunStatus, ScopeRecord};
use kaon_exec::{ExecEvent, Executor};
use kaon_model::Validated;
use kaon_store::{ArtifactIndex, Batch, KeyRow, StateStore};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::admission::Admission;
use crate::error::RuntimeError;
use crate::memo::CodeCache;
use crate::observe::{Change, Observer};
use crate::owner::now_ms;
use crate::rows::to_batch;
use crate::runner::{Command, RuntimeOptions};
use crate::timers::Timers;

/// A run held in memory (a root or one of its child runs).
struct RunCtx {
    state: RunState,
    validated: Arc<Validated>,
    /// The parent run, node and attempt of a child run.
    parent: Option<(String, NodeId, u32)>,
    /// The root run it belongs to.
    root: String,
    done: bool,
}

/// A root run: who watches it, who waits for its end.
struct Root {
    observer: Box<dyn Observer>,
    done: Option<oneshot::Sender<Result<Option<RunStatus>, RuntimeError>>>,
    /// Driven only to cancel it (`kaon cancel` of an orphaned run): its
    /// secrets stay sealed, nothing new is launched.
    cancelling: bool,
}

/// What a memo lookup decided (a restored hit comes back from its task).
pub(crate) struct MemoDone {
    pub(crate) run: String,
    pub(crate) key: Option<KeyRow>,
    pub(crate) event: Event,
}

/// A retry asked of a run this loop holds, applied on the next turn.
pub(crate) struct RetryAsk {
    pub(crate) run: String,
    pub(crate) step: String,
    pub(crate) reply: oneshot::Sender<Result<(), RuntimeError>>,
}

/// Memoization's parts: the blobs and a cache of code digests.
pub(crate) struct MemoCtx {
    pub(crate) blobs: kaon_artifacts::ArtifactStore,
    pub(crate) code: CodeCache,
}

pub(crate) struct Driver<S, E> {
    store: Arc<S>,
    exec: Arc<E>,
    rx: mpsc::UnboundedReceiver<ExecEvent>,
    /// Restores of memo hits report here.
    memo_tx: mpsc::UnboundedSender<MemoDone>,
    memo_rx: mpsc::UnboundedReceiver<MemoDone>,
    cmds: mpsc::UnboundedReceiver<Command>,
    changes: broadcast::Sender<Change>,
    opts: RuntimeOptions,
    runs: HashMap<String, RunCtx>,
    roots: HashMap<String, Root>,
    pending: VecDeque<(String, Event)>,
    timers: Timers,
    admission: Admission,
    consumed: HashMap<String, Vec<i64>>,
    seen: HashSet<i64>,
    memo: Option<Arc<MemoCtx>>,
    /// Memo key parts decided since the last commit.
    keys: Vec<KeyRow>,
    /// Actions of transitions made outside a turn (a stored run retried),
    /// carried out on the next turn, after its commit.
    owed: Vec<(String, Action)>,
    /// Retries asked of runs held here, for the next turn.
    retries: Vec<RetryAsk>,
    /// Callers waiting for the next commit (of the run named): told then.
    after_commit: Vec<(String, oneshot::Sender<Result<(), RuntimeError>>)>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl<S, E> Driver<S, E>
where
    S: StateStore + ArtifactIndex + 'static,
    E: Executor + 'static,
{
    pub(crate) fn new(
        store: Arc<S>,
        exec: Arc<E>,
        rx: mpsc::UnboundedReceiver<ExecEvent>,
        cmds: mpsc::UnboundedReceiver<Command>,
        changes: broadcast::Sender<Change>,
        blobs: Option<kaon_artifacts::ArtifactStore>,
        opts: RuntimeOptions,
    ) -> Self {
        let (memo_tx, memo_rx) = mpsc::unbounded_channel();
        Driver {
            memo_tx,
            memo_rx,
            store,
            exec,
            rx,
            cmds,
            changes,
            admission: Admission::new(opts.capacity),
            opts,
            runs: HashMap::new(),
            roots: HashMap::new(),
            pending: VecDeque::new(),
            timers: Timers::default(),
            consumed: HashMap::new(),
            seen: HashSet::new(),
            memo: blobs.map(|blobs| {
                Arc::new(MemoCtx {
                    blobs,
                    code: CodeCache::default(),
                })
            }),
            keys: Vec::new(),
            owed: Vec::new(),
            retries: Vec::new(),
            after_commit: Vec::new(),
            shutdown: None,
        }
    }

    /// Runs until told to shut down (or every handle to the runner is
    /// dropped); lets go of every run it holds on the way out. A fault of
    /// the store or the engine stops the loop: every root still held
    /// hears it, and it is returned.
    pub(crate) async fn run(mut self) -> Result<(), Arc<RuntimeError>> {
        let result = self.run_inner().await.map_err(Arc::new);
        if let Err(e) = &result {
            for (_, root) in self.roots.iter_mut() {
                if let Some(done) = root.done.take() {
                    let _ = done.send(Err(RuntimeError::Fault(e.clone())));
                }
            }
        }
        self.release_all().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        result
    }

    async fn run_inner(&mut self) -> Result<(), RuntimeError> {
        let mut inbox = tokio::time::interval(self.opts.inbox_every.max(Duration::from_millis(1)));
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        // A pass over a thousand runs' inboxes can outlast the interval: the
        // next waits a whole interval rather than starting at once
        // (tokio's default, a burst, kept the loop busy with them).
        inbox.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.tick().await?;
            self.finish_roots().await;
            if self.shutdown.is_some() {
                return Ok(());
            }
            // Commands are read every turn, so a busy loop (events always
            // pending) still hears a cancel or a detach (Ctrl-C).
            while let Ok(cmd) = self.cmds.try_recv() {
                self.command(cmd).await?;
            }
            if self.shutdown.is_some() {
                return Ok(());
            }
            if self.has_work() {
                continue;
            }
            let sleep = match self.timers.next_at() {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                // A closed channel disables the branch instead of waking
                // the loop forever.
                Some(ev) = self.rx.recv() => {
                    self.exec_event(ev);
                    while let Ok(ev) = self.rx.try_recv() {
                        self.exec_event(ev);
                        if self.pending.len() > 20_000 {
                            break;
                        }
                    }
                }
                Some(done) = self.memo_rx.recv() => {
                    // Every answer ready is taken in this turn, as executor
                    // events are: one per turn cost a commit per memo hit.
                    self.memo_done(done);
                    while let Ok(done) = self.memo_rx.try_recv() {
                        self.memo_done(done);
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await?,
                    // Every handle to the runner is gone: nobody can ask
                    // for anything more, nor wait for an end.
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(sleep) => {}
                _ = inbox.tick() => {
                    // A deleted database would take every later commit
                    // with it, unseen: stop instead.
                    self.store
                        .check_present()
                        .map_err(RuntimeError::store("the state store"))?;
                    self.read_inbox(None).await?;
                }
                _ = heartbeat.tick() => self.heartbeat().await?,
            }
            let now = now_ms();
            self.pending.extend(self.timers.due(now));
        }
    }

    /// True when the next turn has something to do without waiting.
    fn has_work(&self) -> bool {
        !self.pending.is_empty()
            || !self.owed.is_empty()
            || !self.retries.is_empty()
            || !self.after_commit.is_empty()
    }

    async fn heartbeat(&mut self) -> Result<(), RuntimeError> {
        let now = now_ms() as i64;
        for id in self.live_runs() {
            let held = self
                .store
                .heartbeat(&id, &self.opts.owner, now)
                .await
                .map_err(RuntimeError::store("cannot stamp the heartbeat"))?;
            if !held {
                // Another process took it over: stop driving that run's
                // root; the others go on.
                let root = self.runs.get(&id).map(|c| c.root.clone());
                if let Some(root) = root {
                    self.end_root(&root, Err(RuntimeError::TakenOver { run: id }))
                        .await;
                }
            }
        }
        Ok(())
    }

    fn live_runs(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|(_, c)| !c.done)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn exec_event(&mut self, ev: ExecEvent) {
        if let Event::StepExited { node, .. } | Event::LaunchFailed { node, .. } = &ev.event {
            self.admission.release(&ev.run, *node);
        }
        self.pending.push_back((ev.run, ev.event));
    }

    pub(super) fn memo_done(&mut self, done: MemoDone) {
        if let Some(k) = done.key {
            self.keys.push(k);
        }
        if let Event::MemoHit { node, attempt, .. } | Event::LaunchFailed { node, attempt, .. } =
            &done.event
        {
            // A stale answer (an attempt the run has moved past) frees
            // nothing: the resources are the current attempt's.
            let current = self
                .runs
                .get(&done.run)
                .and_then(|c| c.state.node(*node))
                .and_then(|n| n.state.attempt());
            if current == Some(*attempt) {
                self.admission.release(&done.run, *node);
            }
        }
        self.pending.push_back((done.run, done.event));
    }

    /// One turn: apply, admit, commit, act.
    async fn tick(&mut self) -> Result<(), RuntimeError> {
        let now = now_ms();
        let mut actions: Vec<(String, Action)> = std::mem::take(&mut self.owed);
        let mut waiting = std::mem::take(&mut self.after_commit);
        // A run whose state refuses an event (a damaged store, a bug) is
        // let go of; the loop and the other runs go on.
        let mut broken: Vec<(String, RuntimeError)> = Vec::new();
        while let Some((run, ev)) = self.pending.pop_front() {
            let Some(ctx) = self.runs.get_mut(&run) else {
                continue;
            };
            match ctx.state.apply(ev, now) {
                Ok(out) => self.route(&run, out, &mut actions),
                Err(e) => broken.push((run, e.into())),
            }
        }
        // Retries come after the events that came before them (a resumed
        // run's `Recovered` first).
        for ask in std::mem::take(&mut self.retries) {
            match self.retry_held(&ask.run, &ask.step, now, &mut actions) {
                Ok(()) => waiting.push((ask.run, ask.reply)),
                Err(e) => {
                    let _ = ask.reply.send(Err(e));
                }
            }
        }
        for (run, node) in self.admission.admit() {
            let Some(ctx) = self.runs.get_mut(&run) else {
                self.admission.release(&run, node);
                continue;
            };
            let out = match ctx.state.apply(Event::StepAdmitted { node }, now) {
                Ok(out) => out,
                Err(e) => {
                    self.admission.release(&run, node);
                    broken.push((run, e.into()));
                    continue;
                }
            };
            let launched = out
                .iter()
                .any(|a| matches!(a, Action::Launch(_) | Action::LookupMemo(_)));
            if !launched {
                self.admission.release(&run, node);
            }
            self.route(&run, out, &mut actions);
        }
        for (run, e) in broken {
            self.fail_run(&run, e).await;
        }
        self.commit(now).await?;
        for (run, reply) in waiting {
            // A run let go of during the commit (taken over) was not
            // committed here.
            let _ = reply.send(if self.runs.contains_key(&run) {
                Ok(())
            } else {
                Err(RuntimeError::TakenOver { run })
            });
        }
        for (run, a) in actions {
            // Only for runs still held: a run let go of during the commit
            // (taken over by another process) has its actions carried out
            // by its new owner, from what that owner committed.
            if !self.runs.contains_key(&run) {
                continue;
            }
            match self.act(&run, a, now).await {
                Ok(()) => {}
                Err(e) if e.is_store() => return Err(e),
                Err(e) => self.fail_run(&run, e).await,
            }
        }
        Ok(())
    }

    /// Lets go of the root of `run` with `error`: a fault of that run
    /// (a sub-workflow that cannot start, a secret that does not match)
    /// stops it, not the loop. Its state stays as committed.
    async fn fail_run(&mut self, run: &str, error: RuntimeError) {
        let root = self.runs.get(run).map(|c| c.root.clone());
        if let Some(root) = root {
            self.end_root(&root, Err(error)).await;
        }
    }

    /// Queues ready steps at once (only memory changes) and keeps every
    /// other action for after the commit.
    fn route(&mut self, run: &str, out: Vec<Action>, actions: &mut Vec<(String, Action)>) {
        for a in out {
            match a {
                Action::Enqueue { node, cpus, memory } => {
                    self.admission.enqueue(run, node, cpus, memory)
                }
                other => actions.push((run.to_string(), other)),
            }
        }
    }

    async fn commit(&mut self, now: Millis) -> Result<(), RuntimeError> {
        let mut batches: Vec<Batch> = Vec::new();
        let mut changed: Vec<(String, Vec<NodeRecord>, Vec<ScopeRecord>)> = Vec::new();
        let mut finished: Vec<(String, RunStatus)> = Vec::new();
        let mut acted: Vec<i64> = Vec::new();
        for (id, ctx) in &mut self.runs {
            let delta = ctx.state.take_delta();
            let consumed = self.consumed.remove(id).unwrap_or_default();
            acted.extend(&consumed);
            if delta.is_empty() && consumed.is_empty() {
                continue;
            }
            let mut b = to_batch(id, &delta, consumed, now);
            // Fenced: a run another process took over refuses the write.
            b.owner = Some(self.opts.owner.clone());
            batches.push(b);
            if let Some((status, _)) = &delta.run
                && status.is_terminal()
            {
                finished.push((id.clone(), *status));
            }
            if !delta.nodes.is_empty() || !delta.scopes.is_empty() {
                changed.push((id.clone(), delta.nodes, delta.scopes));
            }
        }
        // Memo key parts only explain a decision (`kaon cache explain`):
        // they ride along with the next commit of state instead of costing
        // a transaction (an fsync) of their own per launch. Lost in a
        // crash, they are made again when the launch is re-issued.
        if batches.is_empty() {
            return Ok(());
        }
        if !self.keys.is_empty() {
            batches.push(Batch {
                keys: std::mem::take(&mut self.keys),
                ..Batch::default()
            });
        }
        // A run taken over since the last heartbeat fails the whole
        // transaction: its root is let go of and the others are committed.
        let mut lost: Vec<String> = Vec::new();
        loop {
            match self.store.commit(&batches).await {
                Ok(()) => break,
                Err(kaon_store::StoreError::Held { run, .. })
                    if batches.iter().any(|b| b.run == run) =>
                {
                    let Some(root) = self.runs.get(&run).map(|c| c.root.clone()) else {
                        // Batches are only made for runs held here.
                        return Err(RuntimeError::store("cannot commit the run's state")(
                            kaon_store::StoreError::NoSuchRun(run),
                        ));
                    };
                    let of_root: Vec<String> = self
                        .runs
                        .iter()
                        .filter(|(_, c)| c.root == root)
                        .map(|(id, _)| id.clone())
                        .collect();
                    batches.retain(|b| !of_root.contains(&b.run));
                    changed.retain(|(r, _, _)| !of_root.contains(r));
                    finished.retain(|(r, _)| !of_root.contains(r));
                    lost.push(root);
                }
                Err(e) => return Err(RuntimeError::store("cannot commit the run's state")(e)),
            }
        }
        for root in lost {
            let run = root.clone();
            self.end_root(&root, Err(RuntimeError::TakenOver { run }))
                .await;
        }
        // Consumed messages are out of the inbox once committed: no need
        // to remember them any longer (a server reads inboxes for weeks).
        for id in acted {
            self.seen.remove(&id);
        }
        self.tell(changed, finished);
        Ok(())
    }

    /// Tells observers and subscribers what was just committed.
    fn tell(
        &mut self,
        changed: Vec<(String, Vec<NodeRecord>, Vec<ScopeRecord>)>,
        finished: Vec<(String, RunStatus)>,
    ) {
        let mut by_root: HashMap<String, Vec<(String, NodeRecord)>> = HashMap::new();
        for (run, nodes, scopes) in changed {
            let Some(root) = self.runs.get(&run).map(|c| c.root.clone()) else {
                continue;
            };
            if self.changes.receiver_count() > 0 {
                let _ = self.changes.send(Change::Nodes {
                    run: run.clone(),
                    root: root.clone(),
                    nodes: Arc::new(nodes.clone()),
                    scopes: Arc::new(scopes),
                });
            }
            if nodes.is_empty() {
                continue;
            }
            by_root
                .entry(root)
                .or_default()
                .extend(nodes.into_iter().map(|n| (run.clone(), n)));
        }
        for (root, changed) in by_root {
            let runs: HashMap<&str, &RunState> = self
                .runs
                .iter()
                .filter(|(_, c)| c.root == root)
                .map(|(k, v)| (k.as_str(), &v.state))
                .collect();
            if let Some(r) = self.roots.get_mut(&root) {
                r.observer.changed(&root, &runs, &changed);
            }
        }
        for (run, status) in finished {
            let root = self
                .runs
                .get(&run)
                .map(|c| c.root.clone())
                .unwrap_or_default();
            let _ = self.changes.send(Change::RunFinished { run, root, status });
        }
    }

    /// Roots whose run ended and whose steps have all let go of their
    /// resources are reported and dropped from memory.
    async fn finish_roots(&mut self) {
        let ended: Vec<String> = self
            .roots
            .keys()
            .filter(|root| {
                self.runs.get(*root).is_some_and(|c| c.done)
                    && !self
                        .admission
                        .holds_any(&|r: &str| self.runs.get(r).is_some_and(|c| &c.root == *root))
            })
            .cloned()
            .collect();
        for root in ended {
            let status = self.runs.get(&root).map(|c| c.state.status);
            if let (Some(r), Some(ctx)) = (self.roots.get_mut(&root), self.runs.get(&root)) {
                r.observer.finished(&ctx.state);
            }
            self.end_root(&root, Ok(status)).await;
        }
    }

    /// Lets go of a root and its child runs: forgets them, releases their
    /// claims, and tells whoever waits how it ended.
    async fn end_root(&mut self, root: &str, outcome: Result<Option<RunStatus>, RuntimeError>) {
        let ids: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, c)| c.root == root)
            .map(|(id, _)| id.clone())
            .collect();
        let mine = |r: &str| ids.iter().any(|i| i == r);
        self.admission.drop_runs(&mine);
        self.timers.drop_runs(&mine);
        self.pending.retain(|(r, _)| !mine(r));
        for id in &ids {
            if let Some(ctx) = self.runs.remove(id) {
                // A run that did not end is left for another process.
                let _ = self
                    .store
                    .claim(id, Some(&self.opts.owner), None, now_ms() as i64)
                    .await;
                if !ctx.done && id == root {
                    let _ = self.changes.send(Change::Released { run: id.clone() });
                }
            }
        }
        if let Some(mut r) = self.roots.remove(root)
            && let Some(done) = r.done.take()
        {
            let _ = done.send(outcome);
        }
    }

    /// Lets go of every run (shutdown): they stay as they are in the
    /// store, and the next process carries them on.
    async fn release_all(&mut self) {
        let roots: Vec<String> = self.roots.keys().cloned().collect();
        for root in roots {
            self.end_root(&root, Ok(None)).await;
        }
    }
}
