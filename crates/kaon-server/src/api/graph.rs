//! A run's graph: its workflow compiled into the templates the engine
//! instantiates, for a UI to draw.
//!
//! The engine compiles a workflow into templates
//! ([`kaon_engine::program::Program`]): template 0 is the whole flow, and
//! each for-each or repeat body, and each branch of a `when`, is a
//! template of its own. A run instantiates them as scopes (listed in the
//! run's detail): scope 0 of template 0, then one scope of a body per
//! for-each item or repeat pass, one of the branch a `when` took. A stored
//! node has a `scope` and a `name`, and names are unique in a template
//! (steps are unique in the whole workflow, block labels are numbered
//! across it, `start` and `end` only stand in template 0), so a node is
//! drawn at the template node `(scopes[node.scope].tmpl, node.name)`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kaon_engine::Program;
use kaon_engine::program::{TKind, TNode, Tmpl};
use kaon_model::spec::StepKind;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth;
use crate::app::App;
use crate::auth::Role;
use crate::error::{ApiError, ErrorBody};

/// A run's workflow as the engine runs it: its templates.
#[derive(Serialize, ToSchema)]
pub(crate) struct GraphView {
    /// The templates; 0 is the whole flow.
    pub tmpls: Vec<TmplView>,
}

/// One template: a flow, or the body or branch of a block.
#[derive(Serialize, ToSchema)]
pub(crate) struct TmplView {
    /// `[template, node index]` of the block this is the body (or a
    /// branch) of; `null` for template 0.
    #[schema(value_type = Option<Vec<u32>>, min_items = 2, max_items = 2)]
    pub parent: Option<(u32, u32)>,
    /// Its nodes, in a topological order.
    pub nodes: Vec<GraphNode>,
    /// For each node (by index), the indexes of the nodes that run
    /// before it (in this template).
    pub preds: Vec<Vec<u32>>,
}

/// What a template node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum GraphKind {
    /// `start` or `end`.
    Marker,
    /// A step that does nothing.
    Noop,
    /// A command.
    Command,
    /// A Spark application.
    Spark,
    /// Waits for a signal.
    Wait,
    /// A child run of another workflow (the same name as a node's
    /// `kind`, and the workflow file's `kind = "subworkflow"`).
    #[serde(rename = "subworkflow")]
    SubWorkflow,
    /// Runs its body once per item.
    ForEach,
    /// Runs its body until a condition holds.
    Repeat,
    /// Runs one branch or the other.
    When,
}

impl GraphKind {
    fn of(n: &TNode) -> GraphKind {
        match n {
            TNode::Step { kind, .. } => match kind {
                TKind::Marker => GraphKind::Marker,
                TKind::Noop => GraphKind::Noop,
                TKind::Command => GraphKind::Command,
                TKind::Spark => GraphKind::Spark,
                TKind::Wait => GraphKind::Wait,
                TKind::SubWorkflow => GraphKind::SubWorkflow,
            },
            TNode::ForEach { .. } => GraphKind::ForEach,
            TNode::Repeat { .. } => GraphKind::Repeat,
            TNode::When { .. } => GraphKind::When,
        }
    }
}

/// A node of a template. Every field is present; those that do not apply
/// to its kind are `null`.
#[derive(Serialize, ToSchema)]
pub(crate) struct GraphNode {
    /// The step's name or the block's label (`for-each#1(reg)`): a
    /// stored node's `name`.
    pub name: String,
    /// What it is.
    pub kind: GraphKind,
    /// The step's description.
    pub description: Option<String>,
    /// A Spark step's Spark version: the one it asks for, else the
    /// server's default (`[spark] default_version`); `null` when neither
    /// names one (the newest installed runs it).
    pub spark: Option<String>,
    /// A sub-workflow step's workflow (its name).
    pub workflow: Option<String>,
    /// A for-each's or repeat's body template.
    pub body: Option<u32>,
    /// A `when`'s template taken when its condition holds.
    pub then: Option<u32>,
    /// A `when`'s template taken otherwise, if it has one.
    pub otherwise: Option<u32>,
    /// A for-each's loop variables.
    pub vars: Option<Vec<String>>,
    /// A repeat's most passes.
    pub max: Option<u32>,
    /// A repeat's condition, as written.
    pub until: Option<String>,
    /// A `when`'s condition, as written.
    pub cond: Option<String>,
}

impl GraphView {
    /// The graph of a compiled workflow; `default_spark`: the version
    /// Spark steps that name none run with, if the server sets one.
    pub fn of(p: &Program, default_spark: Option<&str>) -> GraphView {
        GraphView {
            tmpls: p
                .tmpls
                .iter()
                .map(|t| TmplView::of(p, t, default_spark))
                .collect(),
        }
    }
}

impl TmplView {
    fn of(p: &Program, t: &Tmpl, default_spark: Option<&str>) -> TmplView {
        TmplView {
            parent: t.parent,
            nodes: t
                .nodes
                .iter()
                .map(|n| GraphNode::of(p, n, default_spark))
                .collect(),
            preds: t.preds.clone(),
        }
    }
}

