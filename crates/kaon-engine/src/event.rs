//! Events (facts, past tense) the engine is fed and actions (orders) it
//! returns.

use std::path::PathBuf;

use kaon_model::spec::RenderedSparkStep;
use kaon_model::types::Type;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::state::{KillReason, Millis, RunStatus};

/// A node of a run: an index into the run's node arena. Stable across
/// restarts (the arena is rebuilt in the order it was first built).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How an attempt's process ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this status.
    Code {
        /// The status.
        code: i32,
    },
    /// A signal ended it.
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// It ended unsuccessfully, and the executor knows why (a Spark
    /// driver the master reports FAILED or ERROR, with its error).
    Failed {
        /// The exit status, when there is one.
        code: Option<i32>,
        /// The cause, for people.
        message: String,
    },
    /// It is gone and how it ended is unknown (kaon was not watching).
    Lost {
        /// What was found.
        message: String,
    },
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The run was created; start it.
    RunStarted,
    /// The run was reloaded after kaon restarted; re-issue what is owed.
    Recovered,
    /// Resources were granted to a ready step: launch it.
    StepAdmitted {
        /// The step.
        node: NodeId,
    },
    /// The executor launched (or found) the attempt.
    StepLaunched {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// How to find it again.
        handle: Value,
        /// The memo key it runs under, when cached.
        memo_key: Option<String>,
    },
    /// The answer to [`Action::LookupMemo`]: no earlier step run stands in
    /// for this attempt; it runs under `key` (none when the step's key
    /// could not be made, e.g. memoization is off in this process).
    MemoMiss {
        /// The step.
        node: NodeId,
        /// The attempt that was being launched.
        attempt: u32,
        /// The memo key it runs under.
        key: Option<String>,
    },
    /// The answer to [`Action::LookupMemo`]: an earlier step run with the
    /// same memo key had the result, and its outputs are back in place.
    MemoHit {
        /// The step.
        node: NodeId,
        /// The attempt that was being launched.
        attempt: u32,
        /// The memo key.
        key: String,
        /// That step run: `<run>/<step key>`.
        from: String,
        /// Its value outputs (file and dir outputs as paths).
        outputs: Map<String, Value>,
        /// Its artifacts, linked into this run.
        artifacts: Vec<OutputArtifact>,
    },
    /// The executor could not launch the attempt.
    LaunchFailed {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// Why.
        message: String,
        /// True when the platform is to blame (not the step's settings).
        platform: bool,
    },
    /// The step reported progress.
    StepProgressed {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// Percent complete.
        percent: Option<f32>,
        /// Status message.
        message: Option<String>,
    },
    /// The attempt's process ended.
    StepExited {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// How.
        exit: Exit,
        /// Outputs it handed back (file/dir outputs as paths that exist).
        outputs: Map<String, Value>,
        /// Problems the executor found with the outputs (a missing file).
        problems: Vec<String>,
        /// Artifacts stored from the attempt's outputs and `kaon artifact put`.
        artifacts: Vec<OutputArtifact>,
        /// Artifacts it fetched with `kaon artifact get`.
        reads: Vec<InputRef>,
    },
    /// `kaon kill RUN STEP`: stop the running attempts of a step (every
    /// instance whose key is `step` or starts with `step[`), and mark them
    /// cancelled once they have ended.
    KillRequested {
        /// The step's name or an instance key.
        step: String,
        /// Why.
        reason: String,
    },
    /// A timer set by [`Action::SetTimer`] fired.
    TimerFired {
        /// The step.
        node: NodeId,
        /// The attempt the timer was set for.
        attempt: u32,
        /// Which timer.
        timer: Timer,
    },
    /// `kaon signal RUN NAME --value V`.
    SignalReceived {
        /// The signal.
        name: String,
        /// Its value (`null` when none was given).
        value: Value,
    },
    /// A child run (sub-workflow) ended.
    ChildRunFinished {
        /// The sub-workflow step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// How it ended.
        status: RunStatus,
        /// Its workflow outputs.
        outputs: Map<String, Value>,
        /// Why, when it did not succeed.
        message: Option<String>,
    },
    /// `kaon cancel RUN` (or Ctrl-C).
    CancelRequested {
        /// Why, for people.
        reason: String,
    },
}

/// Which timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// A retry's backoff ended.
    Retry,
    /// The attempt's timeout passed.
    Timeout,
}

