//! Why a step ran instead of reusing a memoized result, or whose result it
//! reused: what `kaon cache explain RUN STEP` prints and a server returns.
//!
//! For each instance of the step in the run, [`explain`] reads the memo key
//! record the driver stored when it decided ([`KeyRow`]) and gives a
//! [`Verdict`]: no key, memoized, or ran, with the reason it ran. A step
//! that ran without the driver recording why is compared with the closest
//! earlier run of the same step: the stored key parts (the `MemoKey` record
//! of `artifacts/kaon_artifacts.proto`) are diffed field by field, and the
//! earlier run with the fewest differences wins (the same instance, the
//! same for-each item, at equal distance).
//!
//! The result is data ([`serde::Serialize`]); [`Explanation::lines`] (and
//! its `Display`) is the text the command line prints.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use kaon_artifacts::proto::MemoKey;
use kaon_store::{ArtifactIndex, KeyRow, StateStore, StoreError};
use serde::Serialize;

/// How many earlier key records of a step are compared at most (the
/// newest).
const EARLIER: u32 = 500;

/// How a secret parameter's value appears in stored key parts (see
/// [`crate::secrets`]).
const SECRET: &str = "«secret ";

/// What [`explain`] found for one instance of the step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The instance key, e.g. `trainRegModel[pass=1, reg=europe]`.
    pub instance: String,
    /// Whether it ran or reused a result, and why.
    pub verdict: Verdict,
}

/// Whether a step instance ran or reused an earlier result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verdict {
    /// No memo key was recorded: the step has `cache = false`, is of a
    /// kind kaon does not cache, or never launched.
    NoKey,
    /// It reused the result of an earlier step run.
    Memoized {
        /// The memo key (`blake3:...`).
        key: String,
        /// The step run whose result it reused, as the node records it
        /// (`None` when the node does not say).
        from: Option<String>,
    },
    /// It ran.
    Ran {
        /// The memo key (`blake3:...`).
        key: String,
        /// Why it did not reuse a result.
        reason: Reason,
    },
}

/// Why a step instance ran instead of reusing a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Reason {
    /// The driver recorded why when it decided: a result that could not be
    /// put back, a memo index that could not be read.
    Recorded {
        /// What the driver said.
        why: String,
    },
    /// An earlier step run had the same key; its result was not reused
    /// because the run asked not to (`--no-cache`) or that step did not
    /// succeed with every artifact still in the store.
    SameKey {
        /// The newest earlier run with the same key.
        earlier: Earlier,
    },
    /// No earlier run of the step to compare with (none recorded, or none
    /// whose key parts read): a first run.
    First {
        /// The step's name.
        step: String,
    },
    /// The key differs from the closest earlier run of the step.
    Changed {
        /// The closest earlier run.
        earlier: Earlier,
        /// What changed since it, one human-readable line each
        /// (`code steps/train.py: 1a2b3c4d5e6f → 9f8e7d6c5b4a`). Secret
        /// values and environment values are never shown.
        changes: Vec<String>,
    },
}

/// An earlier step run compared with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Earlier {
    /// Its run.
    pub run: String,
    /// Its instance key.
    pub instance: String,
    /// When its key was computed (ms since the epoch).
    pub created_ms: i64,
}

/// Why a step cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No run with this id.
    #[error("no run `{run}`")]
    NoSuchRun {
        /// The run.
        run: String,
    },
    /// The run has no step of this name or instance key that started.
    #[error("run {run} has no step `{step}` that started")]
    NoSuchStep {
        /// The run.
        run: String,
        /// The step name or instance key asked for.
        step: String,
    },
    /// A step run's stored key parts do not parse.
    #[error("the stored key parts of {instance} do not read")]
    Damaged {
        /// The step instance.
        instance: String,
        /// Why they do not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Explains every instance of `step` (a step name or an instance key) in
/// `run`, in node order. Reads only.
pub async fn explain<S: StateStore + ArtifactIndex + ?Sized>(
    store: &S,
    run: &str,
    step: &str,
) -> Result<Vec<Explanation>, ExplainError> {
    if store.run(run).await?.is_none() {
        return Err(ExplainError::NoSuchRun { run: run.into() });
    }
    let nodes = store.nodes_named(run, step).await?;
    if nodes.is_empty() {
        return Err(ExplainError::NoSuchStep {
            run: run.into(),
            step: step.into(),
        });
    }
    let mut out = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let verdict = match store.key_of(run, n.id).await? {
            None => Verdict::NoKey,
            Some(k) if k.outcome == "memoized" => Verdict::Memoized {
                from: serde_json::from_str::<serde_json::Value>(&n.data)
                    .ok()
                    .and_then(|v| v.get("from").and_then(|f| f.as_str().map(str::to_string))),
                key: k.key,
            },
            Some(k) => {
                let reason = reason(store, &n.key, &k).await?;
                Verdict::Ran { key: k.key, reason }
            }
        };
        out.push(Explanation {
            instance: n.key.clone(),
            verdict,
        });
    }
    Ok(out)
}

