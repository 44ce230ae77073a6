//! The engine's errors.

use kaon_model::expr::{Expr, Ref};
use kaon_model::types::Type;
use serde_json::Value;

use crate::eval::show;
use crate::event::NodeId;
use crate::state::RunStatus;

/// What can go wrong in the engine; every case is a bug in the caller or a
/// damaged store, never a step failing (that is a state, not an error).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An event named a node the run does not have.
    #[error("run {run} has no node {node}")]
    UnknownNode {
        /// The run.
        run: String,
        /// The node.
        node: NodeId,
    },
    /// The stored run does not fit the workflow it names.
    #[error("run {run} cannot be restored: {reason}")]
    Restore {
        /// The run.
        run: String,
        /// What does not fit.
        reason: String,
    },
}

/// Why a step of a run cannot be retried ([`crate::RunState::retry`]):
/// the run's state does not allow what the caller asked for. Nothing was
/// changed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RetryError {
    /// The run succeeded or was cancelled: only a failed run (or one still
    /// running) has steps to retry.
    #[error("{}", ended(.run, *.status))]
    RunEnded {
        /// The run.
        run: String,
        /// How it ended.
        status: RunStatus,
    },
    /// The run is being cancelled.
    #[error("run {run} is being cancelled; a step cannot be retried while it stops")]
    Cancelling {
        /// The run.
        run: String,
    },
    /// No node of the run has this name or instance key, and the workflow
    /// has no step of this name.
    #[error("run {run} has no step or step instance `{step}`")]
    UnknownStep {
        /// The run.
        run: String,
        /// The name or key asked for.
        step: String,
    },
    /// The step exists but none of its instances failed.
    #[error("`{step}` did not fail in run {run} ({}); only a failed step can be retried", states_text(.states))]
    NotFailed {
        /// The run.
        run: String,
        /// The name or key asked for.
        step: String,
        /// Each instance's key and state name (none: it has not run).
        states: Vec<(String, String)>,
    },
    /// A block that failed on its own (a condition, a list, `max` passes),
    /// not because a step inside it did: a retry would fail the same way.
    #[error(
        "`{step}` failed on its own, not because a step inside it failed: {message}; retrying it cannot change that"
    )]
    NoFailedStep {
        /// The run.
        run: String,
        /// The block's key.
        step: String,
        /// Its failure.
        message: String,
    },
}

impl RetryError {
    /// True when the step named is not in the run at all (a server answers
    /// 404); every other case is a conflict with the run's state.
    pub fn is_unknown_step(&self) -> bool {
        matches!(self, RetryError::UnknownStep { .. })
    }
}

fn ended(run: &str, status: RunStatus) -> String {
    match status {
        RunStatus::Succeeded => {
            format!("run {run} succeeded: it has no failed step to retry")
        }
        RunStatus::Cancelled => format!(
            "run {run} was cancelled: a cancelled run is not retried (start a new run; steps whose results exist are memoized)"
        ),
        other => format!("run {run} is {}: it cannot be retried", other.name()),
    }
}

fn states_text(states: &[(String, String)]) -> String {
    const SHOWN: usize = 5;
    match states {
        [] => "it has not run".to_string(),
        [(_, state)] => format!("it is {state}"),
        _ => {
            let mut parts: Vec<String> = states
                .iter()
                .take(SHOWN)
                .map(|(key, state)| format!("{key} is {state}"))
                .collect();
            if states.len() > SHOWN {
                parts.push(format!("{} more", states.len() - SHOWN));
            }
            parts.join(", ")
        }
    }
}

