//! An in-memory [`Executor`]: the twin the runtime's tests drive instead of
//! processes (STYLE.md §3).
//!
//! No process is started and nothing is read back from disk: an attempt is
//! a record on a simulated machine ([`MemoryExecutor`] instances made with
//! [`MemoryExecutor::restarted`] share it, as a kaon restarted after a
//! crash shares the machine with the steps it left running). What an
//! attempt does is scripted per step name (or instance key) and attempt
//! with a [`Script`]; an attempt nobody scripted succeeds, after the
//! machine's delay (none by default), with every declared output written.
//!
//! It keeps the whole [`Executor`] contract, and the executor contract
//! suite (`crates/kaon-exec/tests/contract/`) checks it does, next to the
//! local and Spark executors. Time is tokio's, so a test on a paused clock
//! runs delays instantly.
//!
//! ```
//! # async fn demo() {
//! use kaon_exec::memory::{MemoryExecutor, Script};
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let exec = MemoryExecutor::new(tx);
//! exec.script("train", Script::exit(3)); // every attempt of `train` fails
//! exec.script_attempt("fetch", 1, Script::platform_failure("no slots"));
//! exec.script("wait", Script::hang().progress(Some(50.0), Some("half way")));
//! # }
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kaon_engine::event::Invocation;
use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_model::types::Type;
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use crate::{ExecEvent, Executor, Handle, LaunchError};

/// What one attempt does, from launch to end.
///
/// Built from one of the outcomes ([`Script::succeed`], [`Script::exit`],
/// [`Script::ends_with`], [`Script::hang`], [`Script::launch_error`],
/// [`Script::platform_failure`]) and refined with the other methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    outcome: Outcome,
    delay: Option<Duration>,
    outputs: Map<String, Value>,
    files: Vec<(String, Vec<u8>)>,
    omitted: Vec<String>,
    progress: Vec<(Option<f32>, Option<String>)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ends(Exit),
    Hang,
    Refused(LaunchError),
}

impl Script {
    fn new(outcome: Outcome) -> Script {
        Script {
            outcome,
            delay: None,
            outputs: Map::new(),
            files: Vec::new(),
            omitted: Vec::new(),
            progress: Vec::new(),
        }
    }

    /// Exits 0 with every declared output written (what an attempt nobody
    /// scripted does): a value output gets the value set with
    /// [`Script::output`], else a default of its type (`"<key>.<name>"`
    /// for a string, 1, 1.0, `true`, `null`, a list of one default item);
    /// a file output is written (see [`Script::file`], else it holds
    /// `"<key>.<name>\n"`), a folder output created.
    pub fn succeed() -> Script {
        Script::new(Outcome::Ends(Exit::Code { code: 0 }))
    }

    /// Exits with `code`: a failure of the step (its outputs are not
    /// collected unless `code` is 0).
    pub fn exit(code: i32) -> Script {
        Script::ends_with(Exit::Code { code })
    }

    /// Ends however `exit` says (a signal, a Spark driver's failure, lost).
    pub fn ends_with(exit: Exit) -> Script {
        Script::new(Outcome::Ends(exit))
    }

    /// Runs until killed; the kill ends it with SIGTERM's status, as a
    /// process that obeys SIGTERM.
    pub fn hang() -> Script {
        Script::new(Outcome::Hang)
    }

    /// Cannot be launched because of the step's settings (a program that
    /// does not exist): [`Executor::start`] fails with a [`LaunchError`]
    /// whose `platform` is false.
    pub fn launch_error(message: &str) -> Script {
        Script::new(Outcome::Refused(LaunchError {
            message: message.to_string(),
            platform: false,
        }))
    }

    /// Cannot be launched because of the platform (out of processes, disk
    /// full): [`Executor::start`] fails with a [`LaunchError`] whose
    /// `platform` is true.
    pub fn platform_failure(message: &str) -> Script {
        Script::new(Outcome::Refused(LaunchError {
            message: message.to_string(),
            platform: true,
        }))
    }

    /// Runs for `delay` (tokio time) before it ends, instead of the
    /// machine's delay ([`MemoryExecutor::with_delay`]).
    pub fn after(mut self, delay: Duration) -> Script {
        self.delay = Some(delay);
        self
    }

    /// Hands back output `name` = `value` when it exits 0 (declared or
    /// not, as a step may print any output marker).
    pub fn output(mut self, name: &str, value: impl Into<Value>) -> Script {
        self.outputs.insert(name.to_string(), value.into());
        self
    }

