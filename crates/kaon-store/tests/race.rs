//! Eight OS processes race on one database, a SQLite file or a PostgreSQL
//! database: they claim runs (taking over leases that expired), commit numbered transitions for the runs they
//! hold, release or abandon them, and post to the runs' inboxes. The
//! parent then checks, from the database and the children's logs, that no
//! acknowledged transition was lost or doubled, that each run's transitions
//! came from one holder at a time in claim order, that no commit was
//! accepted from a holder that had already lost the run (fencing), and that
//! every inbox message was consumed at most once.
//!
//! The children are this test binary run again with [`CHILD`] set: only
//! the `race_child` test does anything then.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{
    Batch, Durability, MessageBody, NodeRow, PgStore, RunRow, SqliteStore, StateStore, StoreError,
};
use serde_json::{Value, json};

/// Set in a child: its index.
const CHILD: &str = "KAON_RACE_CHILD";
/// The database: a SQLite file's path or a PostgreSQL URL.
const DB: &str = "KAON_RACE_DB";
/// Where a child writes its log (JSON lines).
const LOG: &str = "KAON_RACE_LOG";

const PROCESSES: usize = 8;
/// Fewer runs than processes, so that they fight over them.
const RUNS: usize = 5;
/// A holder whose heartbeat is older than this may be taken over.
const LEASE_MS: i64 = 20;
/// How long a child claims, commits and posts.
const BUSY: Duration = Duration::from_millis(1200);
/// How long after that a child waits for its abandoned runs to be taken
/// over (to try its stale commit) while still taking over others'.
const GRACE: Duration = Duration::from_millis(1000);

fn run_id(i: usize) -> String {
    format!("run{i}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Wall-clock nanoseconds: one clock for all processes of the machine.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[test]
fn eight_processes_race_on_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kaon.db");
    race(dir.path(), db.to_str().unwrap());
}

/// The same race on PostgreSQL, where the fencing is a row lock rather
/// than SQLite's one writer at a time.
#[test]
fn eight_processes_race_on_one_postgres_database() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(kaon_pgtest::database());
    race(dir.path(), db.url());
}

fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Runs the race on `db` (a SQLite file's path or a PostgreSQL URL), the
/// children's logs in `dir`, and checks what it left.
fn race(dir: &Path, db: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if is_postgres(db) {
            create_runs(&PgStore::connect_and_migrate(db).await.unwrap()).await;
        } else {
            let s = SqliteStore::open(Path::new(db), Durability::Process)
                .await
                .unwrap();
            create_runs(&s).await;
        }
    });

    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env(CHILD, i.to_string())
                .env(DB, db)
                .env(LOG, log_path(dir, i))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child {i} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let took = started.elapsed();

    let mut events = Vec::new();
    for i in 0..PROCESSES {
        let text = std::fs::read_to_string(log_path(dir, i)).unwrap();
        events.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let stored = rt.block_on(async {
        if is_postgres(db) {
            read_back(&PgStore::connect(db).await.unwrap()).await
        } else {
            read_back(
                &SqliteStore::open(Path::new(db), Durability::Process)
                    .await
                    .unwrap(),
            )
            .await
        }
    });
    let report = check(&events, &stored);
    eprintln!(
        "race: {} processes on {}, {:?}; {}",
        PROCESSES,
        if is_postgres(db) {
            "postgres"
        } else {
            "sqlite"
        },
        took,
        report.figures
    );
    assert!(
        report.violations.is_empty(),
        "{} violation(s) ({}):\n{}",
        report.violations.len(),
        report.figures,
        report
            .violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Without these the run proved nothing about fencing.
    assert!(report.takeovers > 0, "no lease was taken over");
    assert!(report.stale > 0, "no stale holder tried to commit");
}

async fn create_runs(s: &impl StateStore) {
    for i in 0..RUNS {
        s.create_run(&new_run(&run_id(i))).await.unwrap();
    }
}

/// Each run's nodes and unconsumed messages.
async fn read_back(
    s: &impl StateStore,
) -> BTreeMap<String, (Vec<NodeRow>, Vec<kaon_store::Message>)> {
    let mut out = BTreeMap::new();
    for i in 0..RUNS {
        let id = run_id(i);
        let nodes = s.nodes(&id).await.unwrap();
        let inbox = s.inbox(&id).await.unwrap();
        out.insert(id, (nodes, inbox));
    }
    out
}

/// The child's side; does nothing in the parent process.
#[test]
fn race_child() {
    let Ok(me) = std::env::var(CHILD) else {
        return;
    };
    let me: usize = me.parse().unwrap();
    let db = std::env::var(DB).unwrap();
    let log = PathBuf::from(std::env::var_os(LOG).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lines = rt.block_on(async move {
        if is_postgres(&db) {
            Child::new(PgStore::connect(&db).await.unwrap(), me)
                .work()
                .await
        } else {
            let s = SqliteStore::open(Path::new(&db), Durability::Process)
                .await
                .unwrap();
            Child::new(s, me).work().await
        }
    });
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    std::fs::write(log, text).unwrap();
}

fn log_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("child-{i}.log"))
}