/// Something the driver must do, after committing the transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The step is ready: admit it when resources allow, then feed
    /// [`Event::StepAdmitted`].
    Enqueue {
        /// The step.
        node: NodeId,
        /// CPU cores it needs.
        cpus: f64,
        /// Memory it needs, in bytes.
        memory: u64,
    },
    /// Launch an attempt. With `adopt`, a process for this attempt may
    /// already exist (kaon died while launching): find it instead of
    /// launching a second one.
    Launch(Box<LaunchOrder>),
    /// Before launching a cached step: compute the attempt's memo key and
    /// look for an earlier step run with the result (not with `adopt`: a
    /// process may exist already), putting its outputs back in place.
    /// Answered by [`Event::MemoHit`] or [`Event::MemoMiss`]; after a miss
    /// the engine orders the [`Action::Launch`] of the same order.
    LookupMemo(Box<LaunchOrder>),
    /// Find a running attempt again after a restart.
    Reattach {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// The stored handle.
        handle: Value,
        /// The order it was launched with (outputs to collect).
        order: Box<LaunchOrder>,
    },
    /// Stop an attempt; its exit comes back as [`Event::StepExited`].
    Kill {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// The handle.
        handle: Value,
        /// Why.
        reason: KillReason,
    },
    /// Feed [`Event::TimerFired`] at `at`.
    SetTimer {
        /// The step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// When.
        at: Millis,
        /// Which.
        timer: Timer,
    },
    /// Start (or, when it exists, resume) a child run for a sub-workflow
    /// step; its end comes back as [`Event::ChildRunFinished`].
    StartChildRun {
        /// The sub-workflow step.
        node: NodeId,
        /// The attempt.
        attempt: u32,
        /// The child run's id (derived, so a restart finds the same child).
        child: String,
        /// The step's name (its child workflow is `children[step]`).
        step: String,
        /// The child's parameter values.
        params: Map<String, Value>,
    },
    /// Cancel a child run.
    CancelChildRun {
        /// The child run.
        child: String,
    },
    /// The run ended.
    RunFinished {
        /// How.
        status: RunStatus,
    },
}

/// An artifact a step run wrote (or, memoized, reuses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputArtifact {
    /// The output's name (or the name given to `kaon artifact put`).
    pub name: String,
    /// The artifact's id.
    pub id: String,
    /// Its content digest (`blake3:<hex>`).
    pub digest: String,
    /// `file`, `dir` or `reference`.
    pub kind: String,
    /// Bytes.
    pub size: u64,
    /// Files.
    pub files: u64,
    /// Media type.
    pub media_type: String,
    /// Where the step wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a memoized step: the artifact reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memoized_from: Option<String>,
}

/// An artifact a step reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputRef {
    /// How the step reaches it: `step.output`, or `get` for `kaon artifact get`.
    pub source: String,
    /// The artifact's id.
    pub artifact: String,
    /// Its content digest.
    pub digest: String,
}

/// What a memo key is computed from besides the launch order's command,
/// environment and outputs. Absent when the step is not cached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoSpec {
    /// The step kind.
    pub kind: String,
    /// `cache_version`, rendered ("" when unset).
    pub cache_version: String,
    /// `code` entries and the workflow's `code`, as absolute paths.
    pub code: Vec<PathBuf>,
    /// Other settings of the kind that change results, as JSON.
    pub config: Value,
    /// False under `kaon run --no-cache`: compute and record the key, but
    /// run the step whatever earlier runs left.
    pub reuse: bool,
}

/// Everything an executor needs to run one attempt of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchOrder {
    /// The run.
    pub run: String,
    /// The node.
    pub node: NodeId,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// The step's name.
    pub step: String,
    /// The instance's key, e.g. `train[reg=US]`.
    pub key: String,
    /// What to run.
    pub invocation: Invocation,
    /// Environment variables to add (step `env` and `KAON_*`).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub workdir: PathBuf,
    /// Declared outputs.
    pub outputs: Vec<OutputSpec>,
    /// CPU cores it was admitted with.
    pub cpus: f64,
    /// Memory it was admitted with, in bytes.
    pub memory: u64,
    /// True when a process for this attempt may already exist.
    pub adopt: bool,
    /// Artifacts the step reads through its references, sorted.
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    /// Memoization: `None` when the step or the run turned caching off.
    #[serde(default)]
    pub memo: Option<MemoSpec>,
}

/// What a step runs, with every reference substituted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "program", rename_all = "snake_case")]
pub enum Invocation {
    /// A program and its arguments.
    Argv {
        /// `argv[0]` first.
        argv: Vec<String>,
    },
    /// A script for `sh -c`.
    Script {
        /// The script.
        script: String,
    },
    /// A Spark application. Where and how it runs (which runtime, which
    /// master) is the executor's to decide, from kaon's configuration.
    Spark {
        /// The step as the workflow defines it, with every template
        /// rendered and every local path made absolute.
        step: Box<RenderedSparkStep>,
        /// The step's placement constraints, canonical text; none when it
        /// has none.
        constraints: Option<String>,
    },
    /// A step kind this build cannot execute yet.
    Unsupported {
        /// The kind.
        kind: String,
    },
}

/// A declared output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(with = "type_text")]
    pub ty: Type,
    /// For file/dir outputs: where the step writes it (absolute).
    pub path: Option<PathBuf>,
}

mod type_text {
    use kaon_model::types::Type;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Type, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Type, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("bad type {s}")))
    }
}