/// Why the step run of `k` (instance `instance`) ran.
async fn reason<S: ArtifactIndex + ?Sized>(
    store: &S,
    instance: &str,
    k: &KeyRow,
) -> Result<Reason, ExplainError> {
    if let Some(why) = k.outcome.strip_prefix("ran: ") {
        return Ok(Reason::Recorded { why: why.into() });
    }
    let earlier: Vec<KeyRow> = store
        .keys(&k.step, EARLIER)
        .await?
        .into_iter()
        .filter(|e| e.created_ms <= k.created_ms && !(e.run == k.run && e.node == k.node))
        .collect();
    if let Some(e) = earlier.iter().find(|e| e.key == k.key) {
        return Ok(Reason::SameKey {
            earlier: Earlier::of(e),
        });
    }
    let mine =
        serde_json::from_str::<MemoKey>(&k.parts).map_err(|source| ExplainError::Damaged {
            instance: instance.into(),
            source,
        })?;
    let mut best: Option<(usize, &KeyRow, Vec<String>)> = None;
    for e in &earlier {
        let Ok(theirs) = serde_json::from_str::<MemoKey>(&e.parts) else {
            continue;
        };
        let d = diff(&theirs, &mine);
        // Prefer the same instance (same for-each item) at equal distance.
        let score = d.len() * 2 + usize::from(e.step_key != k.step_key);
        if best.as_ref().is_none_or(|(s, _, _)| score < *s) {
            best = Some((score, e, d));
        }
    }
    Ok(match best {
        None => Reason::First {
            step: k.step.clone(),
        },
        Some((_, e, changes)) => Reason::Changed {
            earlier: Earlier::of(e),
            changes,
        },
    })
}

impl Earlier {
    fn of(k: &KeyRow) -> Earlier {
        Earlier {
            run: k.run.clone(),
            instance: k.step_key.clone(),
            created_ms: k.created_ms,
        }
    }
}

impl Explanation {
    /// The explanation as `kaon cache explain` prints it, one line each
    /// (without line ends): the verdict, then the reason indented.
    pub fn lines(&self) -> Vec<String> {
        let i = &self.instance;
        match &self.verdict {
            Verdict::NoKey => vec![format!(
                "{i}: no memo key (the step has `cache = false`, is of a kind kaon does not cache, or never launched)"
            )],
            Verdict::Memoized { key, from } => vec![format!(
                "{i}: memoized, the result of {} (key {key})",
                from.as_deref().unwrap_or("an earlier run")
            )],
            Verdict::Ran { key, reason } => {
                let mut out = vec![format!("{i}: ran (key {key})")];
                match reason {
                    Reason::Recorded { why } => out.push(format!("  {why}")),
                    Reason::SameKey { earlier } => out.push(format!(
                        "  {} in run {} had the same key; its result was not reused because the run asked not to (--no-cache) or that step did not succeed with every artifact still in the store",
                        earlier.instance, earlier.run
                    )),
                    Reason::First { step } => out.push(format!(
                        "  no earlier run of `{step}` to compare with: a first run"
                    )),
                    Reason::Changed { earlier, changes } => {
                        out.push(format!(
                            "  closest earlier: {} in run {} ({}); what changed:",
                            earlier.instance,
                            earlier.run,
                            fmt_time(earlier.created_ms)
                        ));
                        out.extend(changes.iter().map(|c| format!("    {c}")));
                    }
                }
                out
            }
        }
    }
}

