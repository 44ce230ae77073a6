//! Step states and the facts kept with them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch: the engine's only notion of time.
pub type Millis = u64;

/// The state of one node (a step instance or a block) in a run.
///
/// ```text
///  Pending ──▶ Waiting ──▶ Ready ──▶ Starting ──▶ Running ──▶ Succeeded
///     │  (some preds done)    ▲                      │
///     │                       └──── Retrying ◀───────┤ (failure, budget left)
///     │                                              ├──▶ Failed
///     └──▶ Skipped (upstream failed, branch not      └──▶ Cancelled
///          taken, run stopping)
/// ```
///
/// A failed node, and what was skipped because of it, goes back to
/// `Pending` only when retried by hand ([`crate::RunState::retry`]).
///
/// `Starting` is committed before the executor is asked to launch, and
/// `Running` carries the executor's handle (pid and start time, a Spark
/// submission id), so that a restarted kaon re-attaches instead of
/// launching twice. Blocks and wait steps are `Running` without a handle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    /// Nothing upstream has finished yet.
    Pending,
    /// Some upstream branches finished, others have not (the seed's "blue").
    Waiting,
    /// Everything upstream succeeded; waiting for resources.
    Ready,
    /// Launch ordered and committed; no handle yet.
    Starting {
        /// The attempt being launched (1 for the first).
        attempt: u32,
    },
    /// Executing.
    Running {
        /// The attempt.
        attempt: u32,
        /// What the executor needs to find it again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handle: Option<Value>,
    },
    /// Failed; the next attempt starts at `at`.
    Retrying {
        /// The attempt that will run next.
        attempt: u32,
        /// When.
        at: Millis,
        /// Why the previous attempt failed.
        last: Failure,
    },
    /// Done, with its outputs.
    Succeeded,
    /// Done without running: an earlier step run with the same memo key
    /// had the result, and its outputs were linked into this run.
    Memoized {
        /// That step run: `<run>/<step key>`.
        from: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        failure: Failure,
    },
    /// Never ran.
    Skipped {
        /// Why not.
        reason: SkipReason,
    },
    /// Stopped by a cancel.
    Cancelled,
}

impl StepState {
    /// True when the node will not change again (short of a retry by
    /// hand).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            StepState::Succeeded
                | StepState::Memoized { .. }
                | StepState::Failed { .. }
                | StepState::Skipped { .. }
                | StepState::Cancelled
        )
    }

    /// True when what follows may run: succeeded, or a branch not taken.
    pub fn lets_successors_run(&self) -> bool {
        matches!(
            self,
            StepState::Succeeded
                | StepState::Memoized { .. }
                | StepState::Skipped {
                    reason: SkipReason::ConditionFalse
                }
        )
    }

    /// True while an attempt is under way (launching or running).
    pub fn is_active(&self) -> bool {
        matches!(self, StepState::Starting { .. } | StepState::Running { .. })
    }

    /// The attempt under way, if any.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            StepState::Starting { attempt } | StepState::Running { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    /// The state's name as stored and shown: `running`, `succeeded`, ...
    pub fn name(&self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Waiting => "waiting",
            StepState::Ready => "ready",
            StepState::Starting { .. } => "starting",
            StepState::Running { .. } => "running",
            StepState::Retrying { .. } => "retrying",
            StepState::Succeeded => "succeeded",
            StepState::Memoized { .. } => "memoized",
            StepState::Failed { .. } => "failed",
            StepState::Skipped { .. } => "skipped",
            StepState::Cancelled => "cancelled",
        }
    }
}

/// Why an attempt failed; the class decides which retry budget pays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Who is to blame.
    pub class: FailureClass,
    /// What happened, for people.
    pub message: String,
    /// The exit status, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl Failure {
    /// A failure of the user's code or data.
    pub fn user(message: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::User,
            message: message.into(),
            exit_code: None,
        }
    }

    /// A failure of the platform (lost process, killed worker).
    pub fn platform(message: impl Into<String>) -> Failure {
        Failure {
            class: FailureClass::Platform,
            message: message.into(),
            exit_code: None,
        }
    }
}

/// Who is to blame for a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// Non-zero exit, bad outputs: paid from the step's `retries`.
    User,
    /// The attempt ran past its `timeout`: paid from the step's `retries`.
    Timeout,
    /// Lost process, killed by the system, launch error of the platform:
    /// paid from the run's platform budget.
    Platform,
}

/// Why a node never ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum SkipReason {
    /// An upstream node failed.
    UpstreamFailed {
        /// The node that failed (or was skipped) first.
        upstream: String,
    },
    /// A `when` condition was false and there is no `otherwise`.
    ConditionFalse,
    /// The run stopped launching after a failure (`on_failure = stop`).
    RunStopped,
}

