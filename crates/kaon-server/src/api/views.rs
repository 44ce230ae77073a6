//! How stored rows are shown by the API.

use kaon_engine::ScopeRecord;
use kaon_store::{NodeRow, RunRow, ScopeRow};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A run.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunView {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow file.
    pub path: String,
    /// The deployed version (a digest of the workflow's sources).
    pub digest: String,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    /// Parameter values; a secret shows as `<secret>`.
    #[schema(value_type = Object)]
    pub params: Value,
    /// For a sub-workflow's run: its parent run.
    pub parent: Option<String>,
    /// Its sub-workflow step's node in the parent.
    pub parent_node: Option<u32>,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// The process driving it (`pid:start@host`), if any.
    pub owner: Option<String>,
    /// The workflow's outputs, once it succeeded.
    #[schema(value_type = Object)]
    pub outputs: Option<Value>,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// Signals received, latest value per name.
    #[schema(value_type = Object)]
    pub signals: Option<Value>,
}

impl RunView {
    pub fn of(r: &RunRow) -> RunView {
        let params = serde_json::from_str::<Value>(&r.params)
            .map(hide_secrets)
            .unwrap_or(Value::Null);
        let data: Value = serde_json::from_str(&r.data).unwrap_or(Value::Null);
        RunView {
            id: r.id.clone(),
            workflow: r.workflow.clone(),
            path: r.path.clone(),
            digest: r.digest.clone(),
            status: r.status.as_str().to_string(),
            params,
            parent: r.parent.as_ref().map(|(p, _)| p.clone()),
            parent_node: r.parent.as_ref().map(|(_, n)| *n),
            created_ms: r.created_ms,
            finished_ms: r.finished_ms,
            owner: r.owner.clone(),
            outputs: data.get("outputs").cloned(),
            message: data
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string),
            signals: data.get("signals").cloned(),
        }
    }
}

/// Sealed secret values (`{"kaon:secret": ...}`) become `<secret>`: even
/// sealed, they are nobody's business.
fn hide_secrets(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let hidden = v.as_object().is_some_and(|o| o.contains_key("kaon:secret"));
                    (
                        k,
                        if hidden {
                            Value::String("<secret>".into())
                        } else {
                            v
                        },
                    )
                })
                .collect(),
        ),
        other => other,
    }
}

/// A node of a run: a step instance or a block.
#[derive(Serialize, ToSchema)]
pub(crate) struct NodeView {
    /// Its id within the run.
    pub id: u32,
    /// Its scope.
    pub scope: u32,
    /// Its instance key, e.g. `train[reg=US]`.
    pub key: String,
    /// Step name or block label.
    pub name: String,
    /// `command`, `spark`, `for-each`, `wait`, ...
    pub kind: String,
    /// `pending`, `waiting`, `ready`, `starting`, `running`, `succeeded`,
    /// `memoized`, `failed`, `skipped`, `cancelled`.
    pub state: String,
    /// Attempts started.
    pub attempt: u32,
    /// When its first attempt started.
    pub started_ms: Option<i64>,
    /// When it ended.
    pub finished_ms: Option<i64>,
    /// Facts of its state: exit, reason, outputs, Spark progress.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

impl NodeView {
    pub fn of(n: &NodeRow) -> NodeView {
        NodeView {
            id: n.id,
            scope: n.scope,
            key: n.key.clone(),
            name: n.name.clone(),
            kind: n.kind.as_str().to_string(),
            state: n.state.as_str().to_string(),
            attempt: n.attempt,
            started_ms: n.started_ms,
            finished_ms: n.finished_ms,
            data: raw(&n.data),
        }
    }
}

/// A scope of a run: one instance of a template of its workflow (see
/// `GET /api/v1/runs/{id}/graph`). Scope 0 is the whole flow; a for-each
/// makes one per item, a repeat one per pass, a `when` one for the branch
/// taken. A node belongs to one scope, and its name is unique in the
/// scope's template.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScopeView {
    /// Its id within the run (a node's `scope`).
    pub id: u32,
    /// Its template (an index into the graph's `tmpls`).
    pub tmpl: u32,
    /// The block node (for-each, repeat, when) it is an instance of the
    /// body of; `null` for scope 0.
    pub parent: Option<u32>,
    /// The item's index (for-each) or the pass (repeat), from 0.
    pub index: u32,
    /// The loop variables it binds, by name (a for-each item's values).
    #[schema(value_type = Object)]
    pub vars: Map<String, Value>,
}

impl ScopeView {
    pub fn of(s: &ScopeRow) -> ScopeView {
        // A JSON array of `[name, value]` pairs.
        let pairs: Vec<(String, Value)> = serde_json::from_str(&s.vars).unwrap_or_default();
        ScopeView {
            id: s.id,
            tmpl: s.tmpl,
            parent: s.parent,
            index: s.index,
            vars: pairs.into_iter().collect(),
        }
    }

    pub fn of_record(s: &ScopeRecord) -> ScopeView {
        ScopeView {
            id: s.id,
            tmpl: s.tmpl,
            parent: s.parent,
            index: s.index,
            vars: s.vars.iter().cloned().collect(),
        }
    }
}

/// A run with its nodes and child runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunDetail {
    /// The run.
    pub run: RunView,
    /// Its scopes, by id.
    pub scopes: Vec<ScopeView>,
    /// Its nodes, by id (nodes never stored are pending and not listed).
    pub nodes: Vec<NodeView>,
    /// Its sub-workflows' runs.
    pub children: Vec<RunView>,
}

/// A stored JSON text passed through as it is: a run page's snapshot of
/// 30,000 nodes would otherwise parse and print every node's data again.
/// Text that does not read as JSON (a damaged row) shows as `null`.
fn raw(stored: &str) -> Box<RawValue> {
    // `Box<RawValue>`'s default is `null`.
    RawValue::from_string(stored.to_string()).unwrap_or_default()
}