impl fmt::Display for Explanation {
    /// [`Explanation::lines`], each ended by a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A time in ms since the epoch as RFC 3339 (UTC, seconds), as the
/// command line shows times.
fn fmt_time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The first 12 hex digits of a digest, `(none)` for none.
fn short(d: &str) -> String {
    let hex = d.strip_prefix("blake3:").unwrap_or(d);
    if hex.is_empty() {
        "(none)".into()
    } else {
        hex[..12.min(hex.len())].to_string()
    }
}

fn map_diff(
    what: &str,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
    digests: bool,
    out: &mut Vec<String>,
) {
    let show = |v: &str| if digests { short(v) } else { format!("{v:?}") };
    for (k, v) in &new {
        match old.get(k) {
            None => out.push(format!("{what} {k}: added ({})", show(v))),
            Some(o) if o != v => out.push(format!("{what} {k}: {} → {}", show(o), show(v))),
            Some(_) => {}
        }
    }
    for (k, v) in &old {
        if !new.contains_key(k) {
            out.push(format!("{what} {k}: removed (was {})", show(v)));
        }
    }
}

/// Settings recorded field by field (key format 3): each one that differs,
/// by name. A value that holds a secret is said to have changed, never
/// shown; a long one (SQL text, a script) is shown from where it differs.
fn settings_diff(old: &MemoKey, new: &MemoKey, out: &mut Vec<String>) {
    let map = |k: &MemoKey| -> BTreeMap<String, String> {
        k.settings
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect()
    };
    let (o, n) = (map(old), map(new));
    let shown = |v: &str| -> String {
        let text = serde_json::from_str::<serde_json::Value>(v)
            .ok()
            .and_then(|j| j.as_str().map(str::to_string))
            .unwrap_or_else(|| v.to_string());
        format!("{text:?}")
    };
    for (name, v) in &n {
        match o.get(name) {
            None if v.contains(SECRET) => {
                out.push(format!("{name}: added (it holds a secret parameter)"))
            }
            None => out.push(format!("{name}: added {}", clip(&shown(v)))),
            Some(was) if was == v => {}
            Some(was) if was.contains(SECRET) || v.contains(SECRET) => {
                out.push(format!("{name}: changed (it holds a secret parameter)"))
            }
            Some(was) => {
                let (a, b) = (shown(was), shown(v));
                if a.chars().count() + b.chars().count() <= 120 {
                    out.push(format!("{name}: {a} → {b}"));
                } else {
                    out.push(format!("{name}: changed {}", where_differs(&a, &b)));
                }
            }
        }
    }
    for (name, v) in &o {
        if !n.contains_key(name) {
            if v.contains(SECRET) {
                out.push(format!("{name}: removed"));
            } else {
                out.push(format!("{name}: removed (was {})", clip(&shown(v))));
            }
        }
    }
}

/// At most 60 characters of a value.
fn clip(v: &str) -> String {
    if v.chars().count() <= 60 {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(59).collect::<String>())
    }
}

/// "at character N: ...old... → ...new...", around the first difference.
fn where_differs(a: &str, b: &str) -> String {
    let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let around = |s: &str| -> String {
        let from = at.saturating_sub(20);
        let part: String = s.chars().skip(from).take(50).collect();
        let lead = if from > 0 { "…" } else { "" };
        let tail = if s.chars().count() > from + 50 {
            "…"
        } else {
            ""
        };
        format!("{lead}{part}{tail}")
    };
    format!("at character {at}: {} → {}", around(a), around(b))
}

