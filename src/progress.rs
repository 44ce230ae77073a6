//! What `kaon run` shows while it works: live bars on a terminal, plain
//! lines otherwise.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kaon_engine::program::TNode;
use kaon_engine::run::fmt_duration;
use kaon_engine::{NodeId, NodeRecord, RunState, RunStatus, SkipReason, StepState};
use kaon_runtime::rows::{node_kind, node_state, record_kind};
use kaon_store::row::{NodeKind, NodeState};

pub use kaon_runtime::Observer;

/// Keeps the summary of the run's end for the caller to print once the
/// runtime has let go of the run, and passes everything on.
pub struct Summarized {
    inner: Box<dyn Observer>,
    begun: Instant,
    summary: Arc<Mutex<Option<String>>>,
}

impl Summarized {
    /// Wraps `inner`; the summary goes to `summary` when the run ends.
    pub fn new(inner: Box<dyn Observer>, summary: Arc<Mutex<Option<String>>>) -> Self {
        Summarized {
            inner,
            begun: Instant::now(),
            summary,
        }
    }
}

impl Observer for Summarized {
    fn changed(
        &mut self,
        root: &str,
        runs: &HashMap<&str, &RunState>,
        changed: &[(String, NodeRecord)],
    ) {
        self.inner.changed(root, runs, changed);
    }
    fn note(&mut self, msg: &str) {
        self.inner.note(msg);
    }
    fn finished(&mut self, state: &RunState) {
        self.inner.finished(state);
        if let Ok(mut s) = self.summary.lock() {
            *s = Some(summary(state, self.begun.elapsed()));
        }
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Live bars (needs a terminal).
    Tty,
    /// One line per event.
    Plain,
    /// Nothing but the final summary.
    None,
}

/// For-each blocks with more items than this show as one bar, not a line
/// per item.
const BIG: u32 = 20;

/// The observer for a mode.
pub fn observer(mode: Mode) -> Box<dyn Observer> {
    use std::io::IsTerminal;
    match mode {
        Mode::Auto if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() => {
            Box::new(Bars::new())
        }
        Mode::Tty => Box::new(Bars::new()),
        Mode::Auto | Mode::Plain => Box::new(Plain::new()),
        Mode::None => Box::new(Quiet),
    }
}

/// The block a node sits in when that block is a big for-each.
fn big_block(state: &RunState, id: NodeId) -> Option<NodeId> {
    let n = state.node(id)?;
    let b = state.scope(n.scope).parent?;
    match state.tnode(b) {
        TNode::ForEach { .. } if state.node(b)?.info.items.unwrap_or(0) > BIG => Some(b),
        _ => big_block(state, b),
    }
}

fn label(run: &str, root: &str, key: &str) -> String {
    if run == root {
        key.to_string()
    } else {
        let child = run
            .strip_prefix(root)
            .unwrap_or(run)
            .trim_start_matches('.');
        format!("{child}/{key}")
    }
}

fn duration_of(r: &NodeRecord) -> String {
    match (r.data.info.attempt_started, r.data.info.finished) {
        (Some(s), Some(f)) => fmt_duration(f.saturating_sub(s)),
        _ => String::new(),
    }
}

fn describe(r: &NodeRecord, k: &str) -> Option<String> {
    Some(match &r.data.state {
        StepState::Running { attempt, .. } if record_kind(r.kind) == NodeKind::Wait => {
            format!(
                "… {k} {}",
                r.data
                    .info
                    .note
                    .clone()
                    .unwrap_or_else(|| format!("attempt {attempt}"))
            )
        }
        StepState::Running { attempt: 1, .. } => format!("▶ {k}"),
        StepState::Running { attempt, .. } => format!("▶ {k} (attempt {attempt})"),
        StepState::Succeeded => {
            let d = duration_of(r);
            if d.is_empty() {
                format!("✓ {k}")
            } else {
                format!("✓ {k} ({d})")
            }
        }
        StepState::Memoized { from } => {
            let run = from.split('/').next().unwrap_or(from);
            format!("≡ {k} memoized (result of run {run})")
        }
        StepState::Failed { failure } => format!("✗ {k}: {}", failure.message),
        StepState::Retrying { attempt, at, last } => format!(
            "↻ {k}: attempt {} {}; retrying in {}",
            attempt - 1,
            last.message,
            fmt_duration(at.saturating_sub(kaon_runtime::now_ms()))
        ),
        StepState::Skipped { reason } => match reason {
            SkipReason::ConditionFalse => format!("- {k}: condition false, nothing to run"),
            SkipReason::UpstreamFailed { upstream } => format!("- {k} skipped: {upstream} failed"),
            SkipReason::RunStopped => format!("- {k} skipped: the run stopped after a failure"),
        },
        StepState::Cancelled => format!("■ {k} cancelled"),
        _ => return None,
    })
}

fn block_summary(state: &RunState, b: NodeId) -> String {
    let (done, failed, total) = state.child_counts(b);
    format!("{} {done}/{total} done, {failed} failed", state.key(b))
}

/// What `--progress plain` says of a node's change, if anything: nothing
/// for markers, for no-op steps that did not succeed, and for states
/// without a line of their own.
fn plain_line(root: &str, run: &str, r: &NodeRecord) -> Option<String> {
    let kind = record_kind(r.kind);
    if kind == NodeKind::Marker {
        return None;
    }
    if kind == NodeKind::Noop && node_state(&r.data.state) != NodeState::Succeeded {
        return None;
    }
    let lk = label(run, root, &r.key);
    if kind.is_block() {
        return match &r.data.state {
            StepState::Running { .. } if kind == NodeKind::ForEach => Some(format!(
                "▶ {lk} over {} items",
                r.data.info.items.unwrap_or(0)
            )),
            StepState::Running { .. } if kind == NodeKind::Repeat => {
                Some(format!("▶ {lk} pass {}", r.data.info.items.unwrap_or(1)))
            }
            StepState::Running { .. } => Some(format!(
                "▶ {lk} ({})",
                r.data.info.note.clone().unwrap_or_default()
            )),
            _ => describe(r, &lk),
        };
    }
    describe(r, &lk)
}

/// What a node's last line was about: its state and, for a repeat, its
/// pass (each pass is announced).
fn said_of(r: &NodeRecord) -> String {
    format!(
        "{}:{}",
        node_state(&r.data.state),
        r.data.info.items.unwrap_or(0)
    )
}

/// One line per event, for logs and pipes.
pub struct Plain {
    start: Instant,
    last: HashMap<(String, u32), String>,
    blocks: HashMap<(String, u32), Instant>,
    out: std::io::Stdout,
}

impl Plain {
    fn new() -> Plain {
        Plain {
            start: Instant::now(),
            last: HashMap::new(),
            blocks: HashMap::new(),
            out: std::io::stdout(),
        }
    }

