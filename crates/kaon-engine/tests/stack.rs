//! Long and deep workflows in the engine (issue 12, defect 6): a chain of
//! 90,000 steps compiles and runs to the end, and so do blocks nested as
//! deep as the workflow language allows.
//!
//! Everything runs on a thread with an 8 MiB stack, the main thread's stack
//! of the `kaon` binary (a test thread has 2 MiB), in a debug build.
#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kaon_engine::eval::bind_params;
use kaon_engine::{Action, Event, Exit, Program, RunOptions, RunState, RunStatus};
use serde_json::{Map, Value, json};

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

fn compile(text: &str) -> Arc<Program> {
    let loaded = kaon_model::load_str(Path::new("/tmp/wf/wf.toml"), text);
    let shown = loaded.diagnostics.render_short(&loaded.sources);
    let validated = loaded
        .result
        .unwrap_or_else(|| panic!("does not load:\n{}", &shown[..shown.len().min(4000)]));
    Arc::new(Program::new(Arc::new(validated), PathBuf::from("/tmp/wf")))
}

/// Runs the workflow to its end with a driver that admits every step at
/// once and lets every process exit 0 with `{"v": "x"}`; returns the run and
/// how many processes it launched.
fn run_to_end(program: Arc<Program>) -> (RunState, usize) {
    let params = bind_params(&program.workflow.workflow.params, &Map::new()).unwrap();
    let mut run = RunState::new("r1", program, params, RunOptions::default());
    let mut events = VecDeque::from([Event::RunStarted]);
    let mut now = 1_000;
    let mut launched = 0;
    while let Some(event) = events.pop_front() {
        now += 1;
        for action in run.apply(event, now).unwrap() {
            match action {
                Action::Enqueue { node, .. } => events.push_back(Event::StepAdmitted { node }),
                // No earlier results: every cached step runs.
                Action::LookupMemo(order) => events.push_back(Event::MemoMiss {
                    node: order.node,
                    attempt: order.attempt,
                    key: None,
                }),
                Action::Launch(order) => {
                    launched += 1;
                    let Value::Object(outputs) = json!({ "v": "x" }) else {
                        unreachable!()
                    };
                    events.push_back(Event::StepExited {
                        artifacts: vec![],
                        reads: vec![],
                        node: order.node,
                        attempt: order.attempt,
                        exit: Exit::Code { code: 0 },
                        outputs,
                        problems: vec![],
                    });
                }
                _ => {}
            }
        }
        let _ = run.take_delta();
    }
    (run, launched)
}

#[test]
fn a_chain_of_90000_steps_compiles_and_runs_to_the_end() {
    on_main_stack(|| {
        let n = 90_000;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let mut text = format!(
            "[workflow]\nname = \"sweep\"\nflow = '''{}'''\n\n[workflow.outputs]\nlast = \"${{s{}.v}}\"\n",
            names.join(" -> "),
            n - 1
        );
        for i in 0..n {
            if i % 2 == 0 {
                text.push_str(&format!("\n[steps.s{i}]\nkind = \"noop\"\n"));
            } else {
                let arg = if i >= 3 {
                    format!("${{s{}.v}}", i - 2)
                } else {
                    "first".into()
                };
                text.push_str(&format!(
                    "\n[steps.s{i}]\nkind = \"command\"\ncommand = [\"echo\", \"{arg}\"]\noutputs = {{ v = \"string\" }}\n"
                ));
            }
        }
        let program = compile(&text);
        assert_eq!(program.tmpls.len(), 1);
        assert_eq!(program.tmpls[0].nodes.len(), n);
        let (run, launched) = run_to_end(program);
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "{:?}",
            run.first_failure()
        );
        assert_eq!(launched, n / 2);
    });
}

/// Wraps the flow `inner` in one block at level `k`.
type Wrap = Box<dyn Fn(usize, &str) -> String>;

/// 100 blocks of one kind nested in each other, each level with a command
/// step `pk` and a noop `qk`.
fn nested(wrap: impl Fn(usize, &str) -> String, depth: usize) -> String {
    let mut flow = "leaf".to_string();
    for k in (0..depth).rev() {
        flow = wrap(k, &flow);
    }
    let mut t = format!(
        "[workflow]\nname = \"deep\"\nflow = '''{flow}'''\n\n[steps.leaf]\nkind = \"command\"\ncommand = [\"true\"]\n"
    );
    for k in 0..depth {
        t.push_str(&format!(
            "[steps.p{k}]\nkind = \"command\"\ncommand = [\"true\"]\n[steps.q{k}]\nkind = \"noop\"\n"
        ));
    }
    t
}

#[test]
fn blocks_nested_100_deep_compile_and_run_to_the_end() {
    on_main_stack(|| {
        let cond = format!(
            "{}{}true{}{}",
            "(".repeat(50),
            "!!".repeat(24),
            " && true".repeat(100),
            ")".repeat(50)
        );
        let kinds: Vec<(&str, Wrap)> = vec![
            (
                "parallel",
                Box::new(|k, i| format!("p{k} ==> ({i}, q{k}) >==")),
            ),
            (
                "for-each",
                Box::new(|k, i| format!("p{k} **(v{k} = [1]) --< ({i}) >--")),
            ),
            (
                "repeat",
                Box::new(|k, i| format!("p{k} ^^(until = true, max = 1) --< ({i}) >--")),
            ),
            (
                "when",
                Box::new(move |k, i| format!("p{k} ??({cond}) --< ({i} | q{k}) >--")),
            ),
            (
                "verb for-each",
                Box::new(|k, i| format!("sequence(p{k}, forEach(v{k} = [1]) {i} forEach)")),
            ),
        ];
        for (what, wrap) in kinds {
            let program = compile(&nested(wrap, 100));
            let (run, launched) = run_to_end(program);
            assert_eq!(
                run.status,
                RunStatus::Succeeded,
                "{what}: {:?}",
                run.first_failure()
            );
            assert_eq!(launched, 101, "{what}");
        }
    });
}