impl GraphNode {
    fn of(p: &Program, n: &TNode, default_spark: Option<&str>) -> GraphNode {
        let mut g = GraphNode {
            name: n.name().to_string(),
            kind: GraphKind::of(n),
            description: None,
            spark: None,
            workflow: None,
            body: None,
            then: None,
            otherwise: None,
            vars: None,
            max: None,
            until: None,
            cond: None,
        };
        match n {
            TNode::Step { name, .. } => {
                let Some(step) = p.step(name) else {
                    return g; // a marker
                };
                g.description = step.description.clone();
                match &step.kind {
                    StepKind::Spark(s) => {
                        g.spark = s.version.clone().or(default_spark.map(str::to_string));
                    }
                    StepKind::SubWorkflow(sw) => {
                        g.workflow = Some(match p.workflow.children.get(name) {
                            Some(child) => child.workflow.name.clone(),
                            None => sw.workflow.display().to_string(),
                        });
                    }
                    _ => {}
                }
            }
            TNode::ForEach { bindings, body, .. } => {
                g.body = Some(*body);
                g.vars = Some(bindings.iter().map(|b| b.var.name.clone()).collect());
            }
            TNode::Repeat {
                until, max, body, ..
            } => {
                g.body = Some(*body);
                g.max = Some(*max);
                g.until = Some(until.to_string());
            }
            TNode::When {
                cond,
                then,
                otherwise,
                ..
            } => {
                g.then = Some(*then);
                g.otherwise = *otherwise;
                g.cond = Some(cond.to_string());
            }
        }
        g
    }
}

/// The structure of a run's workflow, to draw it: its templates, their
/// nodes and edges. Map a stored node onto it with its scope's template
/// and its name.
#[utoipa::path(get, path = "/api/v1/runs/{id}/graph",
    params(("id" = String, Path, description = "The run")),
    responses((status = 200, body = GraphView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The run's workflow file changed since the run started and is not loaded")))]
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<GraphView>, ApiError> {
    auth(&app, &headers, Role::Read).await?;
    let row = app.run_row(&id).await?;
    let v = app.run_workflow(&row).await?;
    let program = Program::new(v.clone(), kaon_runtime::base_dir(&v));
    Ok(Json(GraphView::of(
        &program,
        app.cfg.spark.default_version.as_deref(),
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    /// Every template node's name is unique in its template: the key a
    /// UI maps stored nodes with.
    #[test]
    fn names_are_unique_in_each_template_and_kinds_are_named_as_nodes_are() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.toml");
        std::fs::write(
            &path,
            r#"
[workflow]
name = "shapes"
flow = '''
start -> ^^(until = ${check.stable}, max = 5) --< (tune, check) >--
  -> **(reg = ["US", "CA"]) --< (**(m = ["gbm", "lin"]) --< (fit) >--) >--
  -> ??(${check.stable}) --< (big | small) >-- -> end
'''

[steps.tune]
kind = "command"
command = ["true"]

[steps.check]
kind = "command"
command = ["true"]
outputs = { stable = "bool" }

[steps.fit]
kind = "command"
command = ["true"]

[steps.big]
kind = "noop"

[steps.small]
kind = "noop"
"#,
        )
        .unwrap();
        let loaded = kaon_model::load(&path);
        let v = Arc::new(loaded.result.expect("loads"));
        let p = Program::new(v, dir.path().to_path_buf());
        let g = GraphView::of(&p, None);
        for (i, t) in g.tmpls.iter().enumerate() {
            let mut names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
            names.sort();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "template {i}");
            assert_eq!(t.preds.len(), t.nodes.len());
        }
        // Each step is where the engine looks for it.
        for (name, (tmpl, idx)) in &p.step_loc {
            assert_eq!(&g.tmpls[*tmpl as usize].nodes[*idx as usize].name, name);
        }
        // A block's kind is named as a stored node's is.
        for t in &p.tmpls {
            for n in &t.nodes {
                let shown = serde_json::to_value(GraphKind::of(n)).unwrap();
                assert_eq!(shown, n.kind_name(), "{}", n.name());
            }
        }
        let top: Vec<(&str, GraphKind)> = g.tmpls[0]
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.kind))
            .collect();
        assert_eq!(top.len(), 5, "{top:?}");
        assert_eq!(top[0], ("start", GraphKind::Marker));
        assert_eq!(top[1].1, GraphKind::Repeat);
        assert_eq!(top[2].1, GraphKind::ForEach);
        assert_eq!(top[3].1, GraphKind::When);
        assert_eq!(top[4], ("end", GraphKind::Marker));
        assert_eq!(
            g.tmpls[0].preds,
            vec![vec![], vec![0], vec![1], vec![2], vec![3]]
        );
    }

    #[test]
    fn a_sub_workflow_kind_is_named_as_in_workflow_files() {
        assert_eq!(
            serde_json::to_value(GraphKind::SubWorkflow).unwrap(),
            TKind::SubWorkflow.name()
        );
        assert_eq!(
            serde_json::to_value(GraphKind::ForEach).unwrap(),
            "for-each"
        );
    }
}