    fn line(&mut self, s: &str) {
        let t = self.start.elapsed().as_secs_f64();
        crate::out::write(format_args!("[{t:>7.1}s] {s}\n"));
    }
}

impl Observer for Plain {
    fn changed(
        &mut self,
        root: &str,
        runs: &HashMap<&str, &RunState>,
        changed: &[(String, NodeRecord)],
    ) {
        for (run, r) in changed {
            let Some(state) = runs.get(run.as_str()) else {
                continue;
            };
            let key = (run.clone(), r.id.0);
            let said = said_of(r);
            let big = big_block(state, r.id);
            if let Some(b) = big {
                if matches!(r.data.state, StepState::Failed { .. })
                    && let Some(d) = describe(r, &label(run, root, &r.key))
                {
                    self.line(&d);
                }
                let bk = (run.clone(), b.0);
                let due = self
                    .blocks
                    .get(&bk)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(2));
                if due {
                    self.blocks.insert(bk, Instant::now());
                    let s = block_summary(state, b);
                    self.line(&label(run, root, &s));
                }
                continue;
            }
            if self.last.get(&key) == Some(&said) {
                continue;
            }
            if let Some(d) = plain_line(root, run, r) {
                self.last.insert(key, said);
                self.line(&d);
            }
        }
    }

    fn note(&mut self, msg: &str) {
        self.line(msg);
    }

    fn finished(&mut self, _: &RunState) {
        let _ = self.out.flush();
    }
}

/// The progress of a run another process drives (a server), from the node
/// records it publishes: the lines `--progress plain` prints, in every
/// mode but `none`. Without the run's template it cannot tell which
/// blocks are big for-each blocks, so every item of one gets its lines.
pub struct Followed {
    start: Instant,
    last: HashMap<(String, u32), String>,
    quiet: bool,
}

