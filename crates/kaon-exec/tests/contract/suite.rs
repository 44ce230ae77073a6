//! The properties every executor has, each a function over a [`Subject`]:
//! the executor under test, and how to make orders of its kind.

use std::time::{Duration, Instant};

use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_exec::{ExecEvent, Executor, Handle};
use serde_json::{Map, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What an order asks the step to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Succeed, handing back [`Subject::outputs`].
    Succeed,
    /// Fail by the step's own doing (exit 3, a SQL error).
    Fail,
    /// Run until killed.
    Hang,
    /// Name a program (or runtime) that does not exist.
    Unlaunchable,
}

/// An executor under test, on a machine of its own: every call to
/// [`Subject::executor`] is another instance on the same machine (kaon
/// restarted), sharing its attempts' files and processes.
pub trait Subject {
    /// The executor.
    type Exec: Executor;
    /// Its name, for messages.
    const NAME: &'static str;
    /// Another executor instance, reporting to `tx`.
    fn executor(&self, tx: UnboundedSender<ExecEvent>) -> Self::Exec;
    /// An executor whose platform fails every launch (its attempts' folder
    /// cannot be made).
    fn broken_executor(&self, tx: UnboundedSender<ExecEvent>) -> Self::Exec;
    /// Attempt 1 of a step (named after `job`) doing `job`.
    fn order(&self, job: Job) -> LaunchOrder;
    /// Outputs a [`Job::Succeed`] attempt hands back (at least these).
    fn outputs(&self) -> Map<String, Value>;
    /// How many times `order` really launched, when this executor can tell.
    fn launches(&self, order: &LaunchOrder) -> Option<usize>;
    /// A handle of this executor's kind that no attempt on this machine has.
    fn unknown_handle(&self) -> Handle;
    /// What makes two handles the same attempt (the process, the driver):
    /// an adopting launch may refresh the rest (a Spark UI port).
    fn identity(&self, handle: &Handle) -> Handle {
        handle.clone()
    }
    /// How long an attempt may take to end.
    fn patience(&self) -> Duration;
    /// How long to wait to be sure no further event comes.
    fn settle(&self) -> Duration;
}

/// A `StepExited`, unpacked.
#[derive(Debug)]
pub struct Exited {
    pub exit: Exit,
    pub outputs: Map<String, Value>,
    pub problems: Vec<String>,
}

/// The events one executor instance sent.
pub struct Inbox {
    rx: UnboundedReceiver<ExecEvent>,
    seen: Vec<ExecEvent>,
}

impl Inbox {
    pub fn new() -> (UnboundedSender<ExecEvent>, Inbox) {
        let (tx, rx) = unbounded_channel();
        (
            tx,
            Inbox {
                rx,
                seen: Vec::new(),
            },
        )
    }

    fn take_exit(&mut self, order: &LaunchOrder) -> Option<Exited> {
        let i = self.seen.iter().position(|e| is_exit_of(e, order))?;
        match self.seen.remove(i).event {
            Event::StepExited {
                exit,
                outputs,
                problems,
                ..
            } => Some(Exited {
                exit,
                outputs,
                problems,
            }),
            _ => None,
        }
    }

    /// The next `StepExited` of `order`'s attempt; fails after `within`.
    pub async fn exit(&mut self, order: &LaunchOrder, within: Duration) -> Exited {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.take_exit(order) {
                return e;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(ev)) => self.seen.push(ev),
                Ok(None) => panic!("the executor's channel closed; events: {:?}", self.seen),
                Err(_) => panic!(
                    "no StepExited for {}/{}/{} within {within:?}; events: {:?}",
                    order.run, order.node, order.attempt, self.seen
                ),
            }
        }
    }

    /// Fails if another `StepExited` of `order`'s attempt comes within `settle`.
    pub async fn no_more_exits(&mut self, order: &LaunchOrder, settle: Duration) {
        let deadline = tokio::time::Instant::now() + settle;
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.seen.push(ev);
        }
        let extra: Vec<&ExecEvent> = self.seen.iter().filter(|e| is_exit_of(e, order)).collect();
        assert!(extra.is_empty(), "a StepExited too many: {extra:?}");
    }
}

fn is_exit_of(e: &ExecEvent, order: &LaunchOrder) -> bool {
    matches!(&e.event, Event::StepExited { node, attempt, .. }
        if e.run == order.run && *node == order.node && *attempt == order.attempt)
}

fn adopting(order: &LaunchOrder) -> LaunchOrder {
    LaunchOrder {
        adopt: true,
        ..order.clone()
    }
}

