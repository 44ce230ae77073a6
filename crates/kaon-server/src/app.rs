//! The server's shared state, and what it does besides answering calls:
//! deploying workflows, starting runs, and taking over runs whose driver
//! died.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kaon_engine::RunOptions;
use kaon_model::Validated;
use kaon_runtime::{NewRun, Quiet, ResumedRun, RunId, Runner, RuntimeError, Sealer};
use kaon_schedule::{ScheduleSpec, TriggerSpec};
use kaon_spark::callback::EventSink;
use kaon_store::row::RunStatus;
use kaon_store::{
    AnyStore, RunFilter, RunRow, ScheduleRow, ServiceStore, StateStore, StoreError, WorkflowRow,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// What every handler and task of a server shares.
pub(crate) struct App {
    pub store: Arc<AnyStore>,
    pub runner: Arc<Runner>,
    pub cfg: ServerConfig,
    pub sealer: Sealer,
    /// The installation's secret: run tokens are made with it.
    pub secret: [u8; 32],
    /// The owner name this server drives runs under.
    pub owner: String,
    /// Workflows loaded, by digest: a submission does not read files.
    loaded: Mutex<HashMap<String, Arc<Validated>>>,
    pub metrics: Metrics,
    /// True once the runs of the last server were taken back.
    pub ready: AtomicBool,
    /// Where Spark listener events go (the executor's).
    pub sink: Arc<dyn EventSink>,
    /// Set when the server stops: event streams end, so that connections
    /// close and the shutdown is not held up by them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// One lock per schedule: deciding whether its run is going and
    /// recording a tick are one step.
    schedule_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a deployed workflow declares for the server, as stored in a
/// schedule's `spec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Declared {
    /// Fires on a cron schedule.
    Cron(ScheduleSpec),
    /// Fires when another workflow's run succeeds.
    Trigger(TriggerSpec),
}

/// The outcome of a deployment.
pub(crate) struct Deployed {
    pub row: WorkflowRow,
    pub new: bool,
    pub schedules: Vec<String>,
}

impl App {
    pub fn new(
        store: Arc<AnyStore>,
        runner: Arc<Runner>,
        cfg: ServerConfig,
        sealer: Sealer,
        secret: [u8; 32],
        owner: String,
        sink: Arc<dyn EventSink>,
    ) -> App {
        App {
            store,
            runner,
            cfg,
            sealer,
            secret,
            owner,
            loaded: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            sink,
            stopping: tokio::sync::watch::Sender::new(false),
            schedule_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of one schedule.
    pub fn schedule_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.schedule_locks.lock() {
            Ok(mut m) => m.entry(id.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Loads, checks and registers the workflow file at `path` (on the
    /// server's file system) and its schedules.
    pub async fn deploy(&self, path: &Path) -> Result<Deployed, ApiError> {
        let path = std::path::absolute(path)
            .map_err(|e| ApiError::bad_request(format!("{}: {e}", path.display())))?;
        let v = load(path.clone()).await?;
        let digest = kaon_runtime::workflow_digest(&v);
        let mut sources = Map::new();
        collect_sources(&v, &mut sources);
        let now = kaon_runtime::now_ms() as i64;
        let name = v.workflow.name.clone();
        let mut rows = Vec::new();
        let declared = v
            .workflow
            .schedules
            .iter()
            .map(|s| (s.name.clone(), Declared::Cron(s.clone())))
            .chain(
                v.workflow
                    .triggers
                    .iter()
                    .map(|t| (t.name.clone(), Declared::Trigger(t.clone()))),
            );
        for (sname, d) in declared {
            rows.push(ScheduleRow {
                id: format!("{name}:{sname}"),
                workflow: name.clone(),
                digest: digest.clone(),
                spec: serde_json::to_string(&d).map_err(|e| ApiError::internal(e.to_string()))?,
                paused: false,
                created_ms: now,
            });
        }
        let row = WorkflowRow {
            name: name.clone(),
            digest: digest.clone(),
            path: path.display().to_string(),
            sources: Value::Object(sources).to_string(),
            spec: serde_json::json!({
                "schedules": v.workflow.schedules,
                "triggers": v.workflow.triggers,
            })
            .to_string(),
            deployed_ms: now,
        };
        let new = self.store.deploy(&row, &rows).await?;
        self.remember(&digest, Arc::new(v));
        Ok(Deployed {
            row,
            new,
            schedules: rows.into_iter().map(|r| r.id).collect(),
        })
    }

    fn remember(&self, digest: &str, v: Arc<Validated>) {
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(digest.to_string(), v);
        }
    }

    /// The workflow of a deployed version: from memory, or loaded from
    /// its file, which must not have changed since it was deployed.
    pub async fn validated(&self, row: &WorkflowRow) -> Result<Arc<Validated>, ApiError> {
        self.validated_at(&row.path, &row.digest).await
    }

    async fn validated_at(&self, path: &str, digest: &str) -> Result<Arc<Validated>, ApiError> {
        if let Some(v) = self.loaded.lock().ok().and_then(|m| m.get(digest).cloned()) {
            return Ok(v);
        }
        let v = load(PathBuf::from(path)).await?;
        let now = kaon_runtime::workflow_digest(&v);
        if now != digest {
            return Err(ApiError::conflict(format!(
                "the workflow file {path} changed since version {digest} was deployed (it is {now} now); deploy it again (`kaon deploy {path}`)"
            )));
        }
        let v = Arc::new(v);
        self.remember(digest, v.clone());
        Ok(v)
    }

    /// Starts a run of a deployed workflow (its latest version unless
    /// `digest` names one). `id`: the id a schedule's tick fixed for it;
    /// a run with that id existing already means the tick's run was
    /// started before, and is not started again.
    pub async fn submit(
        &self,
        workflow: &str,
        digest: Option<&str>,
        given: Map<String, Value>,
        options: RunOptions,
        id: Option<RunId>,
    ) -> Result<RunId, ApiError> {
        let Some(row) = self.store.workflow(workflow, digest).await? else {
            return Err(ApiError::not_found(match digest {
                Some(d) => format!("no version {d} of workflow `{workflow}` is deployed"),
                None => format!(
                    "no workflow `{workflow}` is deployed (deploy it with `kaon deploy FILE`)"
                ),
            }));
        };
        let v = self.validated(&row).await?;
        let mut given = given;
        let base = kaon_runtime::base_dir(&v);
        kaon_runtime::secrets::take_from_sources(&v.workflow.params, &mut given, &base, false)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let params = kaon_engine::eval::bind_params(&v.workflow.params, &given)
            .map_err(|errs| ApiError::bad_request(errs.join("; ")))?;
        // Root ids carry a short random part: at hundreds of submissions a
        // second two can meet, and the second is given a new id.
        for _ in 0..8 {
            let run = id.clone().unwrap_or_else(RunId::new_root);
            let r = self
                .runner
                .submit(NewRun {
                    id: run.clone(),
                    validated: v.clone(),
                    params: params.clone(),
                    options: options.clone(),
                    observer: Box::new(Quiet),
                })
                .await;
            match r {
                Ok(_) => {
                    self.metrics.submitted();
                    return Ok(run);
                }
                Err(e) if run_exists(&e) && id.is_some() => {
                    // Started before (a tick's run, by this server before a
                    // restart or by another): unless the id was taken by
                    // an unrelated run, which must not count as the tick's.
                    return match self.store.run(run.as_str()).await? {
                        Some(r) if r.workflow == v.workflow.name => Ok(run),
                        _ => Err(ApiError::conflict(format!(
                            "run id {run} is taken by a run of another workflow"
                        ))),
                    };
                }
                Err(e) if run_exists(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::unavailable(
            "could not find a free run id; try again",
        ))
    }

    /// Takes over root runs still running whose driver is gone (a server
    /// or `kaon run` that died), and drives them to their end. Returns how
    /// many were taken. Two servers may look at once: the claim is a
    /// compare-and-set, so one of them gets each run.
    pub async fn adopt_orphans(&self) -> Result<usize, ApiError> {
        let rows = self
            .store
            .list_runs(&RunFilter {
                status: Some(RunStatus::Running),
                ..Default::default()
            })
            .await?;
        let mut taken = 0;
        for row in rows {
            if row.parent.is_some() || row.owner.as_deref() == Some(self.owner.as_str()) {
                continue;
            }
            if let Some(o) = &row.owner
                && kaon_runtime::owner_alive(o, row.heartbeat_ms)
            {
                continue;
            }
            match self.adopt(&row).await {
                Ok(true) => taken += 1,
                Ok(false) => {}
                Err(e) => eprintln!("kaon server: cannot carry on run {}: {e}", row.id),
            }
        }
        Ok(taken)
    }

    async fn adopt(&self, row: &RunRow) -> Result<bool, ApiError> {
        let (v, params) = self.reload(row).await?;
        if self.claim(row).await?.is_none() {
            // Another server was quicker.
            return Ok(false);
        }
        // Read again now that it is ours: the row listed may be stale (the
        // run ended, its owner let go of it, and the claim of an ownerless
        // row succeeded); a run that ended is not driven again.
        let fresh = match self.store.run(&row.id).await {
            Ok(Some(r)) if !r.status.is_terminal() => r,
            Ok(_) => {
                self.release(&row.id).await;
                return Ok(false);
            }
            Err(e) => {
                self.release(&row.id).await;
                return Err(e.into());
            }
        };
        let r = self
            .runner
            .resume(ResumedRun {
                row: fresh,
                validated: v,
                params,
                cancel: None,
                observer: Box::new(Quiet),
            })
            .await;
        if let Err(e) = r {
            self.release(&row.id).await;
            return Err(e.into());
        }
        Ok(true)
    }

    /// Lets go of a run this server claimed but does not drive, so that
    /// another (or a later look) can take it.
    async fn release(&self, run: &str) {
        let now = kaon_runtime::now_ms() as i64;
        if let Err(e) = self.store.claim(run, Some(&self.owner), None, now).await {
            eprintln!("kaon server: cannot let go of run {run}: {e}");
        }
    }

    /// Retries the failed `step` of a run: in place when this server
    /// drives it, else (it ended, or its driver died) by taking it and
    /// driving it again. A run another live server drives is that
    /// server's to retry.
    pub async fn retry(&self, row: &RunRow, step: &str) -> Result<(), ApiError> {
        if row.parent.is_some() {
            return Err(ApiError::conflict(format!(
                "run {} is a sub-workflow's run; retry the failed step of its root run",
                row.id
            )));
        }
        let id = RunId::parse(&row.id)
            .map_err(|_| ApiError::bad_request(format!("`{}` is not a run id", row.id)))?;
        if row.owner.as_deref() == Some(self.owner.as_str()) {
            return self.runner.retry_step(&id, step).await.map_err(retry_error);
        }
        if let Some(o) = &row.owner
            && kaon_runtime::owner_alive(o, row.heartbeat_ms)
        {
            return Err(ApiError::conflict(format!(
                "run {} is driven by {o}; ask the server that drives it",
                row.id
            )));
        }
        let (v, params) = self.reload(row).await?;
        let Some(claimed) = self.claim(row).await? else {
            return Err(ApiError::conflict(format!(
                "run {} was just taken by another server; try again",
                row.id
            )));
        };
        self.runner
            .retry(
                ResumedRun {
                    row: claimed,
                    validated: v,
                    params,
                    cancel: None,
                    observer: Box::new(Quiet),
                },
                step,
            )
            .await
            .map(|_| ())
            .map_err(retry_error)
    }

    /// The workflow of a stored run and its parameters with secrets in
    /// clear (read again from their sources), to drive it again.
    async fn reload(&self, row: &RunRow) -> Result<(Arc<Validated>, Map<String, Value>), ApiError> {
        let v = match self
            .store
            .workflow(&row.workflow, Some(&row.digest))
            .await?
        {
            Some(w) => self.validated(&w).await?,
            None => self.validated_at(&row.path, &row.digest).await?,
        };
        let stored: Map<String, Value> = serde_json::from_str(&row.params).map_err(|e| {
            ApiError::internal(format!(
                "run {}: stored parameters are damaged: {e}",
                row.id
            ))
        })?;
        let mut current = Map::new();
        let base = kaon_runtime::base_dir(&v);
        kaon_runtime::secrets::take_from_sources(&v.workflow.params, &mut current, &base, true)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let params = self
            .sealer
            .unseal_params(&v.workflow.params, &stored, &current)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((v, params))
    }

    /// Claims a run for this server (compare and set on the owner it
    /// had); `None` when another server claimed it first.
    async fn claim(&self, row: &RunRow) -> Result<Option<RunRow>, ApiError> {
        let now = kaon_runtime::now_ms() as i64;
        match self
            .store
            .claim(&row.id, row.owner.as_deref(), Some(&self.owner), now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Held { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut claimed = row.clone();
        claimed.owner = Some(self.owner.clone());
        claimed.heartbeat_ms = Some(now);
        Ok(Some(claimed))
    }

    /// The workflow a stored run runs: the version it started with, from
    /// memory or its file (409 when the file changed since); for a
    /// sub-workflow's run, the child of its parent's workflow.
    pub async fn run_workflow(&self, row: &RunRow) -> Result<Arc<Validated>, ApiError> {
        if let Some(v) = self
            .loaded
            .lock()
            .ok()
            .and_then(|m| m.get(&row.digest).cloned())
        {
            return Ok(v);
        }
        if let Some((parent, node)) = &row.parent {
            let prow = self.run_row(parent).await?;
            let pv = Box::pin(self.run_workflow(&prow)).await?;
            let mut of_name = pv
                .children
                .iter()
                .filter(|(_, c)| c.workflow.name == row.workflow);
            let child = match (of_name.next(), of_name.next()) {
                (Some((_, c)), None) => Some(c),
                // Several steps run a workflow of that name: the step at
                // the parent's node says which.
                _ => self
                    .store
                    .nodes(parent)
                    .await?
                    .into_iter()
                    .find(|n| n.id == *node)
                    .and_then(|n| pv.children.get(&n.name)),
            };
            if let Some(c) = child {
                return Ok(Arc::new(c.clone()));
            }
        }
        match self
            .store
            .workflow(&row.workflow, Some(&row.digest))
            .await?
        {
            Some(w) => self.validated(&w).await,
            None => self.validated_at(&row.path, &row.digest).await,
        }
    }

    /// A run by id, or 404.
    pub async fn run_row(&self, id: &str) -> Result<RunRow, ApiError> {
        self.store
            .run(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no run {id}")))
    }
}

/// A refused retry is the caller's problem (404, 409), not the server's.
fn retry_error(e: RuntimeError) -> ApiError {
    match &e {
        RuntimeError::Retry(r) if r.is_unknown_step() => ApiError::not_found(e.to_string()),
        RuntimeError::Retry(_)
        | RuntimeError::ChildRun { .. }
        | RuntimeError::NotDriven { .. }
        | RuntimeError::Driving { .. }
        | RuntimeError::TakenOver { .. } => ApiError::conflict(e.to_string()),
        _ => e.into(),
    }
}

fn run_exists(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::Store {
            source: StoreError::RunExists(_),
            ..
        }
    )
}

/// Reads and checks a workflow file off the async threads.
async fn load(path: PathBuf) -> Result<Validated, ApiError> {
    let p = path.clone();
    let loaded = tokio::task::spawn_blocking(move || kaon_model::load(&p))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match loaded.result {
        Some(v) if loaded.diagnostics.error_count() == 0 => Ok(v),
        _ => Err(ApiError::bad_request(format!(
            "{} does not load:\n{}",
            path.display(),
            loaded.diagnostics.render_short(&loaded.sources)
        ))),
    }
}

fn collect_sources(v: &Validated, out: &mut Map<String, Value>) {
    let path = std::path::absolute(&v.workflow.path).unwrap_or_else(|_| v.workflow.path.clone());
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    out.insert(path.display().to_string(), Value::String(text));
    for c in v.children.values() {
        collect_sources(c, out);
    }
}