/// The stored kind of a write: `claim` (a holder's first), `step` (its
/// next ones) or `stale` (one that must be fenced off). Any kinds serve, as
/// long as they differ.
fn kind_of(write: &str) -> NodeKind {
    match write {
        "claim" => NodeKind::Marker,
        "step" => NodeKind::Command,
        _ => NodeKind::Noop,
    }
}

fn new_run(id: &str) -> RunRow {
    RunRow {
        id: id.into(),
        workflow: "race".into(),
        path: "race.toml".into(),
        digest: "d".into(),
        params: "{}".into(),
        options: "{}".into(),
        parent: None,
        status: RunStatus::Running,
        data: "{}".into(),
        created_ms: 1,
        finished_ms: None,
        owner: None,
        heartbeat_ms: None,
    }
}

/// A run this child stopped heartbeating without letting go: once someone
/// else holds it, the child commits as a driver that has not noticed yet.
struct Abandoned {
    run: String,
    token: String,
    seq: u32,
    k: u32,
}

struct Child<S> {
    store: S,
    me: usize,
    rng: u64,
    acquisitions: u32,
    posts: u32,
    /// Claims, commits and posts as they happened.
    log: Vec<Value>,
}

impl<S: StateStore> Child<S> {
    fn new(store: S, me: usize) -> Child<S> {
        Child {
            store,
            me,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (me as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            acquisitions: 0,
            posts: 0,
            log: Vec::new(),
        }
    }

    fn next(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    /// Claims, commits and posts for a while; what it did, as log lines.
    async fn work(mut self) -> Vec<Value> {
        let start = Instant::now();
        let mut abandoned: Vec<Abandoned> = Vec::new();
        loop {
            let mut waiting = Vec::new();
            for a in std::mem::take(&mut abandoned) {
                let row = self.store.run(&a.run).await.unwrap().unwrap();
                if row.owner.as_deref() == Some(a.token.as_str()) {
                    waiting.push(a);
                } else {
                    self.commit(&a.run, a.seq, &a.token, a.k, "stale", None, Vec::new())
                        .await;
                }
            }
            abandoned = waiting;
            let busy = start.elapsed() < BUSY;
            if !busy && (abandoned.is_empty() || start.elapsed() > BUSY + GRACE) {
                break;
            }
            if busy && self.next(3) == 0 {
                self.post().await;
            }
            let run = run_id(self.next(RUNS as u64) as usize);
            let Some((token, from)) = self.acquire(&run).await else {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let Some((seq, k)) = self.drive(&run, &token, from).await else {
                continue;
            };
            if busy && self.next(3) == 0 {
                abandoned.push(Abandoned { run, token, seq, k });
            } else {
                self.cas(&run, Some(&token), None).await;
            }
        }
        self.log
    }

    /// Takes `run` if it is free or its holder's lease expired.
    async fn acquire(&mut self, run: &str) -> Option<(String, Option<String>)> {
        let row = self.store.run(run).await.unwrap().unwrap();
        let from = match row.owner {
            None => None,
            Some(o) if now_ms() - row.heartbeat_ms.unwrap_or(0) > LEASE_MS => Some(o),
            Some(_) => return None,
        };
        self.acquisitions += 1;
        let token = format!("w{}-{}", self.me, self.acquisitions);
        self.cas(run, from.as_deref(), Some(&token))
            .await
            .then_some((token, from))
    }

    /// A logged claim; false when someone else got there first.
    async fn cas(&mut self, run: &str, from: Option<&str>, to: Option<&str>) -> bool {
        let t0 = now_ns();
        let r = self.store.claim(run, from, to, now_ms()).await;
        let t1 = now_ns();
        match r {
            Ok(()) => {
                self.log.push(json!({
                    "ev": "claim", "run": run, "from": from, "to": to, "t0": t0, "t1": t1,
                }));
                true
            }
            Err(StoreError::Held { .. }) => false,
            Err(e) => panic!("child {}: claim of {run} failed: {e}", self.me),
        }
    }

    /// Commits a claim marker and a few transitions while holding `run`;
    /// the next sequence number and step when it still holds it after.
    async fn drive(&mut self, run: &str, token: &str, from: Option<String>) -> Option<(u32, u32)> {
        let nodes = self.store.nodes(run).await.unwrap();
        let base = nodes.last().map_or(0, |n| n.id + 1);
        if !self
            .commit(run, base, token, 0, "claim", from, Vec::new())
            .await
        {
            return None;
        }
        let steps = 1 + self.next(5) as u32;
        for k in 1..=steps {
            if k % 2 == 0 && !self.store.heartbeat(run, token, now_ms()).await.unwrap() {
                return None;
            }
            let consumed: Vec<i64> = if self.next(2) == 0 {
                let inbox = self.store.inbox(run).await.unwrap();
                inbox.iter().take(2).map(|m| m.id).collect()
            } else {
                Vec::new()
            };
            if !self
                .commit(run, base + k, token, k, "step", None, consumed)
                .await
            {
                return None;
            }
        }
        Some((base + steps + 1, steps + 1))
    }

    /// Commits transition `seq` of `run` as `token`'s `k`th; false when the
    /// store refused it because `token` no longer holds the run.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &mut self,
        run: &str,
        seq: u32,
        token: &str,
        k: u32,
        kind: &str,
        prev: Option<String>,
        consumed: Vec<i64>,
    ) -> bool {
        let uid = format!("{token}/{k}");
        let node = NodeRow {
            id: seq,
            scope: 0,
            key: uid.clone(),
            name: token.into(),
            kind: kind_of(kind),
            state: NodeState::Succeeded,
            attempt: k,
            started_ms: None,
            finished_ms: None,
            data: json!({ "prev": prev, "consumed": consumed }).to_string(),
        };
        let batch = Batch {
            run: run.into(),
            nodes: vec![node],
            consumed,
            owner: Some(token.into()),
            ..Batch::default()
        };
        let t0 = now_ns();
        let r = self.store.commit(&[batch]).await;
        let t1 = now_ns();
        let ok = match r {
            Ok(()) => true,
            Err(StoreError::Held { .. }) => false,
            Err(e) => panic!("child {}: commit to {run} failed: {e}", self.me),
        };
        self.log.push(json!({
            "ev": "commit", "run": run, "seq": seq, "token": token, "k": k, "uid": uid,
            "stale": kind == "stale", "ok": ok, "t0": t0, "t1": t1,
        }));
        ok
    }

    async fn post(&mut self) {
        let run = run_id(self.next(RUNS as u64) as usize);
        self.posts += 1;
        let uid = format!("m{}-{}", self.me, self.posts);
        let body = MessageBody::Signal {
            name: "race".into(),
            value: json!({ "uid": uid }).to_string(),
        };
        let id = self.store.post(&run, &body, now_ms()).await.unwrap();
        self.log
            .push(json!({ "ev": "post", "run": run, "id": id, "uid": uid }));
    }
}

/// What the parent found.
struct Report {
    violations: Vec<String>,
    figures: String,
    takeovers: usize,
    stale: usize,
}

/// A successful claim from the logs.
struct Cas {
    from: Option<String>,
    to: Option<String>,
    t1: u64,
}

fn check(
    events: &[Value],
    stored: &BTreeMap<String, (Vec<NodeRow>, Vec<kaon_store::Message>)>,
) -> Report {
    let mut v = Vec::new();
    let s = |e: &Value, k: &str| e[k].as_str().map(str::to_string);
    let n = |e: &Value, k: &str| e[k].as_u64().unwrap_or(0);

    // Claims per run: who each token took the run from, and the one
    // compare-and-set that took it away from each token.
    let mut came_from: HashMap<(String, String), Option<String>> = HashMap::new();
    let mut left: HashMap<(String, String), Cas> = HashMap::new();
    let (mut takeovers, mut releases, mut fresh) = (0, 0, 0);
    for e in events.iter().filter(|e| e["ev"] == "claim") {
        let run = s(e, "run").unwrap();
        let cas = Cas {
            from: s(e, "from"),
            to: s(e, "to"),
            t1: n(e, "t1"),
        };
        match (&cas.from, &cas.to) {
            (Some(_), Some(_)) => takeovers += 1,
            (Some(_), None) => releases += 1,
            (None, _) => fresh += 1,
        }
        if let Some(to) = &cas.to
            && came_from
                .insert((run.clone(), to.clone()), cas.from.clone())
                .is_some()
        {
            v.push(format!("{run}: token {to} claimed twice"));
        }
        if let Some(from) = &cas.from {
            let key = (run.clone(), from.clone());
            if left.contains_key(&key) {
                v.push(format!(
                    "{run}: two claims both took the run from {from}: two owners at once"
                ));
            }
            left.insert(key, cas);
        }
    }

    // Every acknowledged commit is stored once, under its number; nothing
    // refused is stored; a holder that had lost the run is refused.
    let mut acked: HashMap<String, (String, u32)> = HashMap::new();
    let (mut accepted, mut refused, mut stale, mut stale_accepted) = (0, 0, 0, 0);
    for e in events.iter().filter(|e| e["ev"] == "commit") {
        let run = s(e, "run").unwrap();
        let token = s(e, "token").unwrap();
        let uid = s(e, "uid").unwrap();
        let is_stale = e["stale"] == true;
        stale += usize::from(is_stale);
        if e["ok"] != true {
            refused += 1;
            continue;
        }
        accepted += 1;
        acked.insert(uid.clone(), (run.clone(), n(e, "seq") as u32));
        if is_stale {
            stale_accepted += 1;
            v.push(format!(
                "{run}: commit {uid} accepted from {token} after it saw another holder take the run"
            ));
        }
        if let Some(cas) = left.get(&(run.clone(), token.clone()))
            && n(e, "t0") > cas.t1
        {
            v.push(format!(
                "{run}: commit {uid} by {token} began {} µs after {token} lost the run (to {:?}) and was accepted",
                (n(e, "t0") - cas.t1) / 1000,
                cas.to
            ));
        }
    }
    let mut in_db: HashMap<String, (String, u32)> = HashMap::new();
    let mut consumed: BTreeMap<i64, usize> = BTreeMap::new();
    let mut pending: BTreeMap<i64, String> = BTreeMap::new();
    let mut transitions = 0;
    for (run, (nodes, inbox)) in stored {
        transitions += nodes.len();
        for (i, node) in nodes.iter().enumerate() {
            if node.id as usize != i {
                v.push(format!(
                    "{run}: transition {i} is missing (next stored is {})",
                    node.id
                ));
                break;
            }
        }
        for node in nodes {
            in_db.insert(node.key.clone(), (run.clone(), node.id));
            let data: Value = serde_json::from_str(&node.data).unwrap();
            for id in data["consumed"].as_array().into_iter().flatten() {
                *consumed.entry(id.as_i64().unwrap()).or_default() += 1;
            }
        }
        for m in inbox {
            let MessageBody::Signal { value, .. } = &m.body else {
                v.push(format!("{run}: message {} changed kind", m.id));
                continue;
            };
            pending.insert(m.id, value.clone());
        }
        check_blocks(run, nodes, &came_from, &left, &mut v);
    }
    for (uid, at) in &acked {
        match in_db.get(uid) {
            None => v.push(format!(
                "{}: acknowledged transition {uid} (number {}) is lost",
                at.0, at.1
            )),
            Some(got) if got != at => v.push(format!(
                "{}: transition {uid} stored as number {} not {}",
                at.0, got.1, at.1
            )),
            Some(_) => {}
        }
    }
    for (uid, at) in &in_db {
        if !acked.contains_key(uid) {
            v.push(format!(
                "{}: transition {uid} stored but never acknowledged",
                at.0
            ));
        }
    }

    // Inbox: each message posted is either consumed once or still pending.
    let mut posts = 0;
    let mut posted = BTreeSet::new();
    for e in events.iter().filter(|e| e["ev"] == "post") {
        posts += 1;
        let id = e["id"].as_i64().unwrap();
        let uid = s(e, "uid").unwrap();
        posted.insert(id);
        let times = consumed.get(&id).copied().unwrap_or(0);
        match (times, pending.get(&id)) {
            (1, None) => {}
            (0, Some(value)) if value.contains(&uid) => {}
            (0, Some(value)) => v.push(format!("message {id} ({uid}) now reads {value}")),
            (0, None) => v.push(format!("message {id} ({uid}) is lost")),
            (t, p) => v.push(format!(
                "message {id} ({uid}) consumed {t} times{}",
                if p.is_some() {
                    " and still pending"
                } else {
                    ""
                }
            )),
        }
    }
    for id in consumed.keys().chain(pending.keys()) {
        if !posted.contains(id) {
            v.push(format!("message {id} was never posted"));
        }
    }
    let figures = format!(
        "{fresh} claims of free runs, {takeovers} takeovers, {releases} releases; \
         {accepted} commits accepted, {refused} refused; {stale} stale commits tried, \
         {stale_accepted} accepted; {transitions} transitions stored; {posts} messages, \
         {} consumed",
        consumed.len()
    );
    Report {
        violations: v,
        figures,
        takeovers,
        stale,
    }
}

/// A run's transitions, in order, come in blocks of one holder each: its
/// claim marker then its steps 1, 2, ...; no holder has two blocks; and
/// each block follows the previous one in the claim history (taken over
/// from it, or the run was let go in between).
fn check_blocks(
    run: &str,
    nodes: &[NodeRow],
    came_from: &HashMap<(String, String), Option<String>>,
    left: &HashMap<(String, String), Cas>,
    v: &mut Vec<String>,
) {
    let holders: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let key = |t: &str| (run.to_string(), t.to_string());
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut prev: Option<&NodeRow> = None;
    for node in nodes {
        let same = prev.is_some_and(|p| p.name == node.name);
        if same {
            let p = prev.map_or(0, |p| p.attempt);
            if node.attempt != p + 1 {
                v.push(format!(
                    "{run}: {} wrote step {} after step {p}",
                    node.name, node.attempt
                ));
            }
        } else {
            if !seen.insert(node.name.as_str()) {
                v.push(format!(
                    "{run}: {} wrote again at transition {} after another holder wrote",
                    node.name, node.id
                ));
            }
            if node.attempt != 0 || node.kind != kind_of("claim") {
                v.push(format!(
                    "{run}: {} began at transition {} with {} {} instead of its claim",
                    node.name, node.id, node.kind, node.attempt
                ));
            }
            // Where the previous block's holder went, skipping holders
            // that never wrote; and where this one came from.
            let mut back = came_from.get(&key(&node.name)).cloned().flatten();
            while let Some(t) = back.clone().filter(|t| !holders.contains(t.as_str())) {
                back = came_from.get(&key(&t)).cloned().flatten();
            }
            match prev {
                None if back.is_some() => v.push(format!(
                    "{run}: the first writer {} took the run from {back:?}, who wrote nothing before",
                    node.name
                )),
                None => {}
                Some(p) => {
                    let mut fwd = Some(p.name.clone());
                    let gone = loop {
                        let Some(t) = fwd.clone() else {
                            break true;
                        };
                        match left.get(&key(&t)) {
                            None => break false,
                            Some(c) => {
                                fwd = c.to.clone();
                                if fwd.as_deref().is_some_and(|f| holders.contains(f)) {
                                    break true;
                                }
                            }
                        }
                    };
                    let follows = match (&fwd, &back) {
                        (Some(f), _) => *f == node.name,
                        (None, None) => true,
                        (None, Some(_)) => false,
                    };
                    if !gone || !follows {
                        v.push(format!(
                            "{run}: {} wrote at transition {} while the claim history has {} {}",
                            node.name,
                            node.id,
                            p.name,
                            if gone {
                                format!("followed by {fwd:?}")
                            } else {
                                "still holding the run".into()
                            }
                        ));
                    }
                }
            }
        }
        prev = Some(node);
    }
}