/// Why a reference, a condition or a template could not be evaluated for a
/// node, or a value does not fit its declared type.
///
/// Unlike [`EngineError`], this is about the workflow, not the caller: the
/// engine turns it into the failure of the step or block that needed the
/// value, and its text (`Display`) is that failure's message.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// `${params.NAME}` names a parameter the run has no value for.
    #[error("{reference}: no value for parameter `{name}`")]
    UnknownParam {
        /// The reference read.
        reference: Ref,
        /// The parameter.
        name: String,
    },
    /// `${run.FIELD}` names a field runs do not have.
    #[error("{reference}: unknown run field `{field}`")]
    UnknownRunField {
        /// The reference read.
        reference: Ref,
        /// The field.
        field: String,
    },
    /// `${VAR}` names a loop variable no block around the reader binds.
    #[error("{reference}: no loop variable `{var}` here")]
    UnknownLoopVar {
        /// The reference read.
        reference: Ref,
        /// The variable.
        var: String,
    },
    /// `${STEP.OUTPUT}` names a step the flow does not run.
    #[error("{reference}: no step `{step}` in the flow")]
    UnknownStep {
        /// The reference read.
        reference: Ref,
        /// The step.
        step: String,
    },
    /// The step is in the flow but not in a block around the reader.
    #[error("{reference}: `{step}` is not reachable from here")]
    Unreachable {
        /// The reference read.
        reference: Ref,
        /// The step.
        step: String,
    },
    /// `.FIELD` into an object that lacks it.
    #[error("{reference}: the value has no field `{field}`")]
    MissingField {
        /// The reference read.
        reference: Ref,
        /// The field.
        field: String,
    },
    /// `.FIELD` into a list, where only a number can index.
    #[error("{reference}: `{index}` indexes a list but is not a number")]
    NotAnIndex {
        /// The reference read.
        reference: Ref,
        /// The segment that is not a number.
        index: String,
    },
    /// `.N` past the end of a list.
    #[error("{reference}: the list has no item {index}")]
    IndexOutOfRange {
        /// The reference read.
        reference: Ref,
        /// The index asked for.
        index: usize,
        /// How many items the list has.
        len: usize,
    },
    /// `.FIELD` into a value that is neither an object nor a list.
    #[error("{reference}: {} has no field `{field}`", show(.value))]
    NoFields {
        /// The reference read.
        reference: Ref,
        /// The value reached so far.
        value: Box<Value>,
        /// The field.
        field: String,
    },
    /// An ordering (`<`, `>=`, ...) between values that have none.
    #[error("cannot compare {} with {} in `{expr}`", show(.left), show(.right))]
    Incomparable {
        /// The comparison.
        expr: Box<Expr>,
        /// Its left side's value.
        left: Box<Value>,
        /// Its right side's value.
        right: Box<Value>,
    },
    /// A condition (or an operand of `!`, `&&`, `||`) that is not a boolean.
    #[error("`{expr}` is {}, not true or false", show(.value))]
    NotABool {
        /// The expression.
        expr: Box<Expr>,
        /// Its value.
        value: Box<Value>,
    },
    /// A for-each binding whose list is some other value.
    #[error("the list for `{var}` is {}, not a list", show(.value))]
    NotAList {
        /// The loop variable.
        var: String,
        /// The value found instead.
        value: Box<Value>,
    },
    /// A value of another type than declared, not given as text.
    #[error("expected {expected:#}, got {}", show(.value))]
    TypeMismatch {
        /// The declared type.
        expected: Type,
        /// The value given.
        value: Box<Value>,
    },
    /// Text that does not parse as the declared type.
    #[error("expected {expected:#}, got {text:?}")]
    Unparsable {
        /// The declared type.
        expected: Type,
        /// The text given.
        text: String,
    },
    /// A parameter a sub-workflow step passes to its child does not fit.
    #[error("parameter `{name}`: {error}")]
    Param {
        /// The child's parameter.
        name: String,
        /// Why it does not fit.
        error: Box<EvalError>,
    },
    /// A step's launch or parameters were asked for a node that is not a
    /// step (a caller's bug).
    #[error("node {node} is not a step")]
    NotAStep {
        /// The node.
        node: NodeId,
    },
    /// A child run's parameters were asked for a step of another kind (a
    /// caller's bug).
    #[error("`{step}` is not a sub-workflow step")]
    NotASubWorkflow {
        /// The step.
        step: String,
    },
}
