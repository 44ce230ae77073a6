//! Child runs of sub-workflow steps, and the secrets a run holds.

use std::cmp::Reverse;
use std::sync::Arc;

use kaon_engine::{Event, Millis, NodeId, Program, RunState, RunStatus};
use kaon_exec::Executor;
use kaon_store::{ArtifactIndex, StateStore};
use serde_json::{Map, Value};

use super::Driver;
use crate::error::RuntimeError;
use crate::observe::Change;
use crate::owner::base_dir;
use crate::rows::{load_state, new_run_row};
use crate::secrets::{secret_values, take_from_sources};

impl<S, E> Driver<S, E>
where
    S: StateStore + ArtifactIndex + 'static,
    E: Executor + 'static,
{
    /// The secret values a run holds: its own secret parameters' and those
    /// of the runs above it (a child run's parameters may carry a parent's
    /// secret without being marked secret themselves).
    pub(super) fn secrets_of(&self, run: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut at = self.runs.get(run);
        while let Some(c) = at {
            out.extend(secret_values(&c.validated.workflow.params, &c.state.params));
            at = c.parent.as_ref().and_then(|(p, _, _)| self.runs.get(p));
        }
        out.sort_by_key(|(_, v)| Reverse(v.len()));
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_child(
        &mut self,
        parent: &str,
        node: NodeId,
        attempt: u32,
        child: &str,
        step: &str,
        params: Map<String, Value>,
        now: Millis,
    ) -> Result<(), RuntimeError> {
        if self.runs.contains_key(child) {
            return Ok(());
        }
        let Some(pctx) = self.runs.get(parent) else {
            return Ok(());
        };
        let root = pctx.root.clone();
        let validated = Arc::new(pctx.validated.children.get(step).cloned().ok_or_else(|| {
            RuntimeError::NoChildWorkflow {
                step: step.to_string(),
            }
        })?);
        let options = pctx.state.options.clone();
        let cancelling = self.roots.get(&root).is_some_and(|r| r.cancelling);
        let link = Some((parent.to_string(), node, attempt));
        // A child's own `from_env`/`from_file` parameters the parent does
        // not give are read as for a root run.
        let mut params = params;
        let base = base_dir(&validated);
        let bound = match take_from_sources(&validated.workflow.params, &mut params, &base, false) {
            Ok(()) => kaon_engine::eval::bind_params(&validated.workflow.params, &params),
            Err(e) => Err(vec![e.to_string()]),
        };
        let stored = self
            .store
            .run(child)
            .await
            .map_err(RuntimeError::store(format!("cannot read run {child}")))?;
        if let Some(row) = stored {
            // Made before a restart: carry it on, with its parameters as the
            // parent gives them now (the stored ones have secrets sealed).
            let stored: Map<String, Value> =
                serde_json::from_str(&row.params).map_err(|source| RuntimeError::Damaged {
                    run: row.id.clone(),
                    what: "its parameters".into(),
                    source,
                })?;
            let current = bound.clone().unwrap_or_default();
            // A run being cancelled launches nothing: its secrets may stay
            // sealed.
            let params = if cancelling {
                stored
            } else {
                self.opts
                    .sealer
                    .unseal_params(&validated.workflow.params, &stored, &current)?
            };
            let state = load_state(self.store.as_ref(), &row, validated.clone(), params).await?;
            let expected = row.owner.clone();
            self.store
                .claim(
                    child,
                    expected.as_deref(),
                    Some(&self.opts.owner),
                    now as i64,
                )
                .await
                .map_err(RuntimeError::store(format!("cannot claim run {child}")))?;
            self.hold(child, &root, state, validated, link, Some(Event::Recovered));
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
            &self.opts.owner,
            now,
        );
        self.store
            .create_run(&row)
            .await
            .map_err(RuntimeError::store(format!("cannot create run {child}")))?;
        let _ = self.changes.send(Change::RunCreated {
            run: child.to_string(),
            root: root.clone(),
            workflow: validated.workflow.name.clone(),
        });
        let program = Arc::new(Program::new(validated.clone(), base_dir(&validated)));
        let state = RunState::new(child, program, params, options);
        self.hold(
            child,
            &root,
            state,
            validated,
            link,
            Some(Event::RunStarted),
        );
        Ok(())
    }
}
