//! The ServiceStore contract, run against every backend: deployed
//! workflows, schedules, ticks (exactly once, also under a race) and tokens.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::sync::Arc;

use kaon_store::{
    MemoryStore, PgStore, ScheduleRow, ServiceStore, SqliteStore, StoreError, TickRow, TokenRow,
    WorkflowRow,
};

fn workflow(name: &str, digest: &str, deployed_ms: i64) -> WorkflowRow {
    WorkflowRow {
        name: name.into(),
        digest: digest.into(),
        path: format!("/srv/{name}.toml"),
        sources: format!(r#"{{"{name}.toml":"digest {digest}"}}"#),
        spec: r#"{"schedules":[]}"#.into(),
        deployed_ms,
    }
}

fn schedule(id: &str, of: &WorkflowRow, spec: &str) -> ScheduleRow {
    ScheduleRow {
        id: id.into(),
        workflow: of.name.clone(),
        digest: of.digest.clone(),
        spec: spec.into(),
        paused: false,
        created_ms: of.deployed_ms,
    }
}

fn tick(schedule: &str, key: &str, due_ms: i64, outcome: &str) -> TickRow {
    TickRow {
        schedule: schedule.into(),
        tick: key.into(),
        due_ms,
        run: Some(format!("{schedule}@{key}")),
        outcome: outcome.into(),
        params: r#"{"day":"2024-01-01"}"#.into(),
        created_ms: due_ms + 1,
    }
}

fn token(id: &str, role: &str, created_ms: i64) -> TokenRow {
    TokenRow {
        id: id.into(),
        name: format!("token {id}"),
        role: role.into(),
        hash: format!("{id:0>64}"),
        created_ms,
        revoked_ms: None,
    }
}

/// (schedule, tick key, due) of each tick, to compare orders.
fn keys(ticks: &[TickRow]) -> Vec<(&str, &str, i64)> {
    ticks
        .iter()
        .map(|t| (t.schedule.as_str(), t.tick.as_str(), t.due_ms))
        .collect()
}

async fn deploying_the_latest_version_changes_nothing(s: &impl ServiceStore) {
    let v1 = workflow("etl", "d1", 10);
    let daily = schedule("etl/daily", &v1, r#"{"cron":"0 3 * * *"}"#);
    let hourly = schedule("etl/hourly", &v1, r#"{"cron":"0 * * * *"}"#);
    assert!(
        s.deploy(&v1, &[daily.clone(), hourly.clone()])
            .await
            .unwrap()
    );
    assert!(s.set_paused("etl/hourly", true).await.unwrap());
    let before = (s.workflows().await.unwrap(), s.schedules().await.unwrap());
    assert_eq!(before.0, std::slice::from_ref(&v1));

    // The same (name, digest) again, with other fields and schedules.
    let mut again = v1.clone();
    again.deployed_ms = 99;
    again.path = "/elsewhere.toml".into();
    let mut other = schedule("etl/weekly", &again, "{}");
    other.created_ms = 99;
    assert!(!s.deploy(&again, &[other]).await.unwrap());
    assert!(!s.deploy(&again, &[]).await.unwrap());
    assert_eq!(
        (s.workflows().await.unwrap(), s.schedules().await.unwrap()),
        before,
        "the latest version is deployed once"
    );
    assert_eq!(s.workflow("etl", None).await.unwrap(), Some(v1));
}

async fn deploying_an_older_version_rolls_back(s: &impl ServiceStore) {
    let v1 = workflow("etl", "d1", 10);
    let daily1 = schedule("etl/daily", &v1, r#"{"cron":"0 3 * * *"}"#);
    let hourly1 = schedule("etl/hourly", &v1, r#"{"cron":"0 * * * *"}"#);
    assert!(s.deploy(&v1, &[daily1.clone(), hourly1]).await.unwrap());
    let v2 = workflow("etl", "d2", 20);
    let daily2 = schedule("etl/daily", &v2, r#"{"cron":"0 4 * * *"}"#);
    let weekly2 = schedule("etl/weekly", &v2, r#"{"cron":"0 0 * * 1"}"#);
    assert!(s.deploy(&v2, &[daily2, weekly2]).await.unwrap());
    assert!(s.set_paused("etl/daily", true).await.unwrap());
    assert!(
        s.record_tick(&tick("etl/weekly", "2024-01-01T00:00:00Z", 15, "started"))
            .await
            .unwrap()
    );

    // Last week's file again, from elsewhere, with v1's schedules.
    let mut again = v1.clone();
    again.deployed_ms = 30;
    again.path = "/srv/old/etl.toml".into();
    let daily = schedule("etl/daily", &again, r#"{"cron":"0 3 * * *"}"#);
    let hourly = schedule("etl/hourly", &again, r#"{"cron":"0 * * * *"}"#);
    assert!(
        !s.deploy(&again, &[daily, hourly.clone()]).await.unwrap(),
        "not a new version"
    );
    assert_eq!(
        s.workflows().await.unwrap(),
        std::slice::from_ref(&again),
        "the older version is the latest again, deployed now from its new path"
    );
    assert_eq!(s.workflow("etl", None).await.unwrap(), Some(again.clone()));
    assert_eq!(s.workflow("etl", Some("d2")).await.unwrap(), Some(v2));
    let daily = ScheduleRow {
        paused: true,
        ..daily1
    };
    assert_eq!(
        s.schedules().await.unwrap(),
        [daily, hourly],
        "v1's schedules: kept ids keep paused and created_ms, gone ids are deleted"
    );
    assert_eq!(
        s.ticks("etl/weekly", 10).await.unwrap().len(),
        1,
        "a deleted schedule's ticks stay"
    );

    // Now it is the latest: deploying it again changes nothing.
    let before = (s.workflows().await.unwrap(), s.schedules().await.unwrap());
    let mut later = again.clone();
    later.deployed_ms = 40;
    later.path = "/elsewhere.toml".into();
    let other = schedule("etl/other", &later, "{}");
    assert!(!s.deploy(&later, &[other]).await.unwrap());
    assert_eq!(
        (s.workflows().await.unwrap(), s.schedules().await.unwrap()),
        before,
        "deployed_ms, path and schedules unchanged"
    );
}

async fn a_new_version_is_latest_and_replaces_schedules(s: &impl ServiceStore) {
    let v1 = workflow("etl", "d1", 10);
    assert!(
        s.deploy(
            &v1,
            &[
                schedule("etl/daily", &v1, r#"{"cron":"0 3 * * *"}"#),
                schedule("etl/hourly", &v1, r#"{"cron":"0 * * * *"}"#),
            ],
        )
        .await
        .unwrap()
    );
    let other = workflow("ads", "a1", 5);
    let ads = schedule("ads/on-etl", &other, r#"{"after":"etl"}"#);
    assert!(s.deploy(&other, std::slice::from_ref(&ads)).await.unwrap());
    assert!(s.set_paused("etl/daily", true).await.unwrap());
    assert!(
        s.record_tick(&tick("etl/hourly", "2024-01-01T00:00:00Z", 1, "started"))
            .await
            .unwrap()
    );

    // v2 keeps `daily` (new spec), drops `hourly`, adds `weekly`.
    let v2 = workflow("etl", "d2", 20);
    let mut daily2 = schedule("etl/daily", &v2, r#"{"cron":"0 4 * * *"}"#);
    daily2.paused = false; // what the new file says does not resume it
    let weekly = schedule("etl/weekly", &v2, r#"{"cron":"0 0 * * 1"}"#);
    assert!(s.deploy(&v2, &[daily2, weekly.clone()]).await.unwrap());

    assert_eq!(
        s.workflows().await.unwrap(),
        [other.clone(), v2.clone()],
        "the latest version of each workflow, by name"
    );
    assert_eq!(s.workflow("etl", None).await.unwrap(), Some(v2.clone()));
    assert_eq!(s.workflow("etl", Some("d1")).await.unwrap(), Some(v1));
    assert_eq!(s.workflow("etl", Some("d3")).await.unwrap(), None);
    assert_eq!(s.workflow("nope", None).await.unwrap(), None);

    let daily = ScheduleRow {
        id: "etl/daily".into(),
        workflow: "etl".into(),
        digest: "d2".into(),
        spec: r#"{"cron":"0 4 * * *"}"#.into(),
        paused: true,
        created_ms: 10,
    };
    assert_eq!(
        s.schedules().await.unwrap(),
        [ads, daily, weekly],
        "by id; kept ids keep paused and created_ms, gone ids are deleted, \
         other workflows' schedules are untouched"
    );
    assert_eq!(
        s.ticks("etl/hourly", 10).await.unwrap().len(),
        1,
        "a deleted schedule's ticks stay"
    );
    assert!(!s.set_paused("etl/hourly", false).await.unwrap());

    // A version without schedules removes them all.
    let v3 = workflow("etl", "d3", 30);
    assert!(s.deploy(&v3, &[]).await.unwrap());
    let ids: Vec<String> = s
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["ads/on-etl"]);

    // Versions deployed in the same millisecond: the greatest digest wins.
    for digest in ["m5", "m9", "m1"] {
        assert!(s.deploy(&workflow("tie", digest, 7), &[]).await.unwrap());
    }
    assert_eq!(s.workflow("tie", None).await.unwrap().unwrap().digest, "m9");
    let latest: Vec<(String, String)> = s
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.name, w.digest))
        .collect();
    assert_eq!(
        latest,
        [
            ("ads".to_string(), "a1".to_string()),
            ("etl".into(), "d3".into()),
            ("tie".into(), "m9".into()),
        ]
    );
}

async fn pausing(s: &impl ServiceStore) {
    assert!(!s.set_paused("nope/x", true).await.unwrap());
    let v = workflow("w", "d", 1);
    s.deploy(&v, &[schedule("w/a", &v, "{}")]).await.unwrap();
    assert!(s.set_paused("w/a", true).await.unwrap());
    assert!(s.set_paused("w/a", true).await.unwrap(), "already paused");
    assert!(s.schedules().await.unwrap()[0].paused);
    assert!(s.set_paused("w/a", false).await.unwrap());
    assert!(!s.schedules().await.unwrap()[0].paused);
}

async fn a_tick_is_recorded_once(s: &impl ServiceStore) {
    let first = tick("w/a", "2024-01-01T03:00:00Z", 100, "queued");
    assert!(s.record_tick(&first).await.unwrap());
    let mut second = first.clone();
    second.outcome = "skipped: overlap".into();
    second.run = None;
    second.params = "{}".into();
    second.created_ms = 500;
    assert!(!s.record_tick(&second).await.unwrap());
    assert!(!s.record_tick(&first).await.unwrap());
    assert_eq!(
        s.ticks("w/a", 10).await.unwrap(),
        std::slice::from_ref(&first),
        "the first record is kept"
    );

    // The same key on another schedule is another tick.
    assert!(
        s.record_tick(&tick("w/b", "2024-01-01T03:00:00Z", 100, "started"))
            .await
            .unwrap()
    );

    // A queued tick starts; its run stays the one recorded.
    assert!(
        s.set_tick("w/a", "2024-01-01T03:00:00Z", "started")
            .await
            .unwrap()
    );
    let mut started = first;
    started.outcome = "started".into();
    assert_eq!(s.ticks("w/a", 10).await.unwrap(), [started]);
    assert!(
        !s.set_tick("w/a", "2024-01-02T03:00:00Z", "started")
            .await
            .unwrap()
    );
    assert!(
        !s.set_tick("w/c", "2024-01-01T03:00:00Z", "started")
            .await
            .unwrap()
    );
}

async fn ticks_in_order(s: &impl ServiceStore) {
    for t in [
        tick("w/a", "t20", 20, "started"),
        tick("w/a", "t40", 40, "queued"),
        tick("w/a", "t10", 10, "skipped: paused"),
        tick("w/a", "t30", 30, "queued"),
        tick("w/a", "u30", 30, "started"),
        tick("w/b", "t05", 5, "queued"),
        tick("w/b", "t50", 50, "started"),
    ] {
        assert!(s.record_tick(&t).await.unwrap());
    }
    assert_eq!(
        keys(&s.ticks("w/a", 10).await.unwrap()),
        [
            ("w/a", "t40", 40),
            ("w/a", "u30", 30),
            ("w/a", "t30", 30),
            ("w/a", "t20", 20),
            ("w/a", "t10", 10),
        ],
        "latest due first, ties by key"
    );
    assert_eq!(
        keys(&s.ticks("w/a", 2).await.unwrap()),
        [("w/a", "t40", 40), ("w/a", "u30", 30)]
    );
    assert!(s.ticks("w/a", 0).await.unwrap().is_empty());
    assert!(s.ticks("w/none", 10).await.unwrap().is_empty());

    assert_eq!(
        keys(&s.ticks_with("queued").await.unwrap()),
        [("w/b", "t05", 5), ("w/a", "t30", 30), ("w/a", "t40", 40)],
        "every schedule's, oldest due first"
    );
    assert_eq!(
        keys(&s.ticks_with("started").await.unwrap()),
        [("w/a", "t20", 20), ("w/a", "u30", 30), ("w/b", "t50", 50)]
    );
    assert!(
        s.ticks_with("skipped").await.unwrap().is_empty(),
        "outcomes are compared whole"
    );
    assert!(s.set_tick("w/a", "t30", "started").await.unwrap());
    assert_eq!(
        keys(&s.ticks_with("queued").await.unwrap()),
        [("w/b", "t05", 5), ("w/a", "t40", 40)]
    );
    assert_eq!(
        keys(&s.ticks_with("started").await.unwrap()),
        [
            ("w/a", "t20", 20),
            ("w/a", "t30", 30),
            ("w/a", "u30", 30),
            ("w/b", "t50", 50)
        ]
    );
    // The newest of one outcome, past newer ticks of others; ties by key.
    let latest = |sched: &'static str, outcome: &'static str| async move {
        s.latest_tick(sched, outcome)
            .await
            .unwrap()
            .map(|t| (t.tick, t.due_ms))
    };
    assert_eq!(latest("w/a", "started").await, Some(("u30".into(), 30)));
    assert_eq!(latest("w/a", "queued").await, Some(("t40".into(), 40)));
    assert_eq!(latest("w/b", "started").await, Some(("t50".into(), 50)));
    assert_eq!(latest("w/a", "skipped").await, None);
    assert_eq!(latest("w/none", "started").await, None);
}

async fn tokens(s: &impl ServiceStore) {
    assert_eq!(s.token("t1").await.unwrap(), None);
    assert!(s.tokens().await.unwrap().is_empty());
    let t1 = token("t1", "read", 1);
    for t in [
        &t1,
        &token("t2", "admin", 3),
        &token("r1", "run:20240101-abc", 4),
        &token("t3", "operate", 2),
        &token("t4", "operate", 3),
    ] {
        s.create_token(t).await.unwrap();
    }
    let mut dup = token("t1", "admin", 9);
    dup.hash = "f".repeat(64);
    let err = s.create_token(&dup).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::TokenExists(id) if id == "t1"),
        "{err:?}"
    );
    assert_eq!(
        s.token("t1").await.unwrap(),
        Some(t1.clone()),
        "a duplicate create must not overwrite"
    );
    let ids = |v: Vec<TokenRow>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.tokens().await.unwrap()),
        ["t4", "t2", "t3", "t1"],
        "newest first (ties by id), no run's own token"
    );
    assert_eq!(
        s.token("r1").await.unwrap().unwrap().role,
        "run:20240101-abc",
        "a run's token is found by id"
    );

    assert!(s.revoke_token("t1", 50).await.unwrap());
    assert!(!s.revoke_token("t1", 60).await.unwrap(), "revoked before");
    assert!(!s.revoke_token("nope", 60).await.unwrap());
    let revoked = TokenRow {
        revoked_ms: Some(50),
        ..t1
    };
    assert_eq!(s.token("t1").await.unwrap(), Some(revoked.clone()));
    assert_eq!(
        s.tokens().await.unwrap().last(),
        Some(&revoked),
        "revoked tokens are listed"
    );
    assert!(s.revoke_token("r1", 70).await.unwrap());
    assert_eq!(s.token("r1").await.unwrap().unwrap().revoked_ms, Some(70));
}

/// Eight tasks (with a store each: think eight servers) record the same
/// tick at once, many times over: exactly one of them wins every time, and
/// the winner's row is the one stored. The same for deploying one version.
async fn racers_record_a_tick_once<S: ServiceStore + 'static>(stores: Vec<Arc<S>>) {
    const ROUNDS: usize = 25;
    let n = stores.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
            tokio::spawn(async move {
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let mut t = tick("race/a", &format!("k{round:02}"), round as i64, "started");
                    t.run = Some(format!("run-{round}-by-{i}"));
                    t.outcome = format!("started by {i}");
                    if s.record_tick(&t).await.unwrap() {
                        won.push((round, i));
                    }
                    barrier.wait().await;
                    let v = workflow("race", &format!("d{round:02}"), round as i64);
                    let mut sched = schedule("race/a", &v, "{}");
                    sched.spec = format!(r#"{{"by":{i}}}"#);
                    if s.deploy(&v, &[sched]).await.unwrap() {
                        won.push((ROUNDS + round, i));
                    }
                }
                won
            })
        })
        .collect();
    let mut winners = vec![Vec::new(); 2 * ROUNDS];
    for t in tasks {
        for (round, i) in t.await.unwrap() {
            winners[round].push(i);
        }
    }
    for (round, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "round {round}: winners {w:?} of {n}");
    }
    let s = &stores[0];
    let stored = s.ticks("race/a", ROUNDS as u32 + 1).await.unwrap();
    assert_eq!(stored.len(), ROUNDS);
    for t in stored {
        let round: usize = t.tick[1..].parse().unwrap();
        let i = winners[round][0];
        assert_eq!(t.outcome, format!("started by {i}"), "round {round}");
        assert_eq!(t.run, Some(format!("run-{round}-by-{i}")));
    }
    let last = winners[2 * ROUNDS - 1][0];
    let latest = s.workflow("race", None).await.unwrap().unwrap();
    assert_eq!(latest.digest, format!("d{:02}", ROUNDS - 1));
    let schedules = s.schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].spec, format!(r#"{{"by":{last}}}"#));
    assert_eq!(schedules[0].created_ms, 0, "kept since the first deploy");
}

/// Eight servers deploy eight new versions of one workflow at once, each
/// with a schedule of its own beside a shared one, many times over: each
/// deployment replaces the schedules whole, so what is left is one
/// version's set, never a mix.
async fn racing_deploys_do_not_mix<S: ServiceStore + 'static>(stores: Vec<Arc<S>>) {
    const ROUNDS: usize = 15;
    let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let tasks: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (s, barrier) = (Arc::clone(s), Arc::clone(&barrier));
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let v = workflow("mix", &format!("r{round:02}-{i}"), round as i64);
                    let own = schedule(&format!("mix/own-{i}"), &v, "{}");
                    let shared = schedule("mix/shared", &v, "{}");
                    assert!(s.deploy(&v, &[own, shared]).await.unwrap());
                    barrier.wait().await;
                    if i == 0 {
                        let left = s.schedules().await.unwrap();
                        let digest = &left[0].digest;
                        let j = &digest[digest.len() - 1..];
                        let ids: Vec<&str> = left.iter().map(|s| s.id.as_str()).collect();
                        assert_eq!(ids, [format!("mix/own-{j}"), "mix/shared".into()]);
                        assert!(left.iter().all(|s| &s.digest == digest), "{left:?}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

macro_rules! service_contract {
    ($name:ident, $make:expr, $racers:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn deploying_the_latest_version_changes_nothing() {
                let (_keep, s) = $make;
                super::deploying_the_latest_version_changes_nothing(&s).await;
            }
            #[tokio::test]
            async fn deploying_an_older_version_rolls_back() {
                let (_keep, s) = $make;
                super::deploying_an_older_version_rolls_back(&s).await;
            }
            #[tokio::test]
            async fn a_new_version_is_latest_and_replaces_schedules() {
                let (_keep, s) = $make;
                super::a_new_version_is_latest_and_replaces_schedules(&s).await;
            }
            #[tokio::test]
            async fn pausing() {
                let (_keep, s) = $make;
                super::pausing(&s).await;
            }
            #[tokio::test]
            async fn a_tick_is_recorded_once() {
                let (_keep, s) = $make;
                super::a_tick_is_recorded_once(&s).await;
            }
            #[tokio::test]
            async fn ticks_in_order() {
                let (_keep, s) = $make;
                super::ticks_in_order(&s).await;
            }
            #[tokio::test]
            async fn tokens() {
                let (_keep, s) = $make;
                super::tokens(&s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racers_record_a_tick_once() {
                let (_keep, stores) = $racers;
                super::racers_record_a_tick_once(stores).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_deploys_do_not_mix() {
                let (_keep, stores) = $racers;
                super::racing_deploys_do_not_mix(stores).await;
            }
        }
    };
}

/// A store on a file in a fresh folder (removed with the guard).
async fn sqlite_file() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("kaon.db"), kaon_store::Durability::Full)
        .await
        .unwrap();
    (dir, s)
}

/// Eight stores on one file: eight servers on one database.
async fn sqlite_racers() -> (tempfile::TempDir, Vec<Arc<SqliteStore>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaon.db");
    let mut stores = Vec::new();
    for _ in 0..8 {
        let s = SqliteStore::open(&path, kaon_store::Durability::Process)
            .await
            .unwrap();
        stores.push(Arc::new(s));
    }
    (dir, stores)
}

service_contract!(service_memory, ((), MemoryStore::new()), {
    let s = Arc::new(MemoryStore::new());
    ((), vec![s; 8])
});
service_contract!(service_sqlite, sqlite_file().await, sqlite_racers().await);

/// A store on a fresh database (dropped with the guard).
async fn postgres() -> (kaon_pgtest::TestDb, PgStore) {
    let db = kaon_pgtest::database().await;
    let s = PgStore::connect_and_migrate(db.url()).await.unwrap();
    (db, s)
}

/// Eight stores (eight pools) on one database: eight servers.
async fn postgres_racers() -> (kaon_pgtest::TestDb, Vec<Arc<PgStore>>) {
    let (db, first) = postgres().await;
    let mut stores = vec![Arc::new(first)];
    for _ in 1..8 {
        stores.push(Arc::new(PgStore::connect(db.url()).await.unwrap()));
    }
    (db, stores)
}

service_contract!(
    service_postgresql,
    postgres().await,
    postgres_racers().await
);