    /// Writes `contents` when it exits 0: at the declared file output
    /// `name`'s path, into the declared folder output `name` as a file of
    /// that name, or else at `name` relative to the working directory
    /// (folders created as needed).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Script {
        self.files.push((name.to_string(), contents.into()));
        self
    }

    /// Leaves declared output `name` out: no value, no file (the executor
    /// then reports the file missing, as the local one does).
    pub fn omit(mut self, name: &str) -> Script {
        self.omitted.push(name.to_string());
        self
    }

    /// Reports progress once launched, before it ends; repeated calls
    /// report in order.
    pub fn progress(mut self, percent: Option<f32>, message: Option<&str>) -> Script {
        self.progress.push((percent, message.map(str::to_string)));
        self
    }
}

/// The in-memory executor. Must be used inside a tokio runtime (attempts
/// run and are watched as tasks).
///
/// Besides the [`Executor`] contract it answers what a test wants to know:
/// which attempts really launched ([`MemoryExecutor::launched`], adoption
/// and re-attachment launch nothing) and which still run
/// ([`MemoryExecutor::running`]). Its handles are [`Handle::Memory`], with
/// ids no other machine in the process uses: a handle from another
/// machine (a reboot) is unknown, so re-attaching to it reports the
/// attempt lost.
#[derive(Clone)]
pub struct MemoryExecutor {
    machine: Arc<Machine>,
    tx: UnboundedSender<ExecEvent>,
}

/// Gives handles ids no other machine in this process gave, so that a
/// handle from another machine (a "reboot") is unknown, not confused.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct Machine {
    state: Mutex<MachineState>,
}

#[derive(Default)]
struct MachineState {
    delay: Duration,
    /// By (step name or instance key, attempt; `None`: every attempt).
    scripts: HashMap<(String, Option<u32>), Script>,
    procs: HashMap<u64, Arc<Proc>>,
    /// The latest process of each (run, node, attempt).
    by_attempt: HashMap<(String, u32, u32), u64>,
    /// Ids of launched processes, in launch order.
    launched: Vec<u64>,
}

impl Machine {
    fn lock(&self) -> MutexGuard<'_, MachineState> {
        // A test that panicked while holding it left nothing half-done
        // that matters to another.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One simulated process.
struct Proc {
    id: u64,
    order: LaunchOrder,
    state: watch::Sender<ProcState>,
}

#[derive(Clone, Default)]
struct ProcState {
    /// Every progress report so far, in order.
    progress: Vec<(Option<f32>, Option<String>)>,
    ended: Option<Ended>,
}

#[derive(Clone)]
struct Ended {
    exit: Exit,
    outputs: Map<String, Value>,
    problems: Vec<String>,
}

impl Proc {
    fn handle(&self) -> Handle {
        Handle::Memory { id: self.id }
    }

    /// Ends it unless it already ended; true when this ended it.
    fn end(&self, ended: Ended) -> bool {
        self.state.send_if_modified(|s| {
            if s.ended.is_some() {
                return false;
            }
            s.ended = Some(ended);
            true
        })
    }

    fn is_running(&self) -> bool {
        self.state.borrow().ended.is_none()
    }
}

impl MemoryExecutor {
    /// An executor on a machine of its own, reporting to `tx`.
    pub fn new(tx: UnboundedSender<ExecEvent>) -> MemoryExecutor {
        MemoryExecutor {
            machine: Arc::new(Machine::default()),
            tx,
        }
    }

    /// Another executor on this one's machine, reporting to `tx`: kaon
    /// after a restart. What this one launched is still there, running or
    /// ended, for [`Executor::reattach`] and adopting launches; scripts
    /// and the delay are the machine's, so they are shared too.
    pub fn restarted(&self, tx: UnboundedSender<ExecEvent>) -> MemoryExecutor {
        MemoryExecutor {
            machine: self.machine.clone(),
            tx,
        }
    }

    /// Sets how long attempts whose script gives no time of their own run
    /// (default: they end at once).
    pub fn with_delay(self, delay: Duration) -> MemoryExecutor {
        self.machine.lock().delay = delay;
        self
    }

    /// Scripts every attempt of the steps whose name or instance key
    /// (`train[reg=US]`) is `name`, replacing an earlier script for it.
    pub fn script(&self, name: &str, script: Script) {
        self.machine
            .lock()
            .scripts
            .insert((name.to_string(), None), script);
    }

    /// Scripts attempt `attempt` (1 for the first) of the steps whose name
    /// or instance key is `name`; it wins over [`MemoryExecutor::script`].
    pub fn script_attempt(&self, name: &str, attempt: u32, script: Script) {
        self.machine
            .lock()
            .scripts
            .insert((name.to_string(), Some(attempt)), script);
    }