impl Followed {
    /// A view for `mode`: lines, or (`none`) nothing but notes on stderr.
    pub fn new(mode: Mode) -> Followed {
        Followed {
            start: Instant::now(),
            last: HashMap::new(),
            quiet: mode == Mode::None,
        }
    }

    fn line(&self, s: &str) {
        let t = self.start.elapsed().as_secs_f64();
        crate::out::write(format_args!("[{t:>7.1}s] {s}\n"));
    }

    /// Nodes of `run` (the root run `root`, or one of its sub-workflows'
    /// runs) changed; a record already told in its state says nothing.
    pub fn changed(&mut self, root: &str, run: &str, records: &[NodeRecord]) {
        for r in records {
            let key = (run.to_string(), r.id.0);
            let said = said_of(r);
            if self.last.get(&key) == Some(&said) {
                continue;
            }
            if let Some(d) = plain_line(root, run, r) {
                self.last.insert(key, said);
                if !self.quiet {
                    self.line(&d);
                }
            }
        }
    }

    /// Takes the records as told without printing them: a run followed
    /// from the middle shows what changes from there.
    pub fn seen(&mut self, run: &str, records: &[NodeRecord]) {
        for r in records {
            self.last.insert((run.to_string(), r.id.0), said_of(r));
        }
    }

    /// A note for people.
    pub fn note(&self, msg: &str) {
        if self.quiet {
            eprintln!("{msg}");
        } else {
            self.line(msg);
        }
    }
}

/// Nothing while running.
pub struct Quiet;

impl Observer for Quiet {
    fn changed(&mut self, _: &str, _: &HashMap<&str, &RunState>, _: &[(String, NodeRecord)]) {}
    fn note(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
    fn finished(&mut self, _: &RunState) {}
}

/// Live bars: a spinner per running step, a bar per for-each block.
pub struct Bars {
    mp: MultiProgress,
    steps: HashMap<(String, u32), ProgressBar>,
    blocks: HashMap<(String, u32), ProgressBar>,
    step_style: ProgressStyle,
    block_style: ProgressStyle,
}

impl Bars {
    fn new() -> Bars {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let step_style = ProgressStyle::with_template("{spinner:.cyan} {elapsed:>5} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let block_style = ProgressStyle::with_template(
            "{spinner:.cyan} {elapsed:>5} [{bar:30.cyan/blue}] {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Bars {
            mp,
            steps: HashMap::new(),
            blocks: HashMap::new(),
            step_style,
            block_style,
        }
    }

