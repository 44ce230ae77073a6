//! `kaon artifacts lineage`: where an artifact came from, or what used it,
//! as a tree, Graphviz or JSON.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Result;
use kaon_store::{ArtifactRow, Direction};
use serde_json::json;

use super::{LineageFormat, Lookup, find, short, to_json};

pub(super) async fn lineage(
    store: &impl Lookup,
    id: &str,
    dir: Direction,
    depth: u32,
    format: LineageFormat,
) -> Result<ExitCode> {
    let root = find(store, id).await?;
    let edges = store.lineage(&root.id, dir, depth).await?;
    let mut rows: HashMap<String, ArtifactRow> = HashMap::new();
    rows.insert(root.id.clone(), root.clone());
    for e in &edges {
        for id in [&e.from, &e.to] {
            if !rows.contains_key(id)
                && let Some(a) = store.artifact(id).await?
            {
                rows.insert(id.clone(), a);
            }
        }
    }
    let label = |id: &str| match rows.get(id) {
        Some(a) => format!(
            "{} {} ({}, {})",
            a.id,
            a.name,
            short(&a.digest),
            match (&a.run, &a.step_key) {
                (Some(r), Some(s)) => format!("{s} in {r}"),
                _ => "put by hand".into(),
            }
        ),
        None => format!("{id} (unknown)"),
    };
    match format {
        LineageFormat::Json => {
            let v = json!({
                "artifact": root.id,
                "direction": if dir == Direction::Upstream { "upstream" } else { "downstream" },
                "edges": edges.iter().map(|e| json!({
                    "depth": e.depth, "from": e.from, "to": e.to, "run": e.run, "node": e.node,
                })).collect::<Vec<_>>(),
                "artifacts": rows.values().map(to_json).collect::<Vec<_>>(),
            });
            kaon::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        LineageFormat::Dot => {
            kaon::outln!("digraph lineage {{\n  rankdir=LR;\n  node [shape=box];");
            for (id, a) in &rows {
                kaon::outln!(
                    "  \"{id}\" [label=\"{}\\n{}\\n{}\"];",
                    a.name,
                    short(&a.digest),
                    a.step_key.as_deref().unwrap_or("put")
                );
            }
            for e in &edges {
                kaon::outln!("  \"{}\" -> \"{}\";", e.from, e.to);
            }
            kaon::outln!("}}");
        }
        LineageFormat::Tree => {
            kaon::outln!("{}", label(&root.id));
            // Children of a node: the artifacts one hop further.
            let mut next: HashMap<&str, Vec<&str>> = HashMap::new();
            for e in &edges {
                let (a, b) = match dir {
                    Direction::Upstream => (e.to.as_str(), e.from.as_str()),
                    Direction::Downstream => (e.from.as_str(), e.to.as_str()),
                };
                let v = next.entry(a).or_default();
                if !v.contains(&b) {
                    v.push(b);
                }
            }
            let arrow = if dir == Direction::Upstream {
                "←"
            } else {
                "→"
            };
            fn walk(
                at: &str,
                prefix: &str,
                depth: u32,
                next: &HashMap<&str, Vec<&str>>,
                label: &dyn Fn(&str) -> String,
                arrow: &str,
                path: &mut Vec<String>,
            ) {
                let Some(kids) = next.get(at) else { return };
                for (i, k) in kids.iter().enumerate() {
                    let last = i + 1 == kids.len();
                    let seen = path.iter().any(|p| p == k);
                    kaon::outln!(
                        "{prefix}{}{arrow} {}{}",
                        if last { "└─" } else { "├─" },
                        label(k),
                        if seen { " (cycle)" } else { "" }
                    );
                    if seen || depth == 0 {
                        continue;
                    }
                    path.push(k.to_string());
                    let p = format!("{prefix}{}", if last { "   " } else { "│  " });
                    walk(k, &p, depth - 1, next, label, arrow, path);
                    path.pop();
                }
            }
            walk(
                &root.id,
                "",
                depth,
                &next,
                &label,
                arrow,
                &mut vec![root.id.clone()],
            );
            if edges.is_empty() {
                kaon::outln!(
                    "  ({})",
                    if dir == Direction::Upstream {
                        "made from no recorded artifact"
                    } else {
                        "not used by any recorded step"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