    /// The orders of every attempt really launched on this machine, in
    /// launch order (adopted and re-attached ones are not launches).
    pub fn launched(&self) -> Vec<LaunchOrder> {
        let m = self.machine.lock();
        m.launched
            .iter()
            .filter_map(|id| m.procs.get(id))
            .map(|p| p.order.clone())
            .collect()
    }

    /// The orders of attempts that have not ended yet, in launch order.
    pub fn running(&self) -> Vec<LaunchOrder> {
        let m = self.machine.lock();
        m.launched
            .iter()
            .filter_map(|id| m.procs.get(id))
            .filter(|p| p.is_running())
            .map(|p| p.order.clone())
            .collect()
    }

    /// The script for `order`: the most specific one wins (instance key
    /// before step name, one attempt before all).
    fn script_for(m: &MachineState, order: &LaunchOrder) -> Script {
        let names = [&order.key, &order.step];
        let attempts = [Some(order.attempt), None];
        attempts
            .iter()
            .flat_map(|a| names.iter().map(move |n| ((*n).clone(), *a)))
            .find_map(|k| m.scripts.get(&k).cloned())
            .unwrap_or_else(Script::succeed)
    }

    /// Reports `p`'s progress and end to this executor's channel, from
    /// progress number `from` on; exactly one `StepExited`.
    fn watch(&self, p: Arc<Proc>, from: usize) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut rx = p.state.subscribe();
            let mut seen = from;
            let ended = loop {
                let (news, ended) = {
                    let s = rx.borrow_and_update();
                    (
                        s.progress[seen.min(s.progress.len())..].to_vec(),
                        s.ended.clone(),
                    )
                };
                seen += news.len();
                for (percent, message) in news {
                    send(
                        &tx,
                        &p.order,
                        Event::StepProgressed {
                            node: p.order.node,
                            attempt: p.order.attempt,
                            percent,
                            message,
                        },
                    );
                }
                if let Some(e) = ended {
                    break e;
                }
                if rx.changed().await.is_err() {
                    // Cannot happen while `p` holds the sender; an end is
                    // owed all the same.
                    break Ended {
                        exit: Exit::Lost {
                            message: "the simulated process vanished".into(),
                        },
                        outputs: Map::new(),
                        problems: Vec::new(),
                    };
                }
            };
            send(&tx, &p.order, exited(&p.order, ended));
        });
    }
}

fn exited(order: &LaunchOrder, e: Ended) -> Event {
    Event::StepExited {
        node: order.node,
        attempt: order.attempt,
        exit: e.exit,
        outputs: e.outputs,
        problems: e.problems,
        artifacts: Vec::new(),
        reads: Vec::new(),
    }
}

fn send(tx: &UnboundedSender<ExecEvent>, order: &LaunchOrder, event: Event) {
    // A closed channel: the kaon it reported to is gone.
    let _ = tx.send(ExecEvent {
        run: order.run.clone(),
        event,
    });
}

fn refuse(message: String) -> LaunchError {
    LaunchError {
        message,
        platform: false,
    }
}

/// Runs a launched attempt: reports its progress, waits, ends.
async fn run(p: Arc<Proc>, script: Script, delay: Duration) {
    p.state
        .send_modify(|s| s.progress.extend(script.progress.iter().cloned()));
    let exit = match &script.outcome {
        Outcome::Ends(exit) => exit.clone(),
        // Ended by `kill` only.
        Outcome::Hang | Outcome::Refused(_) => return,
    };
    tokio::time::sleep(script.delay.unwrap_or(delay)).await;
    if !p.is_running() {
        return;
    }
    let (outputs, problems) = if exit == (Exit::Code { code: 0 }) {
        write_outputs(&p.order, &script)
    } else {
        (Map::new(), Vec::new())
    };
    p.end(Ended {
        exit,
        outputs,
        problems,
    });
}

