//! Long and deep workflows (issue 12, defect 6): a chain of 90,000 steps is a
//! legitimate workflow (a parameter sweep) and must load, plan and print;
//! nesting has bounds, and going past one is a diagnostic, not a crash.
//!
//! Everything runs on a thread with an 8 MiB stack, the main thread's stack
//! of the `kaon` binary (a test thread has 2 MiB), in a debug build, whose
//! frames are several times larger than a release build's.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::path::Path;

use kaon_model::diag::{Code, Severity, StrMap};
use kaon_model::flow::{Flow, Notation, parse_flow, print_flow};
use kaon_model::{Loaded, Validated};

/// Runs `f` on a thread with the `kaon` binary's main-thread stack.
fn on_main_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .name("8MiB".into())
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

const CHAIN: usize = 90_000;

/// `s0 -> s1 -> ... `: even steps are noops, odd ones commands that read
/// the output of the command before them; the workflow outputs the last.
fn chain_workflow(n: usize, flow: &str) -> String {
    let mut t = format!(
        "[workflow]\nname = \"sweep\"\nflow = '''{flow}'''\n\n[workflow.outputs]\nlast = \"${{s{}.v}}\"\n",
        n - 1
    );
    for i in 0..n {
        if i % 2 == 0 {
            t.push_str(&format!("\n[steps.s{i}]\nkind = \"noop\"\n"));
        } else {
            let arg = if i >= 3 {
                format!("${{s{}.v}}", i - 2)
            } else {
                "first".into()
            };
            t.push_str(&format!(
                "\n[steps.s{i}]\nkind = \"command\"\ncommand = [\"echo\", \"{arg}\"]\noutputs = {{ v = \"string\" }}\n"
            ));
        }
    }
    t
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

fn load(text: &str) -> Loaded {
    kaon_model::load_str(Path::new("wf.toml"), text)
}

fn valid(text: &str) -> Validated {
    let loaded = load(text);
    let shown = loaded.diagnostics.render_short(&loaded.sources);
    loaded
        .result
        .unwrap_or_else(|| panic!("does not load:\n{}", &shown[..shown.len().min(4000)]))
}

/// The errors as `(code, line, column, message)`.
fn errors(loaded: &Loaded) -> Vec<(Code, usize, usize, String)> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let (line, col) = d.line_col(&loaded.sources);
            (d.code, line, col, d.message.clone())
        })
        .collect()
}

/// Line and column (1-based, in characters) of byte `offset` of `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Byte offset of the `n`th (1-based) occurrence of `needle`.
fn nth(text: &str, needle: &str, n: usize) -> usize {
    text.match_indices(needle)
        .nth(n - 1)
        .unwrap_or_else(|| panic!("`{needle}` occurs fewer than {n} times"))
        .0
}

/// Prints in both notations and parses back to the same model.
fn assert_prints_back(flow: &Flow) {
    let model = flow.without_spans();
    for notation in [Notation::Operators, Notation::Verbs] {
        let text = print_flow(&model, notation);
        let back = parse_flow(&text, &StrMap::identity()).unwrap_or_else(|e| {
            panic!(
                "{notation:?} text does not parse back: {e:?}\n{}",
                &text[..text.len().min(2000)]
            )
        });
        assert!(
            back.without_spans() == model,
            "{notation:?} text parses to another model"
        );
    }
}

/// Renders the plan every way `kaon plan` does.
fn render(v: &Validated) {
    assert!(v.plan.to_tree("t").lines().count() > 1);
    assert!(v.plan.to_dot("t").starts_with("digraph"));
    assert!(v.plan.to_json()["nodes"].is_array());
}

