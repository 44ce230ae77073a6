//! Between the engine's records and the store's rows: a new run's row, a
//! run's state rebuilt from its rows, and the batch one tick commits; and
//! the engine's statuses, states and kinds as the store's typed columns
//! ([`kaon_store::row`]), which name the same things in the same text.

use std::sync::Arc;

use kaon_engine::program::{TKind, TNode};
use kaon_engine::{
    Delta, Millis, NodeData, NodeId, NodeRecord, Program, RunData, RunOptions, RunState, RunStatus,
    ScopeRecord, StepState,
};
use kaon_model::Validated;
use kaon_store::row::{self, NodeKind, NodeState};
use kaon_store::{
    ArtifactRow, Batch, MemoRow, NodeRow, ReadRow, RunRow, RunUpdate, ScopeRow, StateStore,
};
use serde_json::{Map, Value};

use crate::error::RuntimeError;
use crate::owner::{base_dir, workflow_digest};

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
        status: row::RunStatus::Running,
        data: "{}".into(),
        created_ms: now as i64,
        finished_ms: None,
        owner: Some(owner.to_string()),
        heartbeat_ms: Some(now as i64),
    }
}

/// Rebuilds a run's state from the store, with its parameters as given
/// (the stored ones have their secrets sealed).
pub async fn load_state<S: StateStore + ?Sized>(
    store: &S,
    row: &RunRow,
    validated: Arc<Validated>,
    params: Map<String, Value>,
) -> Result<RunState, RuntimeError> {
    let damaged = |what: String| {
        let run = row.id.clone();
        move |source| RuntimeError::Damaged { run, what, source }
    };
    let options: RunOptions = serde_json::from_str(&row.options).unwrap_or_default();
    let data: RunData = serde_json::from_str(&row.data).unwrap_or_default();
    let status = engine_status(row.status);
    let mut scopes = Vec::new();
    for s in store
        .scopes(&row.id)
        .await
        .map_err(RuntimeError::store(format!("cannot read run {}", row.id)))?
    {
        scopes.push(ScopeRecord {
            id: s.id,
            tmpl: s.tmpl,
            parent: s.parent,
            index: s.index,
            vars: serde_json::from_str(&s.vars).map_err(damaged(format!("scope {}", s.id)))?,
        });
    }
    let mut nodes = Vec::new();
    for n in store
        .nodes(&row.id)
        .await
        .map_err(RuntimeError::store(format!("cannot read run {}", row.id)))?
    {
        let d: NodeData =
            serde_json::from_str(&n.data).map_err(damaged(format!("node {} ({})", n.id, n.key)))?;
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
        update: d.run.as_ref().map(|(status, data)| RunUpdate {
            status: store_status(*status),
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
            finished_ms: status.is_terminal().then_some(now as i64),
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
        kind: record_kind(n.kind),
        state: node_state(&n.data.state),
        attempt: n.data.info.attempts,
        started_ms: n.data.info.started.map(|t| t as i64),
        finished_ms: n.data.info.finished.map(|t| t as i64),
        data: serde_json::to_string(&n.data).unwrap_or_else(|_| "{}".into()),
    }
}

/// A run's status as the store keeps it.
pub fn store_status(s: RunStatus) -> row::RunStatus {
    match s {
        RunStatus::Running => row::RunStatus::Running,
        RunStatus::Succeeded => row::RunStatus::Succeeded,
        RunStatus::Failed => row::RunStatus::Failed,
        RunStatus::Cancelled => row::RunStatus::Cancelled,
    }
}

/// A stored run status as the engine's.
pub fn engine_status(s: row::RunStatus) -> RunStatus {
    match s {
        row::RunStatus::Running => RunStatus::Running,
        row::RunStatus::Succeeded => RunStatus::Succeeded,
        row::RunStatus::Failed => RunStatus::Failed,
        row::RunStatus::Cancelled => RunStatus::Cancelled,
    }
}

/// A node's state as the store keeps it: its name, without its facts.
pub fn node_state(s: &StepState) -> NodeState {
    match s {
        StepState::Pending => NodeState::Pending,
        StepState::Waiting => NodeState::Waiting,
        StepState::Ready => NodeState::Ready,
        StepState::Starting { .. } => NodeState::Starting,
        StepState::Running { .. } => NodeState::Running,
        StepState::Retrying { .. } => NodeState::Retrying,
        StepState::Succeeded => NodeState::Succeeded,
        StepState::Memoized { .. } => NodeState::Memoized,
        StepState::Failed { .. } => NodeState::Failed,
        StepState::Skipped { .. } => NodeState::Skipped,
        StepState::Cancelled => NodeState::Cancelled,
    }
}

/// The stored kind of a step of this kind.
pub fn step_kind(k: TKind) -> NodeKind {
    match k {
        TKind::Marker => NodeKind::Marker,
        TKind::Noop => NodeKind::Noop,
        TKind::Command => NodeKind::Command,
        TKind::Spark => NodeKind::Spark,
        TKind::Wait => NodeKind::Wait,
        TKind::SubWorkflow => NodeKind::SubWorkflow,
    }
}

/// The stored kind of a template node.
pub fn node_kind(t: &TNode) -> NodeKind {
    match t {
        TNode::Step { kind, .. } => step_kind(*kind),
        TNode::ForEach { .. } => NodeKind::ForEach,
        TNode::Repeat { .. } => NodeKind::Repeat,
        TNode::When { .. } => NodeKind::When,
    }
}

/// The stored kind of a node record, which names its kind as
/// [`TNode::kind_name`] does. The engine's names and the store's texts are
/// one set (the tests below check every one), so the fallback is never
/// taken; it exists because a record carries a name, not a type, and
/// writing a batch must not fail. Were the engine to add a kind without the
/// store, its nodes would be listed as `noop` (their state and facts, in
/// the row's data, stay whole), and debug builds stop here.
pub fn record_kind(name: &str) -> NodeKind {
    match name.parse() {
        Ok(k) => k,
        Err(e) => {
            debug_assert!(false, "the engine wrote a node kind the store lacks: {e}");
            NodeKind::Noop
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    /// Every kind the engine names has the store kind with that text; the
    /// match makes a new engine kind a compile error here.
    #[test]
    fn every_engine_kind_is_a_store_kind() {
        let steps = [
            TKind::Marker,
            TKind::Noop,
            TKind::Command,
            TKind::Spark,
            TKind::Wait,
            TKind::SubWorkflow,
        ];
        for k in steps {
            match k {
                TKind::Marker
                | TKind::Noop
                | TKind::Command
                | TKind::Spark
                | TKind::Wait
                | TKind::SubWorkflow => {}
            }
            assert_eq!(record_kind(k.name()), step_kind(k));
            assert_eq!(step_kind(k).as_str(), k.name());
        }
        // `TNode::kind_name` of the blocks.
        for (name, kind) in [
            ("for-each", NodeKind::ForEach),
            ("repeat", NodeKind::Repeat),
            ("when", NodeKind::When),
        ] {
            assert_eq!(record_kind(name), kind);
        }
        assert_eq!(steps.len() + 3, NodeKind::ALL.len());
    }

    #[test]
    fn statuses_and_states_keep_their_names() {
        for s in [
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(store_status(s).as_str(), s.name());
            assert_eq!(engine_status(store_status(s)), s);
        }
        let failure = kaon_engine::Failure::user("x");
        let states = [
            StepState::Pending,
            StepState::Waiting,
            StepState::Ready,
            StepState::Starting { attempt: 1 },
            StepState::Running {
                attempt: 1,
                handle: None,
            },
            StepState::Retrying {
                attempt: 2,
                at: 0,
                last: failure.clone(),
            },
            StepState::Succeeded,
            StepState::Memoized { from: "r/a".into() },
            StepState::Failed { failure },
            StepState::Skipped {
                reason: kaon_engine::SkipReason::RunStopped,
            },
            StepState::Cancelled,
        ];
        for s in &states {
            let stored = node_state(s);
            assert_eq!(stored.as_str(), s.name());
            assert_eq!(stored.is_terminal(), s.is_terminal(), "{stored}");
            assert_eq!(stored.is_active(), s.is_active(), "{stored}");
        }
        assert_eq!(states.len(), NodeState::ALL.len());
    }
}