/// What a successful attempt hands back, after writing its files; as the
/// local executor's `collect_outputs`: file and folder outputs as paths,
/// a problem for each one not written.
fn write_outputs(order: &LaunchOrder, script: &Script) -> (Map<String, Value>, Vec<String>) {
    let mut outputs = Map::new();
    let mut problems = Vec::new();
    let declared = |name: &str| order.outputs.iter().find(|o| o.name == name);
    for (name, contents) in &script.files {
        let path = match declared(name) {
            Some(o) if o.ty == Type::Dir => o.path.as_ref().map(|p| p.join(name)),
            Some(o) => o.path.clone(),
            None => None,
        }
        .unwrap_or_else(|| order.workdir.join(name));
        if let Err(e) = write(&path, contents) {
            problems.push(format!("cannot write {}: {e}", path.display()));
        }
    }
    for o in &order.outputs {
        if script.omitted.contains(&o.name) {
            if let Some(path) = &o.path {
                problems.push(format!(
                    "declared {} output `{}` was not written at {}",
                    o.ty,
                    o.name,
                    path.display()
                ));
            }
            continue;
        }
        let Some(path) = &o.path else {
            let v = script
                .outputs
                .get(&o.name)
                .cloned()
                .unwrap_or_else(|| default_value(&o.ty, &format!("{}.{}", order.key, o.name)));
            outputs.insert(o.name.clone(), v);
            continue;
        };
        let written = script.files.iter().any(|(n, _)| n == &o.name);
        let made = match o.ty {
            Type::Dir => std::fs::create_dir_all(path),
            _ if written => Ok(()),
            _ => write(path, format!("{}.{}\n", order.key, o.name).as_bytes()),
        };
        match made {
            Ok(()) => {
                outputs.insert(o.name.clone(), Value::String(path.display().to_string()));
            }
            Err(e) => problems.push(format!(
                "declared {} output `{}` was not written at {}: {e}",
                o.ty,
                o.name,
                path.display()
            )),
        }
    }
    for (name, v) in &script.outputs {
        if !order
            .outputs
            .iter()
            .any(|o| &o.name == name && o.path.is_some())
        {
            outputs.insert(name.clone(), v.clone());
        }
    }
    (outputs, problems)
}

fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, contents)
}

/// A value of type `ty` for an output nobody scripted.
fn default_value(ty: &Type, text: &str) -> Value {
    match ty {
        Type::String | Type::File | Type::Dir => Value::String(text.to_string()),
        Type::Int => Value::from(1),
        Type::Float => Value::from(1.0),
        Type::Bool => Value::Bool(true),
        Type::Json => Value::Null,
        Type::List(item) => Value::Array(vec![default_value(item, text)]),
    }
}

impl Executor for MemoryExecutor {
    fn start(&self, order: &LaunchOrder) -> Result<Handle, LaunchError> {
        let mut m = self.machine.lock();
        let k = (order.run.clone(), order.node.0, order.attempt);
        if order.adopt
            && let Some(p) = m.by_attempt.get(&k).and_then(|id| m.procs.get(id)).cloned()
        {
            drop(m);
            let from = p.state.borrow().progress.len();
            self.watch(p.clone(), from);
            return Ok(p.handle());
        }
        match &order.invocation {
            Invocation::Argv { argv } if argv.is_empty() => {
                return Err(refuse("the command is empty".into()));
            }
            Invocation::Unsupported { kind } => {
                return Err(refuse(format!(
                    "`{kind}` steps cannot run on the in-memory executor"
                )));
            }
            _ => {}
        }
        let script = Self::script_for(&m, order);
        if let Outcome::Refused(e) = &script.outcome {
            return Err(e.clone());
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(Proc {
            id,
            order: order.clone(),
            state: watch::Sender::new(ProcState::default()),
        });
        m.procs.insert(id, p.clone());
        m.by_attempt.insert(k, id);
        m.launched.push(id);
        let delay = m.delay;
        drop(m);
        // Watched before it runs, so that every progress report is seen.
        self.watch(p.clone(), 0);
        tokio::spawn(run(p.clone(), script, delay));
        Ok(p.handle())
    }

    fn reattach(&self, order: &LaunchOrder, handle: &Handle) {
        let found = match handle {
            Handle::Memory { id } => self.machine.lock().procs.get(id).cloned(),
            _ => None,
        };
        match found {
            Some(p) => {
                let from = p.state.borrow().progress.len();
                self.watch(p, from);
            }
            None => {
                let order = order.clone();
                let tx = self.tx.clone();
                // Reported from a task, as every other end is: never
                // before `reattach` has returned.
                tokio::spawn(async move {
                    let lost = Ended {
                        exit: Exit::Lost {
                            message: "no such attempt on this machine".into(),
                        },
                        outputs: Map::new(),
                        problems: Vec::new(),
                    };
                    send(&tx, &order, exited(&order, lost));
                });
            }
        }
    }

    fn kill(&self, handle: &Handle) {
        let Handle::Memory { id } = handle else {
            return;
        };
        let Some(p) = self.machine.lock().procs.get(id).cloned() else {
            return;
        };
        p.end(Ended {
            exit: Exit::Signal { signal: 15 },
            outputs: Map::new(),
            problems: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests;
