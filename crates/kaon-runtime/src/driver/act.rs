//! Carrying out the engine's actions once they are committed.

use std::sync::Arc;

use kaon_engine::{Action, Event, LaunchOrder, Millis};
use kaon_exec::Executor;
use kaon_store::{ArtifactIndex, KeyRow, StateStore};

use super::{Driver, MemoCtx, MemoDone};
use crate::error::RuntimeError;
use crate::memo;
use crate::secrets::Sealer;

impl<S, E> Driver<S, E>
where
    S: StateStore + ArtifactIndex + 'static,
    E: Executor + 'static,
{
    pub(super) async fn act(
        &mut self,
        run: &str,
        a: Action,
        now: Millis,
    ) -> Result<(), RuntimeError> {
        match a {
            // Queued by `route` before the commit.
            Action::Enqueue { .. } => {}
            Action::LookupMemo(order) => {
                // Launches re-issued after a restart were admitted by the
                // previous process: they count against capacity here.
                self.admission
                    .hold(run, order.node, order.cpus, order.memory);
                self.lookup_memo(run, *order, now).await;
            }
            Action::Launch(order) => {
                self.admission
                    .hold(run, order.node, order.cpus, order.memory);
                match self.exec.start(&order) {
                    Ok(handle) => self.pending.push_back((
                        run.to_string(),
                        Event::StepLaunched {
                            node: order.node,
                            attempt: order.attempt,
                            handle: handle.to_stored(),
                            memo_key: None,
                        },
                    )),
                    Err(e) => self.launch_failed(run, &order, e.message, e.platform),
                }
            }
            Action::Reattach {
                node,
                attempt,
                handle,
                order,
            } => {
                self.admission.hold(run, node, order.cpus, order.memory);
                match kaon_exec::Handle::from_stored(&handle) {
                    Ok(h) => self.exec.reattach(&order, &h),
                    // Nothing to watch: lost, as an executor reports a
                    // handle it cannot use.
                    Err(e) => self.pending.push_back((
                        run.to_string(),
                        Event::StepExited {
                            node,
                            attempt,
                            exit: kaon_engine::Exit::Lost {
                                message: e.to_string(),
                            },
                            outputs: Default::default(),
                            problems: Vec::new(),
                            artifacts: Vec::new(),
                            reads: Vec::new(),
                        },
                    )),
                }
            }
            Action::Kill { handle, .. } => {
                // An unreadable handle names nothing this kaon could stop.
                if let Ok(h) = kaon_exec::Handle::from_stored(&handle) {
                    self.exec.kill(&h);
                }
            }
            Action::SetTimer {
                node,
                attempt,
                at,
                timer,
            } => self.timers.set(run, node, attempt, at, timer),
            Action::StartChildRun {
                node,
                attempt,
                child,
                step,
                params,
            } => {
                self.start_child(run, node, attempt, &child, &step, params, now)
                    .await?
            }
            Action::CancelChildRun { child } => {
                if self.runs.contains_key(&child) {
                    self.pending.push_back((
                        child,
                        Event::CancelRequested {
                            reason: "the parent run cancelled it".into(),
                        },
                    ));
                }
            }
            Action::RunFinished { status } => {
                let Some(ctx) = self.runs.get_mut(run) else {
                    return Ok(());
                };
                ctx.done = true;
                if let Some((parent, node, attempt)) = ctx.parent.clone() {
                    let outputs = ctx.state.data.outputs.clone().unwrap_or_default();
                    let message = ctx.state.data.message.clone();
                    self.pending.push_back((
                        parent,
                        Event::ChildRunFinished {
                            node,
                            attempt,
                            status,
                            outputs,
                            message,
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    /// A launch that did not happen: its resources go back, and the
    /// engine hears why.
    fn launch_failed(&mut self, run: &str, order: &LaunchOrder, message: String, platform: bool) {
        self.admission.release(run, order.node);
        self.pending.push_back((
            run.to_string(),
            Event::LaunchFailed {
                node: order.node,
                attempt: order.attempt,
                message,
                platform,
            },
        ));
    }

    /// Answers the engine's memo question: the key, recorded part by
    /// part, and then a hit with its files back in place, or a miss. The
    /// key and the lookup are on the loop's turn: measured, a task per
    /// lookup made `kaon run` of a 10,000-step sweep a third slower
    /// (wake-ups) for no gain when the lookup is one index read.
    async fn lookup_memo(&mut self, run: &str, order: LaunchOrder, now: Millis) {
        let Some(m) = self.memo.clone() else {
            self.pending.push_back((
                run.to_string(),
                Event::MemoMiss {
                    node: order.node,
                    attempt: order.attempt,
                    key: None,
                },
            ));
            return;
        };
        let facts = self.exec.describe(&order);
        let secrets = self.secrets_of(run);
        let decided = decide(
            &m,
            &*self.store,
            &self.opts.sealer,
            &secrets,
            &facts,
            run,
            &order,
            now,
        )
        .await;
        match decided {
            Decision::Done(done) => self.memo_done(*done),
            // Copying a hit's files back can take long (a model of
            // gigabytes): it happens off the loop's turn, and its answer
            // comes back as an event.
            Decision::Restore(r) => {
                let (r, done) = *r;
                let (store, tx) = (self.store.clone(), self.memo_tx.clone());
                tokio::spawn(async move {
                    let done = restore(&m, &*store, r, done).await;
                    let _ = tx.send(done);
                });
            }
        }
    }
}

/// A hit whose files are to be put back before it counts.
struct Restore {
    plans: Vec<kaon_artifacts::RestorePlan>,
    hit: memo::Hit,
    key: String,
}

/// What [`decide`] found: the answer, or a hit to restore first.
enum Decision {
    Done(Box<MemoDone>),
    Restore(Box<(Restore, MemoDone)>),
}

/// The memo key of `order`, and whether an earlier result stands in for it
/// (planned, not yet put back).
#[allow(clippy::too_many_arguments)]
async fn decide<S: StateStore + ArtifactIndex>(
    m: &Arc<MemoCtx>,
    store: &S,
    sealer: &Sealer,
    secrets: &[(String, String)],
    facts: &serde_json::Value,
    run: &str,
    order: &LaunchOrder,
    now: Millis,
) -> Decision {
    let (node, attempt) = (order.node, order.attempt);
    let hidden = memo::Hidden { sealer, secrets };
    let (key, parts) = match memo::memo_key(order, &m.code, facts, &hidden).await {
        Ok(k) => k,
        // A launch re-issued after a restart may have a process already:
        // it is launched (adopted) without a key rather than failed, which
        // would let a retry start a second process next to it.
        Err(_) if order.adopt => {
            return Decision::Done(Box::new(MemoDone {
                run: run.to_string(),
                key: None,
                event: Event::MemoMiss {
                    node,
                    attempt,
                    key: None,
                },
            }));
        }
        // A key that cannot be computed (an unreadable code file) is the
        // step's settings' fault: the attempt fails as a launch would.
        Err(e) => {
            return Decision::Done(Box::new(MemoDone {
                run: run.to_string(),
                key: None,
                event: Event::LaunchFailed {
                    node,
                    attempt,
                    message: e.to_string(),
                    platform: false,
                },
            }));
        }
    };
    let reuse = order.memo.as_ref().is_some_and(|s| s.reuse);
    // A launch re-issued after a restart may have a process already: it is
    // found (adopted), never replaced by a reuse.
    let hit = if reuse && !order.adopt {
        memo::lookup(store, &m.blobs, &key, order).await
    } else {
        Ok(None)
    };
    let mut done = MemoDone {
        run: run.to_string(),
        key: Some(KeyRow {
            run: run.to_string(),
            node: node.0,
            attempt,
            step: order.step.clone(),
            step_key: order.key.clone(),
            key: key.clone(),
            parts: serde_json::to_string(&parts).unwrap_or_else(|_| "{}".into()),
            outcome: "ran".into(),
            created_ms: now as i64,
        }),
        event: Event::MemoMiss {
            node,
            attempt,
            key: Some(key.clone()),
        },
    };
    let outcome = match hit {
        // Where the files would go is checked before the reuse is
        // decided: a destination that refuses them (a file of the user's,
        // a link) means the step runs; a store that cannot give them back
        // drops the entry too.
        Ok(Some(hit)) => match memo::plan(&m.blobs, &hit, &order.workdir).await {
            Ok(plans) => {
                return Decision::Restore(Box::new((Restore { plans, hit, key }, done)));
            }
            Err(e) => {
                if !e.is_in_the_way() {
                    let _ = store.forget_memo(&key, &hit.row.run, hit.row.node).await;
                }
                format!("ran: the result of {} was not put back: {e}", hit.from)
            }
        },
        Ok(None) => return Decision::Done(Box::new(done)),
        // The index cannot be read: run the step rather than fail it.
        Err(e) => format!("ran: the memo index could not be read: {e}"),
    };
    if let Some(k) = &mut done.key {
        k.outcome = outcome;
    }
    Decision::Done(Box::new(done))
}

/// Puts a hit's files back; the step counts as memoized only once they
/// are there. A restore that fails drops the cached result and the step
/// runs.
async fn restore<S: StateStore + ArtifactIndex>(
    m: &MemoCtx,
    store: &S,
    r: Restore,
    mut done: MemoDone,
) -> MemoDone {
    let Restore { plans, hit, key } = r;
    let (node, attempt) = match &done.event {
        Event::MemoMiss { node, attempt, .. } => (*node, *attempt),
        _ => return done,
    };
    let outcome = match memo::restore(&m.blobs, plans).await {
        Ok(()) => {
            done.event = Event::MemoHit {
                node,
                attempt,
                key: key.clone(),
                from: hit.from,
                outputs: hit.outputs,
                artifacts: hit.artifacts,
            };
            "memoized".to_string()
        }
        Err(e) => {
            let _ = store.forget_memo(&key, &hit.row.run, hit.row.node).await;
            format!(
                "ran: the result of {} was not put back: {e} (the cached result is dropped)",
                hit.from
            )
        }
    };
    if let Some(k) = &mut done.key {
        k.outcome = outcome;
    }
    done
}
