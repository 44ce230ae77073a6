//! Schedules and triggers: when they fire, and starting their runs
//! exactly once.
//!
//! A tick is recorded in the store (with the id its run will have) before
//! its run is created, and recorded once per schedule and tick (the
//! store's contract), so:
//! - a server killed after recording a tick and before creating its run
//!   starts the run when it comes back (the tick is `pending`);
//! - a tick never starts two runs, even with two servers on one database
//!   or a server restarted across the tick: the second record is refused,
//!   and a second start of a pending tick finds its run id taken.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use kaon_engine::RunOptions;
use kaon_runtime::RunId;
use std::collections::HashSet;

use kaon_schedule::{Concurrency, ScheduleSpec, TriggerSpec};
use kaon_store::row::RunStatus;
use kaon_store::{RunFilter, ScheduleRow, ServiceStore, StateStore, TickRow};
use serde_json::{Map, Value};

use crate::app::{App, Declared};
use crate::error::ApiError;

/// Outcomes of a tick, as stored.
pub(crate) const PENDING: &str = "pending";
pub(crate) const QUEUED: &str = "queued";
pub(crate) const STARTED: &str = "started";

/// Looks at every schedule every `tick_every` until `stop` is set.
pub(crate) async fn run(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Err(e) = turn(&app).await {
            eprintln!("kaon server: schedules: {e}");
        }
        tokio::select! {
            _ = tokio::time::sleep(app.cfg.tick_every) => {}
            () = crate::stopped(&mut stop) => return,
        }
    }
}

/// One look: pending and queued ticks first (a restart's leftovers), then
/// what is due. A schedule that fails is reported and the others go on.
pub(crate) async fn turn(app: &App) -> Result<(), ApiError> {
    recover(app).await?;
    let now = kaon_runtime::now_ms() as i64;
    for s in app.store.schedules().await? {
        if s.paused {
            continue;
        }
        let r = match serde_json::from_str::<Declared>(&s.spec) {
            Ok(Declared::Cron(spec)) => cron_turn(app, &s, &spec, now).await,
            Ok(Declared::Trigger(spec)) => trigger_turn(app, &s, &spec).await,
            Err(e) => Err(ApiError::internal(format!(
                "its stored spec does not read: {e}"
            ))),
        };
        if let Err(e) = r {
            eprintln!("kaon server: schedule {}: {e}", s.id);
        }
    }
    Ok(())
}

/// Records the due ticks of a cron schedule and starts their runs.
async fn cron_turn(
    app: &App,
    s: &ScheduleRow,
    spec: &ScheduleSpec,
    now: i64,
) -> Result<(), ApiError> {
    let cron = spec
        .parse_cron()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let last = app
        .store
        .ticks(&s.id, 1)
        .await?
        .first()
        .map(|t| t.due_ms)
        .unwrap_or(s.created_ms);
    let grace = i64::try_from(app.cfg.tick_grace.as_millis()).unwrap_or(i64::MAX);
    let plan = kaon_schedule::plan(&cron, spec.catch_up, spec.catch_up_limit, last, now, grace);
    if let Some(sk) = &plan.skipped {
        let tick = TickRow {
            schedule: s.id.clone(),
            tick: stamp(sk.newest),
            due_ms: sk.newest,
            run: None,
            outcome: format!(
                "skipped: {} tick(s) missed from {} to {} (catch_up = {})",
                sk.count,
                stamp(sk.oldest),
                stamp(sk.newest),
                spec.catch_up.as_str()
            ),
            params: "{}".into(),
            created_ms: now,
        };
        if app.store.record_tick(&tick).await? {
            app.metrics.skipped();
        }
    }
    let params: Map<String, Value> = spec.params.clone().into_iter().collect();
    for due in plan.fire {
        fire(app, s, &params, spec.concurrency, &stamp(due), due).await?;
    }
    Ok(())
}

/// How many of the upstream workflow's latest successes a trigger looks
/// at each turn (more than can succeed between two turns).
const UPSTREAM_WINDOW: u32 = 200;

/// Fires a trigger for each success of its upstream workflow since it was
/// deployed that it has no tick for. Successes are read from the store,
/// not heard from the runtime: a success on another server, or just
/// before this one was killed, fires too, and the tick (keyed by the
/// upstream run) is recorded once.
async fn trigger_turn(app: &App, s: &ScheduleRow, t: &TriggerSpec) -> Result<(), ApiError> {
    let mut upstream = app
        .store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Succeeded),
            workflow: Some(t.on_success.clone()),
            limit: Some(UPSTREAM_WINDOW),
            ..Default::default()
        })
        .await?;
    upstream.retain(|r| r.finished_ms.is_some_and(|f| f >= s.created_ms));
    if upstream.is_empty() {
        return Ok(());
    }
    let seen: HashSet<String> = app
        .store
        .ticks(&s.id, UPSTREAM_WINDOW * 2)
        .await?
        .into_iter()
        .map(|t| t.tick)
        .collect();
    // Oldest first: a queue starts them in the order they succeeded.
    for row in upstream.iter().rev() {
        if seen.contains(&row.id) {
            continue;
        }
        let data: Value = serde_json::from_str(&row.data).unwrap_or(Value::Null);
        let outputs = data
            .get("outputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let due = row.finished_ms.unwrap_or(row.created_ms);
        match t.bind(&outputs) {
            Ok(params) => fire(app, s, &params, t.concurrency, &row.id, due).await?,
            Err(e) => {
                let tick = TickRow {
                    schedule: s.id.clone(),
                    tick: row.id.clone(),
                    due_ms: due,
                    run: None,
                    outcome: format!("failed: {e}"),
                    params: "{}".into(),
                    created_ms: kaon_runtime::now_ms() as i64,
                };
                app.store.record_tick(&tick).await?;
            }
        }
    }
    Ok(())
}

