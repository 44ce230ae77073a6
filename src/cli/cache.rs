//! `kaon cache explain RUN STEP`: why a step ran instead of reusing a result.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use kaon_artifacts::proto::MemoKey;
use kaon_store::{ArtifactIndex, KeyRow, StateStore};

use super::common::{self, DataArgs};

/// Memoization: why a step ran or whose result it reused.
///
/// Examples:
///   kaon cache explain 20261123-071601-3f2a trainGlobalModel
///   kaon cache explain 20261123-071601-3f2a 'trainRegModel[pass=1, reg=europe]'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    command: Verb,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Says whether a step reused an earlier result and, when it ran, what
    /// changed since the closest earlier run of the same step: code,
    /// inputs, command line, environment, outputs or cache_version.
    Explain {
        /// The run.
        run: String,
        /// The step name or instance key.
        step: String,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    common::block_on(async move {
        let store = args.data.existing_store().await?;
        match args.command {
            Verb::Explain { run, step } => explain(&store, &run, &step).await,
        }
    })?
}

async fn explain<S: StateStore + ArtifactIndex>(
    store: &S,
    run: &str,
    step: &str,
) -> Result<ExitCode> {
    if store.run(run).await?.is_none() {
        bail!("no run `{run}` (`kaon runs list` shows them)");
    }
    let nodes = store.nodes_named(run, step).await?;
    if nodes.is_empty() {
        bail!("run {run} has no step `{step}` that started");
    }
    for n in &nodes {
        let Some(k) = store.key_of(run, n.id).await? else {
            kaon::outln!(
                "{}: no memo key (the step has `cache = false`, is of a kind kaon does not cache, or never launched)",
                n.key
            );
            continue;
        };
        if k.outcome == "memoized" {
            let from = match serde_json::from_str::<serde_json::Value>(&n.data)
                .ok()
                .and_then(|v| v.get("from").and_then(|f| f.as_str().map(str::to_string)))
            {
                Some(f) => f,
                None => "an earlier run".into(),
            };
            kaon::outln!("{}: memoized, the result of {from} (key {})", n.key, k.key);
            continue;
        }
        kaon::outln!("{}: ran (key {})", n.key, k.key);
        if let Some(why) = k.outcome.strip_prefix("ran: ") {
            kaon::outln!("  {why}");
            continue;
        }
        let earlier: Vec<KeyRow> = store
            .keys(&k.step, 500)
            .await?
            .into_iter()
            .filter(|e| e.created_ms <= k.created_ms && !(e.run == k.run && e.node == k.node))
            .collect();
        let same: Vec<&KeyRow> = earlier.iter().filter(|e| e.key == k.key).collect();
        if let Some(e) = same.first() {
            kaon::outln!(
                "  {} in run {} had the same key; its result was not reused because the run asked not to (--no-cache) or that step did not succeed with every artifact still in the store",
                e.step_key,
                e.run
            );
            continue;
        }
        let Ok(mine) = serde_json::from_str::<MemoKey>(&k.parts) else {
            bail!("the stored key parts of {} do not read", n.key);
        };
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
        match best {
            None => kaon::outln!(
                "  no earlier run of `{}` to compare with: a first run",
                k.step
            ),
            Some((_, e, d)) => {
                kaon::outln!(
                    "  closest earlier: {} in run {} ({}); what changed:",
                    e.step_key,
                    e.run,
                    common::fmt_time(e.created_ms)
                );
                for line in d {
                    kaon::outln!("    {line}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
            None if v.contains("«secret ") => {
                out.push(format!("{name}: added (it holds a secret parameter)"))
            }
            None => out.push(format!("{name}: added {}", clip(&shown(v)))),
            Some(was) if was == v => {}
            Some(was) if was.contains("«secret ") || v.contains("«secret ") => {
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
            if v.contains("«secret ") {
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
            (Some(a), Some(b)) if a != b && (a.contains("«secret ") || b.contains("«secret ")) => {
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