#[test]
fn a_chain_of_90000_steps_loads_plans_and_prints_in_both_notations() {
    on_main_stack(|| {
        let n = names(CHAIN);
        let v = valid(&chain_workflow(CHAIN, &n.join(" -> ")));
        let counts = v.plan.counts();
        assert_eq!(counts.steps, CHAIN);
        assert_eq!(v.plan.graph.edge_count(), CHAIN - 1);
        assert_eq!(
            v.workflow.flow.items().len(),
            CHAIN,
            "the chain is one flat sequence"
        );
        render(&v);
        assert_prints_back(&v.workflow.flow);
        // The verbs give the same model.
        let verbs = format!("sequence({})", n.join(", "));
        let f = parse_flow(&verbs, &StrMap::identity()).unwrap();
        assert!(f.without_spans() == v.workflow.flow.without_spans());
    });
}

#[test]
fn a_chain_of_90000_steps_in_verbs_loads() {
    on_main_stack(|| {
        let text = chain_workflow(CHAIN, &format!("sequence({})", names(CHAIN).join(", ")));
        let v = valid(&text);
        assert_eq!(v.plan.counts().steps, CHAIN);
    });
}

#[test]
fn order_mistakes_are_still_found_in_a_long_chain() {
    on_main_stack(|| {
        let n = names(CHAIN);
        // s1 reads the output of s89999, which runs after it.
        let text = chain_workflow(CHAIN, &n.join(" -> ")).replace(
            "command = [\"echo\", \"first\"]",
            &format!("command = [\"echo\", \"${{s{}.v}}\"]", CHAIN - 1),
        );
        let loaded = load(&text);
        let errs = errors(&loaded);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, Code::NotUpstream, "{errs:?}");
    });
}