fn assert_succeeded<S: Subject>(s: &S, e: &Exited) {
    assert_eq!(e.exit, Exit::Code { code: 0 }, "{}: {e:?}", S::NAME);
    assert!(e.problems.is_empty(), "{}: {e:?}", S::NAME);
    for (name, want) in s.outputs() {
        assert_eq!(e.outputs.get(&name), Some(&want), "output `{name}`: {e:?}");
    }
}

fn assert_killed(e: &Exited) {
    assert!(
        matches!(e.exit, Exit::Signal { signal: 15 | 9 }),
        "a kill ends the attempt by signal: {e:?}"
    );
    assert!(
        e.outputs.is_empty(),
        "a killed attempt has no outputs: {e:?}"
    );
}

/// Waits until `order`'s program has shown it runs (when the subject can
/// tell), so that a second launch could not hide behind the first.
async fn wait_launched<S: Subject>(s: &S, order: &LaunchOrder) {
    let deadline = Instant::now() + s.patience();
    while s.launches(order) == Some(0) {
        assert!(Instant::now() < deadline, "{}: never launched", S::NAME);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A launched attempt ends in exactly one `StepExited`, with its outputs
/// (file outputs as paths that exist).
pub async fn start_reports_one_exit_with_its_outputs<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Succeed);
    exec.start(&order).expect("launched");
    let e = inbox.exit(&order, s.patience()).await;
    assert_succeeded(s, &e);
    for o in order.outputs.iter().filter(|o| o.path.is_some()) {
        let path = o.path.as_ref().expect("filtered");
        assert!(path.exists(), "file output {} exists", path.display());
    }
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(1), 1);
}

/// An adopting launch with nothing to adopt launches.
pub async fn adopting_with_nothing_to_adopt_launches<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = adopting(&s.order(Job::Succeed));
    exec.start(&order).expect("launched");
    let e = inbox.exit(&order, s.patience()).await;
    assert_succeeded(s, &e);
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(1), 1);
}

/// Starting an attempt again (adopting) while it runs finds it; each
/// handle returned ends in exactly one `StepExited`.
pub async fn start_is_idempotent_per_attempt<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Hang);
    let first = exec.start(&order).expect("launched");
    wait_launched(s, &order).await;
    let again = exec.start(&adopting(&order)).expect("adopted");
    assert_eq!(
        s.identity(&first),
        s.identity(&again),
        "the same attempt: {first:?} vs {again:?}"
    );
    exec.kill(&again);
    for _ in 0..2 {
        assert_killed(&inbox.exit(&order, s.patience()).await);
    }
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(1), 1, "launched once");
}

/// kaon died after launching, before storing the handle: the next kaon's
/// adopting launch finds the running attempt instead of launching again.
pub async fn adopt_after_a_crash_finds_the_running_attempt<S: Subject>(s: &S) {
    let (tx, inbox) = Inbox::new();
    let before = s.executor(tx);
    let order = s.order(Job::Hang);
    let first = before.start(&order).expect("launched");
    wait_launched(s, &order).await;
    drop(inbox); // the crash: nobody hears the first kaon's watcher any more
    let (tx, mut inbox) = Inbox::new();
    let after = s.executor(tx);
    let found = after.start(&adopting(&order)).expect("adopted");
    assert_eq!(
        s.identity(&first),
        s.identity(&found),
        "{first:?} vs {found:?}"
    );
    after.kill(&found);
    assert_killed(&inbox.exit(&order, s.patience()).await);
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(1), 1, "launched once");
}

/// The attempt ended while no kaon watched: the adopting launch reports
/// its end and outputs, and launches nothing.
pub async fn adopt_after_a_crash_finds_the_ended_attempt<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let before = s.executor(tx);
    let order = s.order(Job::Succeed);
    before.start(&order).expect("launched");
    assert_succeeded(s, &inbox.exit(&order, s.patience()).await);
    drop(inbox);
    let (tx, mut inbox) = Inbox::new();
    let after = s.executor(tx);
    after.start(&adopting(&order)).expect("adopted");
    assert_succeeded(s, &inbox.exit(&order, s.patience()).await);
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(1), 1, "launched once");
}

/// A restarted kaon re-attaches with the stored handle, and can kill.
pub async fn reattach_watches_the_attempt_after_a_restart<S: Subject>(s: &S) {
    let (tx, inbox) = Inbox::new();
    let before = s.executor(tx);
    let order = s.order(Job::Hang);
    let handle = before.start(&order).expect("launched");
    drop(inbox);
    let (tx, mut inbox) = Inbox::new();
    let after = s.executor(tx);
    after.reattach(&order, &handle);
    after.kill(&handle);
    assert_killed(&inbox.exit(&order, s.patience()).await);
    inbox.no_more_exits(&order, s.settle()).await;
}

