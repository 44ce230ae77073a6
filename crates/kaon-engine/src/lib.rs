//! kaon's scheduler as a pure state machine.
//!
//! [`RunState::apply`] takes an [`Event`] (a fact: a step exited, a timer
//! fired, a signal arrived) and the current time, changes the run's state,
//! and returns [`Action`]s (orders: launch this, kill that, wake me at).
//! There is no I/O, no clock and no async here: the driver persists what
//! changed ([`RunState::take_delta`]) before it carries the actions out, and
//! tests feed events and assert on actions.
//!
//! The engine expands for-each blocks when their list is known (lists may
//! come from upstream outputs), joins branches, evaluates repeat and `when`
//! conditions, starts sub-workflows as child runs, parks wait steps until a
//! signal, and retries failed attempts with backoff, with separate budgets
//! for failures of the step and of the platform. A step that failed for
//! good can be retried by hand ([`RunState::retry`]).

pub mod error;
pub mod eval;
pub mod event;
pub mod program;
pub mod retry;
pub mod run;
pub mod state;

pub use error::{EngineError, EvalError, RetryError};
pub use event::{
    Action, Event, Exit, InputRef, Invocation, LaunchOrder, MemoSpec, NodeId, OutputArtifact,
    OutputSpec, Timer,
};
pub use program::Program;
pub use run::{Delta, NodeRecord, RunState, ScopeRecord};
pub use state::{
    AttemptOutcome, AttemptRecord, Failure, FailureClass, FailurePolicy, KillReason, Millis,
    NodeData, NodeInfo, RunData, RunOptions, RunStatus, SkipReason, StepState,
};