/// Which steps run before which, through parallel and conditional blocks:
/// every pair is checked both ways by letting one read the other.
#[test]
fn upstream_checks_follow_branches_and_blocks() {
    let flow = "a -> ==> (b -> ==> (c, d) >== -> e, f) >== -> ??(true) --< (g | h) >-- \
                -> **(x = [1]) --< (i) >-- -> ??(true) --< (k) >-- -> j";
    let steps = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "j"];
    let before = |t: &str, r: &str| -> bool {
        let after: &[&str] = match t {
            "a" => &["b", "c", "d", "e", "f", "g", "h", "i", "k", "j"],
            "b" => &["c", "d", "e", "g", "h", "i", "k", "j"],
            "c" | "d" => &["e", "g", "h", "i", "k", "j"],
            "e" | "f" => &["g", "h", "i", "k", "j"],
            "g" | "h" => &["i", "k", "j"],
            "i" => &["k", "j"],
            "k" => &["j"],
            _ => &[],
        };
        after.contains(&r)
    };
    let mut wrong = Vec::new();
    for r in steps {
        for t in steps {
            if r == t {
                continue;
            }
            let mut text = format!("[workflow]\nname = \"o\"\nflow = '''{flow}'''\n");
            for s in steps {
                let arg = if s == r {
                    format!("${{{t}.v}}")
                } else {
                    "x".into()
                };
                text.push_str(&format!(
                    "[steps.{s}]\nkind = \"command\"\ncommand = [\"echo\", \"{arg}\"]\noutputs = {{ v = \"string\" }}\n"
                ));
            }
            let errs = errors(&load(&text));
            let refused = errs.iter().any(|e| e.0 == Code::NotUpstream);
            if refused == before(t, r) || errs.iter().any(|e| e.0 != Code::NotUpstream) {
                wrong.push(format!("{r} reads {t}: {errs:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With a step used twice (an error of its own) the order is that of the
/// graph where both uses are one node.
#[test]
fn upstream_checks_with_a_step_used_twice() {
    let reads = |reader: &str, target: &str| {
        let mut text =
            "[workflow]\nname = \"o\"\nflow = '''a -> ==> (b -> c, d -> c) >== -> e'''\n"
                .to_string();
        for s in ["a", "b", "c", "d", "e"] {
            let arg = if s == reader {
                format!("${{{target}.v}}")
            } else {
                "x".into()
            };
            text.push_str(&format!(
                "[steps.{s}]\nkind = \"command\"\ncommand = [\"echo\", \"{arg}\"]\noutputs = {{ v = \"string\" }}\n"
            ));
        }
        let codes: Vec<Code> = errors(&load(&text)).iter().map(|e| e.0).collect();
        assert!(codes.contains(&Code::DuplicateName), "{codes:?}");
        !codes.contains(&Code::NotUpstream)
    };
    assert!(reads("e", "b"));
    assert!(reads("c", "d"));
    assert!(reads("e", "a"));
    assert!(!reads("d", "b"));
    assert!(!reads("b", "e"));
}

/// Wraps the flow `inner` in one block at level `k`.
type Wrap = fn(usize, &str) -> String;

/// The ways to nest a block, each wrapping `inner` one level deeper at level
/// `k` (with steps `pk` and `qk` of its own).
const NESTS: &[(&str, &str, Wrap)] = &[
    ("operator parallel", "==>", |k, i| {
        format!("p{k} ==> ({i}, q{k}) >==")
    }),
    ("operator for-each", "**(", |k, i| {
        format!("p{k} **(v{k} = [1]) --< ({i}) >--")
    }),
    ("operator repeat", "^^(", |k, i| {
        format!("p{k} ^^(until = true, max = 1) --< ({i}) >--")
    }),
    ("operator when", "??(", |k, i| {
        format!("p{k} ??(true) --< ({i} | q{k}) >--")
    }),
    ("verb parallel", "parallel {", |k, i| {
        format!("sequence(p{k}, parallel {{ {i}, q{k} }} parallel)")
    }),
    ("verb for-each", "forEach(", |k, i| {
        format!("sequence(p{k}, forEach(v{k} = [1]) {i} forEach)")
    }),
    ("verb repeat", "repeat(", |k, i| {
        format!("sequence(p{k}, repeat(until = true, max = 1) {i} repeat)")
    }),
    ("verb when", "when(", |k, i| {
        format!("sequence(p{k}, when(true) {i} otherwise q{k} when)")
    }),
];

fn nested_workflow(wrap: Wrap, depth: usize, leaf: &str) -> String {
    let mut flow = leaf.to_string();
    for k in (0..depth).rev() {
        flow = wrap(k, &flow);
    }
    let mut t = format!(
        "[workflow]\nname = \"deep\"\nflow = '''{flow}'''\n\n[steps.leaf]\nkind = \"noop\"\n"
    );
    for k in 0..depth {
        t.push_str(&format!(
            "[steps.p{k}]\nkind = \"noop\"\n[steps.q{k}]\nkind = \"noop\"\n"
        ));
    }
    t
}

#[test]
fn blocks_nested_100_deep_load_plan_and_print_in_both_notations() {
    on_main_stack(|| {
        for (what, _, wrap) in NESTS {
            let text = nested_workflow(*wrap, 100, "leaf");
            let loaded = load(&text);
            let v = loaded
                .result
                .unwrap_or_else(|| panic!("{what}: {:?}", errors(&load(&text))));
            render(&v);
            assert_prints_back(&v.workflow.flow);
        }
    });
}

#[test]
fn blocks_nested_deeper_than_100_are_an_error_at_the_block_too_many() {
    on_main_stack(|| {
        for depth in [101, 10_000] {
            for (what, opener, wrap) in NESTS {
                let text = nested_workflow(*wrap, depth, "leaf");
                let loaded = load(&text);
                let (line, col) = line_col(&text, nth(&text, opener, 101));
                let errs = errors(&loaded);
                assert_eq!(
                    errs,
                    [(
                        Code::FlowSyntax,
                        line,
                        col,
                        "the flow nests blocks deeper than 100 levels".to_string()
                    )],
                    "{what}, {depth} deep"
                );
            }
        }
    });
}

#[test]
fn groups_and_conditions_past_their_bounds_are_errors() {
    on_main_stack(|| {
        let cases: Vec<(String, &str, &str)> = vec![
            // (flow, where the error points, message)
            (
                format!("{}leaf{}", "(".repeat(10_000), ")".repeat(10_000)),
                "(",
                "the flow nests groups deeper than 128 levels",
            ),
            (
                format!("{}leaf{}", "sequence(".repeat(10_000), ")".repeat(10_000)),
                "sequence(",
                "the flow nests groups deeper than 128 levels",
            ),
            (
                format!("leaf ??({}true) --< (leaf) >--", "!".repeat(10_000)),
                "!",
                "the condition nests deeper than 100 levels",
            ),
            (
                format!(
                    "leaf ??({}true{}) --< (leaf) >--",
                    "(".repeat(10_000),
                    ")".repeat(10_000)
                ),
                "(",
                "the condition nests deeper than 100 levels",
            ),
            (
                format!("leaf ??(true{}) --< (leaf) >--", " || true".repeat(100_000)),
                "||",
                "the condition has more than 100 operators",
            ),
            (
                format!(
                    "leaf ^^(until = true{}, max = 2) --< (leaf) >--",
                    " && true".repeat(100_000)
                ),
                "&&",
                "the condition has more than 100 operators",
            ),
        ];
        for (flow, at, message) in cases {
            let text = format!(
                "[workflow]\nname = \"g\"\nflow = '''{flow}'''\n[steps.leaf]\nkind = \"noop\"\n"
            );
            let n = match at {
                "(" if message.contains("groups") => 129,
                "sequence(" => 129,
                "||" | "&&" => 101,
                // the flow's `??(` comes first
                "(" => 102,
                _ => 101,
            };
            let (line, col) = line_col(&text, nth(&text, at, n));
            let want = [(Code::FlowSyntax, line, col, message.to_string())];
            assert_eq!(errors(&load(&text)), want, "{message}");
        }
    });
}

#[test]
fn a_type_nesting_lists_too_deep_is_an_error() {
    on_main_stack(|| {
        for depth in [33, 100_000] {
            let ty = format!("{}string{}", "list<".repeat(depth), ">".repeat(depth));
            let text = format!(
                "[workflow]\nname = \"t\"\nflow = '''leaf'''\n[params]\np = {{ type = \"{ty}\" }}\n[steps.leaf]\nkind = \"noop\"\n"
            );
            let errs = errors(&load(&text));
            let (line, col) = line_col(&text, text.find("\"list<").unwrap());
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(
                (errs[0].0, errs[0].1, errs[0].2),
                (Code::InvalidValue, line, col)
            );
            assert!(errs[0].3.contains("nest deeper than 32"), "{errs:?}");
        }
    });
}

/// The most of everything at once: 100 blocks, each with the longest and
/// deepest condition, around 128 groups.
#[test]
fn the_deepest_flow_kaon_accepts_loads_plans_and_prints() {
    on_main_stack(|| {
        let text = deepest_workflow();
        let v = valid(&text);
        render(&v);
        assert_prints_back(&v.workflow.flow);
    });
}

/// 100 nested conditionals, each testing a condition 100 levels deep with
/// 100 operators, around `leaf` in 128 groups.
fn deepest_workflow() -> String {
    let cond = format!(
        "{}{}true{}{}",
        "(".repeat(50),
        "!".repeat(49),
        " && true".repeat(100),
        ")".repeat(50)
    );
    let leaf = format!("{}leaf{}", "(".repeat(128), ")".repeat(128));
    let wrap = move |k: usize, i: &str| format!("p{k} ??({cond}) --< ({i} | q{k}) >--");
    let mut flow = leaf;
    for k in (0..100).rev() {
        flow = wrap(k, &flow);
    }
    let mut t = format!(
        "[workflow]\nname = \"deepest\"\nflow = '''{flow}'''\n\n[steps.leaf]\nkind = \"noop\"\n"
    );
    for k in 0..100 {
        t.push_str(&format!(
            "[steps.p{k}]\nkind = \"noop\"\n[steps.q{k}]\nkind = \"noop\"\n"
        ));
    }
    t
}