/// Why kaon asked an attempt to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillReason {
    /// The run was cancelled.
    Cancel,
    /// The attempt ran past the step's timeout.
    Timeout,
}

/// Progress a step reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Percent complete, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f32>,
    /// The latest status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Everything stored about a node besides its state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Attempts started so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Failures paid from the step's `retries`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub user_failures: u32,
    /// Failures paid from the platform budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub platform_failures: u32,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Millis>,
    /// When the current (or last) attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started: Option<Millis>,
    /// When the node reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Millis>,
    /// The exit status of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Output values (file and dir outputs as paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
    /// The latest progress report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// A stop kaon asked for and has not yet seen happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillReason>,
    /// For blocks: items (for-each) or passes (repeat) so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u32>,
    /// A note for people: what a wait step waits for, why a loop ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Artifacts the step wrote (or, memoized, reuses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<crate::event::OutputArtifact>,
    /// Artifacts the step read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<crate::event::InputRef>,
    /// The memo key the current (or last) attempt ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo_key: Option<String>,
    /// The attempts that ended, oldest first, one record each: failed
    /// (then retried or not), succeeded, cancelled. A memoized step has
    /// none (it did not run), nor has a step whose first attempt
    /// succeeded (its own fields say it all), and a retry by hand keeps
    /// the earlier ones.
    /// At most [`MAX_HISTORY`], the latest: a step retried without end
    /// must not grow its stored data without bound. See
    /// [`NodeInfo::record_attempt`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptRecord>,
}

/// How many attempt records a node keeps ([`NodeInfo::history`]).
pub const MAX_HISTORY: usize = 50;

impl NodeInfo {
    /// Appends the record of an attempt that ended, dropping the oldest
    /// beyond [`MAX_HISTORY`]. An attempt already recorded (the last
    /// record has its number) is not recorded again: the first record of
    /// an attempt, made where its exit is known best, stands.
    ///
    /// A first attempt that succeeded leaves no record: the node's own
    /// `started`, `finished` and `exit_code` are that attempt, and a sweep
    /// of 30,000 items would otherwise carry 30,000 copies of them to every
    /// page that shows it. A history, once begun, holds every attempt.
    pub fn record_attempt(&mut self, r: AttemptRecord) {
        if self.history.last().is_some_and(|l| l.attempt == r.attempt) {
            return;
        }
        if self.history.is_empty() && r.attempt == 1 && r.state == AttemptOutcome::Succeeded {
            return;
        }
        self.history.push(r);
        if self.history.len() > MAX_HISTORY {
            let extra = self.history.len() - MAX_HISTORY;
            self.history.drain(..extra);
        }
    }
}

/// One attempt of a step that ended: when, its exit, and why it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Millis>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Millis>,
    /// Its exit status, when the process exited with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// How it ended.
    pub state: AttemptOutcome,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed (and was retried, or the step failed).
    Failed,
    /// It was stopped by a cancel.
    Cancelled,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The stored form of a node: its state and its facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeData {
    /// The state.
    #[serde(flatten)]
    pub state: StepState,
    /// The facts.
    #[serde(flatten)]
    pub info: NodeInfo,
}

/// The state of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps are running or will run.
    Running,
    /// Every step succeeded (or was skipped by a false condition).
    Succeeded,
    /// A step failed.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// The name as stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }

    /// True once the run has ended.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

/// What a run does after a step fails for good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Launch nothing new; let running steps finish; end the run failed.
    Stop,
    /// Run everything that does not depend on the failure, then end failed.
    #[default]
    Continue,
}

/// Run-wide settings the engine needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// After a failure.
    pub on_failure: FailurePolicy,
    /// Attempts lost to platform failures that are retried, per step.
    pub platform_retries: u32,
    /// Delay before the first retry when the step sets none, in ms.
    pub retry_backoff_ms: u64,
    /// Longest retry delay when the step sets none, in ms.
    pub retry_backoff_max_ms: u64,
    /// `kaon run --no-cache`: no step reuses an earlier result (results
    /// are still recorded for later runs).
    #[serde(default)]
    pub no_cache: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            on_failure: FailurePolicy::Continue,
            platform_retries: 3,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 300_000,
            no_cache: false,
        }
    }
}

/// Run-level facts that change as the run goes and are stored with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    /// Why the run was cancelled, once it was asked to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<String>,
    /// True once a failure under `on_failure = stop` stopped launching.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
    /// Signals received, latest value per name (a signal stays sent).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub signals: Map<String, Value>,
    /// The workflow's outputs, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
    /// Why the run ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