    fn print(&self, s: &str) {
        let _ = self.mp.println(s);
    }
}

impl Observer for Bars {
    fn changed(
        &mut self,
        root: &str,
        runs: &HashMap<&str, &RunState>,
        changed: &[(String, NodeRecord)],
    ) {
        for (run, r) in changed {
            let Some(state) = runs.get(run.as_str()) else {
                continue;
            };
            let key = (run.clone(), r.id.0);
            let kind = record_kind(r.kind);
            if big_block(state, r.id).is_some() {
                // Items of big blocks show in the block's bar; only their
                // failures get a line.
                if matches!(r.data.state, StepState::Failed { .. })
                    && let Some(d) = describe(r, &label(run, root, &r.key))
                {
                    self.print(&d);
                }
                continue;
            }
            if kind == NodeKind::ForEach {
                match &r.data.state {
                    StepState::Running { .. } => {
                        let bar = self.blocks.entry(key).or_insert_with(|| {
                            let pb = self
                                .mp
                                .add(ProgressBar::new(u64::from(r.data.info.items.unwrap_or(0))));
                            pb.set_style(self.block_style.clone());
                            pb.enable_steady_tick(Duration::from_millis(100));
                            pb
                        });
                        bar.set_message(label(run, root, &r.key));
                    }
                    s if s.is_terminal() => {
                        if let Some(pb) = self.blocks.remove(&key) {
                            pb.finish_and_clear();
                        }
                        if let Some(d) = describe(r, &label(run, root, &r.key)) {
                            self.print(&d);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if matches!(
                kind,
                NodeKind::Marker | NodeKind::Noop | NodeKind::Repeat | NodeKind::When
            ) {
                if matches!(r.data.state, StepState::Failed { .. })
                    && let Some(d) = describe(r, &label(run, root, &r.key))
                {
                    self.print(&d);
                }
                continue;
            }
            match &r.data.state {
                StepState::Running { attempt, .. } => {
                    let pb = self.steps.entry(key).or_insert_with(|| {
                        let pb = self.mp.add(ProgressBar::new_spinner());
                        pb.set_style(self.step_style.clone());
                        pb.enable_steady_tick(Duration::from_millis(100));
                        pb
                    });
                    let mut msg = label(run, root, &r.key);
                    if *attempt > 1 {
                        msg.push_str(&format!(" (attempt {attempt})"));
                    }
                    if let Some(p) = &r.data.info.progress {
                        if let Some(pct) = p.percent {
                            msg.push_str(&format!(" {pct:.0}%"));
                        }
                        if let Some(m) = &p.message {
                            msg.push_str(&format!(" {m}"));
                        }
                    } else if let Some(n) = &r.data.info.note {
                        msg.push_str(&format!(" {n}"));
                    }
                    pb.set_message(msg);
                }
                s => {
                    if let Some(pb) = self.steps.remove(&key) {
                        pb.finish_and_clear();
                    }
                    if (s.is_terminal() || matches!(s, StepState::Retrying { .. }))
                        && let Some(d) = describe(r, &label(run, root, &r.key))
                    {
                        self.print(&d);
                    }
                }
            }
        }
        for ((run, b), pb) in &self.blocks {
            if let Some(state) = runs.get(run.as_str()) {
                let (done, failed, total) = state.child_counts(NodeId(*b));
                pb.set_length(u64::from(total));
                pb.set_position(u64::from(done));
                if failed > 0 {
                    pb.set_message(format!(
                        "{} ({failed} failed)",
                        label(run, root, &state.key(NodeId(*b)))
                    ));
                }
            }
        }
    }

    fn note(&mut self, msg: &str) {
        self.print(msg);
    }

    fn finished(&mut self, _: &RunState) {
        for (_, pb) in self.steps.drain().chain(self.blocks.drain()) {
            pb.finish_and_clear();
        }
        let _ = self.mp.clear();
    }
}

/// The final report of a run, for stdout.
pub fn summary(state: &RunState, elapsed: Duration) -> String {
    let mut counts: HashMap<NodeState, u32> = HashMap::new();
    for (id, n) in state.nodes() {
        let kind = node_kind(state.tnode(id));
        if kind.is_block() || kind == NodeKind::Marker {
            continue;
        }
        *counts.entry(node_state(&n.state)).or_default() += 1;
    }
    report(&Ending {
        id: &state.id,
        status: state.status,
        elapsed,
        counts: &counts,
        message: state.data.message.as_deref(),
        outputs: state.data.outputs.as_ref(),
    })
}

/// How a run ended, for its final report.
pub struct Ending<'a> {
    /// The run.
    pub id: &'a str,
    /// Its status.
    pub status: RunStatus,
    /// How long it took.
    pub elapsed: Duration,
    /// Its steps (not blocks, not markers) by state.
    pub counts: &'a HashMap<NodeState, u32>,
    /// Why it ended as it did.
    pub message: Option<&'a str>,
    /// The workflow's outputs.
    pub outputs: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The final report of a run, for stdout: the same text whoever drove it.
pub fn report(e: &Ending<'_>) -> String {
    let counts = e.counts;
    let mut parts: Vec<String> = [
        NodeState::Succeeded,
        NodeState::Memoized,
        NodeState::Failed,
        NodeState::Skipped,
        NodeState::Cancelled,
        NodeState::Running,
        NodeState::Pending,
    ]
    .iter()
    .filter_map(|s| counts.get(s).map(|c| format!("{c} {s}")))
    .collect();
    if parts.is_empty() {
        parts.push("no steps".into());
    }
    let verb = match e.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "was cancelled",
        RunStatus::Running => "is still running",
    };
    let mut s = format!(
        "run {} {verb} in {} ({})",
        e.id,
        fmt_duration(e.elapsed.as_millis() as u64),
        parts.join(", ")
    );
    if let Some(m) = e.message {
        s.push_str(&format!("\n  {m}"));
    }
    if let Some(outs) = e.outputs {
        for (k, v) in outs {
            s.push_str(&format!(
                "\n  output {k} = {}",
                kaon_engine::eval::to_text(v)
            ));
        }
    }
    s
}