/// The tick key of a cron tick: its due time, RFC 3339 in UTC.
fn stamp(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Records one tick of schedule `s` and starts its run, as its
/// concurrency policy says.
pub(crate) async fn fire(
    app: &App,
    s: &ScheduleRow,
    params: &Map<String, Value>,
    concurrency: Concurrency,
    key: &str,
    due_ms: i64,
) -> Result<(), ApiError> {
    // Whether the schedule's run is going and recording the tick are one
    // step for this server (two triggers at once would both see nothing
    // running).
    let lock = app.schedule_lock(&s.id);
    let _held = lock.lock().await;
    let active = if concurrency == Concurrency::Allow {
        None
    } else {
        active_run(app, &s.id).await?
    };
    let (outcome, run) = match (active, concurrency) {
        (None, _) | (_, Concurrency::Allow) => (PENDING.to_string(), Some(RunId::new_root())),
        (Some(r), Concurrency::Skip) => (
            format!("skipped: run {r} of the schedule was still running"),
            None,
        ),
        (Some(_), Concurrency::Queue) => (QUEUED.to_string(), Some(RunId::new_root())),
    };
    let tick = TickRow {
        schedule: s.id.clone(),
        tick: key.to_string(),
        due_ms,
        run: run.map(|r| r.to_string()),
        outcome,
        params: Value::Object(params.clone()).to_string(),
        created_ms: kaon_runtime::now_ms() as i64,
    };
    if !app.store.record_tick(&tick).await? {
        // Recorded before: by this server before a restart, or by another.
        return Ok(());
    }
    match tick.outcome.as_str() {
        PENDING => start(app, s, &tick).await,
        QUEUED => Ok(()),
        _ => {
            app.metrics.skipped();
            Ok(())
        }
    }
}

/// Starts the run of a pending tick (its id is the tick's), then marks
/// the tick started. A failure that will not go away by itself (the
/// workflow's file changed, a parameter is wrong) is written to the tick
/// rather than tried again every turn.
async fn start(app: &App, s: &ScheduleRow, tick: &TickRow) -> Result<(), ApiError> {
    let Some(run) = tick.run.as_deref().and_then(|r| RunId::parse(r).ok()) else {
        return Ok(());
    };
    let params: Map<String, Value> = serde_json::from_str(&tick.params).unwrap_or_default();
    let r = app
        .submit(
            &s.workflow,
            Some(&s.digest),
            params,
            RunOptions::default(),
            Some(run),
        )
        .await;
    let outcome = match r {
        Ok(_) => {
            app.metrics
                .fired(kaon_runtime::now_ms() as i64 - tick.due_ms);
            STARTED.to_string()
        }
        Err(e) if e.status.is_server_error() => return Err(e),
        Err(e) => format!("failed: {}", e.message),
    };
    app.store
        .set_tick(&tick.schedule, &tick.tick, &outcome)
        .await?;
    Ok(())
}

/// A run of the schedule that is still running, if any. Under `skip` and
/// `queue` a run starts only when none is going, so the newest started
/// (or pending) tick's run is the only one that can be, however many
/// ticks were skipped or queued after it.
async fn active_run(app: &App, schedule: &str) -> Result<Option<String>, ApiError> {
    for outcome in [PENDING, STARTED] {
        let Some(t) = app.store.latest_tick(schedule, outcome).await? else {
            continue;
        };
        let Some(r) = t.run else { continue };
        match app.store.run(&r).await? {
            Some(row) if row.status == RunStatus::Running => return Ok(Some(r)),
            // A pending tick's run not created yet counts as running.
            None if outcome == PENDING => return Ok(Some(r)),
            _ => {}
        }
    }
    Ok(None)
}

/// Starts pending ticks' runs (a server stopped between recording a tick
/// and creating its run), and queued ticks whose schedule has nothing
/// running any more, oldest first.
async fn recover(app: &App) -> Result<(), ApiError> {
    let schedules = app.store.schedules().await?;
    let find = |id: &str| schedules.iter().find(|s| s.id == id);
    for t in app.store.ticks_with(PENDING).await? {
        if let Some(s) = find(&t.schedule)
            && let Err(e) = start(app, s, &t).await
        {
            eprintln!("kaon server: schedule {}: tick {}: {e}", t.schedule, t.tick);
        }
    }
    let mut seen = HashSet::new();
    for t in app.store.ticks_with(QUEUED).await? {
        // One queued tick per schedule per turn: the next waits for it.
        if !seen.insert(t.schedule.clone()) {
            continue;
        }
        // A paused schedule starts nothing, its queue included.
        let Some(s) = find(&t.schedule).filter(|s| !s.paused) else {
            continue;
        };
        let lock = app.schedule_lock(&s.id);
        let held = lock.lock().await;
        if active_run(app, &s.id).await?.is_some() {
            continue;
        }
        let promoted = app.store.set_tick(&t.schedule, &t.tick, PENDING).await?;
        drop(held);
        if promoted && let Err(e) = start(app, s, &t).await {
            eprintln!("kaon server: schedule {}: tick {}: {e}", t.schedule, t.tick);
        }
    }
    Ok(())
}