/// Re-attaching to an attempt the machine does not know ends in exactly
/// one `StepExited` with [`Exit::Lost`].
pub async fn reattach_to_an_unknown_attempt_ends_lost<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Succeed);
    exec.reattach(&order, &s.unknown_handle());
    let e = inbox.exit(&order, s.patience()).await;
    assert!(matches!(e.exit, Exit::Lost { .. }), "{e:?}");
    inbox.no_more_exits(&order, s.settle()).await;
    // A handle of a kind no executor runs: lost as well.
    let child = Handle::ChildRun {
        run: "elsewhere".into(),
    };
    exec.reattach(&order, &child);
    let e = inbox.exit(&order, s.patience()).await;
    assert!(matches!(e.exit, Exit::Lost { .. }), "{e:?}");
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(0), 0, "nothing launched");
}

/// A kill ends a running attempt, with exactly one `StepExited`.
pub async fn kill_stops_a_running_attempt<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Hang);
    let handle = exec.start(&order).expect("launched");
    exec.kill(&handle);
    assert_killed(&inbox.exit(&order, s.patience()).await);
    // A second kill of the ended attempt changes nothing.
    exec.kill(&handle);
    inbox.no_more_exits(&order, s.settle()).await;
}

/// Killing an attempt that already ended does nothing.
pub async fn kill_of_an_ended_attempt_does_nothing<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Succeed);
    let handle = exec.start(&order).expect("launched");
    assert_succeeded(s, &inbox.exit(&order, s.patience()).await);
    exec.kill(&handle);
    exec.kill(&s.unknown_handle());
    exec.kill(&Handle::ChildRun {
        run: "elsewhere".into(),
    });
    inbox.no_more_exits(&order, s.settle()).await;
}

/// A step that fails by its own doing ends with its status (or the
/// executor's account of it), never as a platform failure, and hands back
/// no outputs.
pub async fn a_failing_step_is_a_user_failure<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Fail);
    exec.start(&order).expect("launched");
    let e = inbox.exit(&order, s.patience()).await;
    match &e.exit {
        Exit::Code { code } => assert_eq!(*code, 3, "{e:?}"),
        Exit::Failed { message, .. } => assert!(!message.is_empty(), "{e:?}"),
        other => panic!("{}: a user failure, not {other:?}", S::NAME),
    }
    assert!(e.outputs.is_empty(), "{e:?}");
    inbox.no_more_exits(&order, s.settle()).await;
}

/// A launch the step's settings make impossible fails at once, blaming
/// the step, and sends nothing.
pub async fn an_unlaunchable_step_is_a_user_launch_error<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.executor(tx);
    let order = s.order(Job::Unlaunchable);
    let err = exec.start(&order).expect_err("not launchable");
    assert!(!err.platform, "the step's fault: {err:?}");
    assert!(!err.message.is_empty());
    inbox.no_more_exits(&order, s.settle()).await;
    assert_eq!(s.launches(&order).unwrap_or(0), 0, "nothing launched");
}

/// A launch the platform fails blames the platform, and sends nothing.
pub async fn a_platform_failure_is_the_platforms<S: Subject>(s: &S) {
    let (tx, mut inbox) = Inbox::new();
    let exec = s.broken_executor(tx);
    let order = s.order(Job::Succeed);
    let err = exec.start(&order).expect_err("the platform fails");
    assert!(err.platform, "the platform's fault: {err:?}");
    inbox.no_more_exits(&order, s.settle()).await;
}

/// One `#[tokio::test]` per property for the subject `$make` builds
/// (`None`: skipped, which only an explicit opt-out may ask for).
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@each $make;
            start_reports_one_exit_with_its_outputs,
            adopting_with_nothing_to_adopt_launches,
            start_is_idempotent_per_attempt,
            adopt_after_a_crash_finds_the_running_attempt,
            adopt_after_a_crash_finds_the_ended_attempt,
            reattach_watches_the_attempt_after_a_restart,
            reattach_to_an_unknown_attempt_ends_lost,
            kill_stops_a_running_attempt,
            kill_of_an_ended_attempt_does_nothing,
            a_failing_step_is_a_user_failure,
            an_unlaunchable_step_is_a_user_launch_error,
            a_platform_failure_is_the_platforms,
        );
    };
    (@each $make:expr; $($prop:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $prop() {
                if let Some(s) = $make {
                    $crate::suite::$prop(&s).await;
                }
            }
        )*
    };
}