/// What differs between two key records, one line each.
fn diff(old: &MemoKey, new: &MemoKey) -> Vec<String> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(format!("kind: {} → {}", old.kind, new.kind));
    }
    map_diff(
        "code",
        old.code
            .iter()
            .map(|c| (c.path.clone(), c.digest.clone()))
            .collect(),
        new.code
            .iter()
            .map(|c| (c.path.clone(), c.digest.clone()))
            .collect(),
        true,
        &mut out,
    );
    map_diff(
        "input",
        old.inputs
            .iter()
            .map(|c| (c.source.clone(), c.digest.clone()))
            .collect(),
        new.inputs
            .iter()
            .map(|c| (c.source.clone(), c.digest.clone()))
            .collect(),
        true,
        &mut out,
    );
    let prog = |k: &MemoKey| {
        k.environment
            .as_ref()
            .and_then(|e| e.program.as_ref())
            .map(|p| (p.path.clone(), p.digest.clone()))
            .unwrap_or_default()
    };
    let (op, np) = (prog(old), prog(new));
    if op != np {
        out.push(format!(
            "program: {} ({}) → {} ({})",
            op.0,
            short(&op.1),
            np.0,
            short(&np.1)
        ));
    }
    let (ov, nv) = (
        old.environment
            .as_ref()
            .map(|e| (e.spark_version.clone(), e.image.clone())),
        new.environment
            .as_ref()
            .map(|e| (e.spark_version.clone(), e.image.clone())),
    );
    if ov != nv {
        out.push(format!("environment: {ov:?} → {nv:?}"));
    }
    let n = old.argv.len().max(new.argv.len());
    for i in 0..n {
        match (old.argv.get(i), new.argv.get(i)) {
            (Some(a), Some(b)) if a != b && (a.contains(SECRET) || b.contains(SECRET)) => {
                out.push(format!("argv[{i}]: changed (it holds a secret parameter)"))
            }
            (Some(a), Some(b)) if a != b => out.push(format!("argv[{i}]: {a:?} → {b:?}")),
            (Some(a), None) => out.push(format!("argv[{i}]: removed (was {a:?})")),
            (None, Some(b)) => out.push(format!("argv[{i}]: added {b:?}")),
            _ => {}
        }
    }
    if old.script != new.script {
        out.push("script: changed".into());
    }
    // Environment values are stored as keyed digests (they may be
    // secrets): say that one changed, never what it was.
    let env = |k: &MemoKey| -> BTreeMap<String, String> {
        k.env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    };
    let (oe, ne) = (env(old), env(new));
    for (name, v) in &ne {
        match oe.get(name) {
            None => out.push(format!("env {name}: added")),
            Some(o) if o != v => out.push(format!("env {name}: changed")),
            Some(_) => {}
        }
    }
    for name in oe.keys() {
        if !ne.contains_key(name) {
            out.push(format!("env {name}: removed"));
        }
    }
    if old.workdir != new.workdir {
        out.push(format!("workdir: {} → {}", old.workdir, new.workdir));
    }
    map_diff(
        "output",
        old.outputs
            .iter()
            .map(|o| (o.name.clone(), format!("{} {}", o.r#type, o.path)))
            .collect(),
        new.outputs
            .iter()
            .map(|o| (o.name.clone(), format!("{} {}", o.r#type, o.path)))
            .collect(),
        false,
        &mut out,
    );
    if old.cache_version != new.cache_version {
        out.push(format!(
            "cache_version: {:?} → {:?}",
            old.cache_version, new.cache_version
        ));
    }
    if old.instance != new.instance {
        out.push(format!("instance: {} → {}", old.instance, new.instance));
    }
    settings_diff(old, new, &mut out);
    if old.config != new.config {
        out.push("config: changed".into());
    }
    if old.version != new.version {
        out.push(format!("key format: {} → {}", old.version, new.version));
    }
    if out.is_empty() {
        out.push(
            "nothing in the key (the keys differ only in field order; please report this)".into(),
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use kaon_artifacts::proto::{CodeDigest, Setting};
    use kaon_store::row::{NodeKind, NodeState, RunStatus};
    use kaon_store::{Batch, MemoryStore, NodeRow, RunRow};

    use super::*;

    /// 2026-01-02T03:04:05Z.
    const T0: i64 = 1_767_323_045_000;

    fn run_row(id: &str, created_ms: i64) -> RunRow {
        RunRow {
            id: id.into(),
            workflow: "wf".into(),
            path: "wf.toml".into(),
            digest: "d".into(),
            params: "{}".into(),
            options: "{}".into(),
            parent: None,
            status: RunStatus::Succeeded,
            data: "{}".into(),
            created_ms,
            finished_ms: None,
            owner: None,
            heartbeat_ms: None,
        }
    }

    fn parts(code: &str, sql: &str) -> MemoKey {
        MemoKey {
            version: 3,
            kind: "spark".into(),
            argv: vec!["train.py".into()],
            code: vec![CodeDigest {
                path: "steps/train.py".into(),
                digest: format!("blake3:{code}"),
            }],
            instance: "train".into(),
            settings: vec![Setting {
                name: "sql".into(),
                value: serde_json::to_string(sql).unwrap(),
            }],
            ..Default::default()
        }
    }

    /// Stores run `run` with one step `train`, node 0, whose key record
    /// is `parts` (a key `key`) with this outcome; `from` is the node's
    /// memoized-from fact.
    async fn step_run(
        s: &MemoryStore,
        run: &str,
        at: i64,
        key: Option<(&str, &MemoKey, &str)>,
        from: Option<&str>,
    ) {
        s.create_run(&run_row(run, at)).await.unwrap();
        let data = match from {
            Some(f) => serde_json::json!({ "state": "memoized", "from": f }),
            None => serde_json::json!({ "state": "succeeded" }),
        };
        let node = NodeRow {
            id: 0,
            scope: 0,
            key: "train".into(),
            name: "train".into(),
            kind: NodeKind::Command,
            state: NodeState::Succeeded,
            attempt: 1,
            started_ms: Some(at),
            finished_ms: Some(at + 1),
            data: data.to_string(),
        };
        let keys = key
            .map(|(key, parts, outcome)| KeyRow {
                run: run.into(),
                node: 0,
                attempt: 1,
                step: "train".into(),
                step_key: "train".into(),
                key: key.into(),
                parts: serde_json::to_string(parts).unwrap(),
                outcome: outcome.into(),
                created_ms: at,
            })
            .into_iter()
            .collect();
        s.commit(&[Batch {
            run: run.into(),
            nodes: vec![node],
            keys,
            ..Default::default()
        }])
        .await
        .unwrap();
    }

    async fn one(s: &MemoryStore, run: &str) -> Explanation {
        let mut v = explain(s, run, "train").await.unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[tokio::test]
    async fn a_memoized_step_names_the_run_it_reused() {
        let s = MemoryStore::new();
        let p = parts("aaaa", "select 1");
        step_run(&s, "r1", T0, Some(("blake3:k1", &p, "ran")), None).await;
        step_run(
            &s,
            "r2",
            T0 + 10,
            Some(("blake3:k1", &p, "memoized")),
            Some("r1/train"),
        )
        .await;
        let e = one(&s, "r2").await;
        assert_eq!(
            e.verdict,
            Verdict::Memoized {
                key: "blake3:k1".into(),
                from: Some("r1/train".into())
            }
        );
        assert_eq!(
            e.lines(),
            ["train: memoized, the result of r1/train (key blake3:k1)"]
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "instance": "train",
                "verdict": { "outcome": "memoized", "key": "blake3:k1", "from": "r1/train" }
            })
        );
    }

    #[tokio::test]
    async fn a_first_run_has_nothing_to_compare_with() {
        let s = MemoryStore::new();
        step_run(
            &s,
            "r1",
            T0,
            Some(("blake3:k1", &parts("aaaa", "x"), "ran")),
            None,
        )
        .await;
        let e = one(&s, "r1").await;
        assert_eq!(
            e.verdict,
            Verdict::Ran {
                key: "blake3:k1".into(),
                reason: Reason::First {
                    step: "train".into()
                }
            }
        );
        assert_eq!(
            e.to_string(),
            "train: ran (key blake3:k1)\n  no earlier run of `train` to compare with: a first run\n"
        );
    }

    #[tokio::test]
    async fn a_changed_setting_and_code_are_named() {
        let s = MemoryStore::new();
        let old = parts("aaaaaaaaaaaaaaaa", "select 1");
        let new = parts("bbbbbbbbbbbbbbbb", "select 2");
        step_run(&s, "r1", T0, Some(("blake3:k1", &old, "ran")), None).await;
        step_run(&s, "r2", T0 + 10, Some(("blake3:k2", &new, "ran")), None).await;
        let e = one(&s, "r2").await;
        let Verdict::Ran {
            reason: Reason::Changed { earlier, changes },
            ..
        } = &e.verdict
        else {
            panic!("{e:?}");
        };
        assert_eq!(
            earlier,
            &Earlier {
                run: "r1".into(),
                instance: "train".into(),
                created_ms: T0
            }
        );
        assert_eq!(
            changes,
            &[
                "code steps/train.py: aaaaaaaaaaaa → bbbbbbbbbbbb",
                "sql: \"select 1\" → \"select 2\"",
            ]
        );
        assert_eq!(
            e.lines(),
            [
                "train: ran (key blake3:k2)",
                "  closest earlier: train in run r1 (2026-01-02T03:04:05Z); what changed:",
                "    code steps/train.py: aaaaaaaaaaaa → bbbbbbbbbbbb",
                "    sql: \"select 1\" → \"select 2\"",
            ]
        );
    }

    #[tokio::test]
    async fn the_closest_earlier_run_wins_and_secrets_are_not_shown() {
        let s = MemoryStore::new();
        let far = parts("cccc", "select 9");
        let near = parts("aaaa", "select «secret pw kd:1»");
        let now = parts("aaaa", "select «secret pw kd:2»");
        step_run(&s, "r1", T0, Some(("blake3:k1", &far, "ran")), None).await;
        step_run(&s, "r2", T0 + 5, Some(("blake3:k2", &near, "ran")), None).await;
        step_run(&s, "r3", T0 + 9, Some(("blake3:k3", &now, "ran")), None).await;
        let e = one(&s, "r3").await;
        let lines = e.lines();
        assert!(lines[1].contains("in run r2"), "{lines:?}");
        assert_eq!(lines[2], "    sql: changed (it holds a secret parameter)");
        assert!(!lines.concat().contains("kd:"), "{lines:?}");
    }

    #[tokio::test]
    async fn the_same_key_not_reused_says_so() {
        let s = MemoryStore::new();
        let p = parts("aaaa", "x");
        step_run(&s, "r1", T0, Some(("blake3:k1", &p, "ran")), None).await;
        step_run(&s, "r2", T0 + 10, Some(("blake3:k1", &p, "ran")), None).await;
        let e = one(&s, "r2").await;
        assert_eq!(
            e.verdict,
            Verdict::Ran {
                key: "blake3:k1".into(),
                reason: Reason::SameKey {
                    earlier: Earlier {
                        run: "r1".into(),
                        instance: "train".into(),
                        created_ms: T0
                    }
                }
            }
        );
        assert_eq!(
            e.lines()[1],
            "  train in run r1 had the same key; its result was not reused because the run asked not to (--no-cache) or that step did not succeed with every artifact still in the store"
        );
    }

    #[tokio::test]
    async fn a_recorded_reason_and_no_key_are_given_as_recorded() {
        let s = MemoryStore::new();
        let why = "ran: the result of r0/train was not put back: gone";
        step_run(
            &s,
            "r1",
            T0,
            Some(("blake3:k1", &parts("a", "x"), why)),
            None,
        )
        .await;
        assert_eq!(
            one(&s, "r1").await.lines(),
            [
                "train: ran (key blake3:k1)",
                "  the result of r0/train was not put back: gone"
            ]
        );
        step_run(&s, "r2", T0 + 1, None, None).await;
        let e = one(&s, "r2").await;
        assert_eq!(e.verdict, Verdict::NoKey);
        assert!(e.lines()[0].starts_with("train: no memo key ("), "{e}");
    }

    #[tokio::test]
    async fn unknown_runs_steps_and_damaged_parts_are_errors() {
        let s = MemoryStore::new();
        let err = explain(&s, "nope", "train").await.unwrap_err();
        assert!(matches!(err, ExplainError::NoSuchRun { .. }), "{err}");
        s.create_run(&run_row("r0", T0)).await.unwrap();
        let err = explain(&s, "r0", "train").await.unwrap_err();
        assert_eq!(err.to_string(), "run r0 has no step `train` that started");

        step_run(&s, "r1", T0, None, None).await;
        s.commit(&[Batch {
            run: "r1".into(),
            keys: vec![KeyRow {
                run: "r1".into(),
                node: 0,
                attempt: 1,
                step: "train".into(),
                step_key: "train".into(),
                key: "blake3:k1".into(),
                parts: "{not json".into(),
                outcome: "ran".into(),
                created_ms: T0,
            }],
            ..Default::default()
        }])
        .await
        .unwrap();
        let err = explain(&s, "r1", "train").await.unwrap_err();
        assert!(matches!(err, ExplainError::Damaged { .. }), "{err}");
        assert_eq!(err.to_string(), "the stored key parts of train do not read");
    }

    #[test]
    fn the_future_can_be_spawned() {
        fn send<T: Send>(_: T) {}
        let s = MemoryStore::new();
        send(explain(&s, "r", "s"));
    }
}
