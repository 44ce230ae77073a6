//! Parsing and validating a large workflow: 5,000 steps, 200 for-each blocks.
//!
//! `cargo bench -p kaon-model --bench parse`; figures go to docs/benchmarks.md.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kaon_model::diag::StrMap;
use kaon_model::flow::parse_flow;

/// A workflow of `blocks` for-each blocks of `per_block` steps, separated by
/// single steps, up to `steps` steps in all. Every step reads the output of
/// the step before it, so reference and order checks do real work.
fn big_workflow(steps: usize, blocks: usize) -> String {
    let per_block = (steps - blocks) / blocks;
    let mut flow = String::new();
    let mut decls = String::new();
    let mut n = 0;
    let mut prev: Option<String> = None;
    let mut step = |decls: &mut String, var: Option<&str>| {
        let name = format!("s{n}");
        n += 1;
        let mut cmd = format!("\"python3\", \"step.py\", \"--n\", \"{n}\"");
        if let Some(p) = &prev {
            let _ = write!(cmd, ", \"${{{p}.out}}\"");
        }
        if let Some(v) = var {
            let _ = write!(cmd, ", \"${{{v}}}\"");
        }
        let _ = write!(
            decls,
            "\n[steps.{name}]\nkind = \"command\"\ncommand = [{cmd}]\ncpus = 1\nmemory = \"256m\"\noutputs = {{ out = \"string\" }}\n"
        );
        prev = Some(name.clone());
        name
    };
    for b in 0..blocks {
        let head = step(&mut decls, None);
        let _ = write!(
            flow,
            "{}{head} **(x{b} = [\"a\", \"b\", \"c\"]) --< (",
            if b == 0 { "" } else { " -> " }
        );
        let var = format!("x{b}");
        let body: Vec<String> = (0..per_block)
            .map(|_| step(&mut decls, Some(&var)))
            .collect();
        flow.push_str(&body.join(", "));
        flow.push_str(") >--\n");
        // After the block, the chain continues from the block's last step
        // (read as a list, one value per item).
    }
    let used = blocks * (per_block + 1);
    for _ in used..steps {
        let s = step(&mut decls, None);
        let _ = write!(flow, " -> {s}");
    }
    format!("[workflow]\nname = \"big\"\nflow = '''\n{flow}'''\n{decls}")
}

fn bench(c: &mut Criterion) {
    let text = big_workflow(5_000, 200);
    let loaded = kaon_model::load_str(Path::new("big.toml"), &text);
    assert!(
        loaded.result.is_some(),
        "{}",
        loaded.diagnostics.render_short(&loaded.sources)
    );
    let counts = loaded
        .result
        .as_ref()
        .map(|v| v.plan.counts())
        .unwrap_or_default();
    assert_eq!((counts.steps, counts.for_each), (5_000, 200));
    eprintln!(
        "workflow: {} bytes, {} steps, {} for-each",
        text.len(),
        counts.steps,
        counts.for_each
    );

    let mut g = c.benchmark_group("workflow_5000_steps_200_foreach");
    g.sample_size(30);
    g.bench_function("load_validate_plan", |b| {
        b.iter(|| kaon_model::load_str(Path::new("big.toml"), black_box(&text)))
    });
    let start = text.find("'''").map_or(0, |i| i + 3);
    let end = start + text[start..].find("'''").unwrap_or(0);
    let flow = &text[start..end];
    g.bench_function("flow_parse_only", |b| {
        b.iter(|| parse_flow(black_box(flow), &StrMap::identity()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
