//! Command steps as child processes of this machine.
//!
//! Each attempt runs under a tiny `sh` wrapper that records the program's
//! exit status in a file: kaon may die while the step runs, and a process
//! that is not our child gives its status to nobody else. The wrapper is the
//! leader of a new process group, so a kill reaches everything the step
//! started. Output goes straight to log files (not pipes), so a step keeps
//! running, and keeps its output, while kaon is down.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kaon_engine::event::Invocation;
use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_model::types::Type;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use kaon_artifacts::ArtifactStore;

use crate::files::{AttemptFiles, Marker, parse_marker};
use crate::{ExecEvent, Executor, Handle, LaunchError, procfs};

/// Runs the program, then leaves its exit status where a later kaon finds it.
///
/// A kill's SIGTERM reaches the whole group, the wrapper too: the trap (a
/// handler, not an ignore, so the program still gets SIGTERM's default
/// action) keeps the wrapper alive to record that status, which a kaon
/// that did not start the wrapper cannot learn any other way.
const WRAPPER: &str =
    r#"trap : TERM; "$@"; s=$?; printf '%s\n' "$s" > "$KAON_EXIT_FILE"; exit "$s""#;

/// The local process executor.
#[derive(Clone, Debug)]
pub struct LocalExecutor {
    root: PathBuf,
    tx: UnboundedSender<ExecEvent>,
    poll: Duration,
    grace: Duration,
    store: Option<ArtifactStore>,
    data_dir: Option<PathBuf>,
}

/// An attempt's process: what its [`Handle::Process`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proc {
    /// The wrapper's pid, which is also its process group (0: none).
    pid: i32,
    /// Its start time in clock ticks after boot (tells pid reuse apart).
    start: u64,
}

impl LocalExecutor {
    /// Logs and attempt files go under `root/<run>/`; events go to `tx`.
    /// `poll` is how often progress is read and foreign processes checked;
    /// `grace` is how long processes get between SIGTERM and SIGKILL.
    pub fn new(
        root: PathBuf,
        tx: UnboundedSender<ExecEvent>,
        poll: Duration,
        grace: Duration,
    ) -> LocalExecutor {
        LocalExecutor {
            root,
            tx,
            poll,
            grace,
            store: None,
            data_dir: None,
        }
    }

    /// Tells steps kaon's data directory (`KAON_DATA_DIR`, made absolute),
    /// so that `kaon artifacts get/put` inside a step finds the run's
    /// database whatever the step's working directory.
    pub fn with_data_dir(mut self, dir: &Path) -> LocalExecutor {
        self.data_dir = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        self
    }

    /// Stores declared file and folder outputs of successful attempts in
    /// `store`, and tells steps where it is (`KAON_ARTIFACT_STORE`) for
    /// `kaon artifact put`.
    pub fn with_artifacts(mut self, store: ArtifactStore) -> LocalExecutor {
        self.store = Some(store);
        self
    }

    /// The files of an attempt.
    pub fn files(&self, order: &LaunchOrder) -> AttemptFiles {
        AttemptFiles::new(
            &self.root,
            &order.run,
            order.node.0,
            &order.step,
            order.attempt,
        )
    }

    fn watch(&self, order: &LaunchOrder, handle: Proc, child: Option<tokio::process::Child>) {
        let w = Watch {
            tx: self.tx.clone(),
            files: self.files(order),
            order: order.clone(),
            poll: self.poll,
            grace: self.grace,
            offset: 0,
            outputs: Map::new(),
            store: self.store.clone(),
        };
        tokio::spawn(w.run(handle, child));
    }
}

/// How long a re-issued launch waits for an earlier process of its
/// attempt to show itself.
const ADOPT_WAIT: Duration = Duration::from_secs(5);

/// The process a kaon that died while launching this attempt left
/// behind, if any: `Some` with pid 0 when it already ended (its exit file
/// is there), `None` when the attempt never started, so launching is safe.
///
/// A live wrapper is found by `KAON_ATTEMPT_ID` in its environment.
/// Between fork and exec it is not (its environment is still kaon's), but
/// it already holds the attempt's stdout log, which kaon locks before
/// starting it: while that lock is held, something of the attempt lives,
/// so this waits (at most [`ADOPT_WAIT`]) for it to show. The exit file is
/// trusted only when it reads whole: the wrapper writes it just before it
/// exits, and a file caught while being written looks empty. Once nothing
/// holds the log, the wrapper is gone and its file is complete, so it is
/// read once more before deciding that the attempt never started.
fn earlier_process(attempt: &str, files: &AttemptFiles) -> Result<Option<Proc>, LaunchError> {
    let ended = Proc { pid: 0, start: 0 };
    let deadline = std::time::Instant::now() + ADOPT_WAIT;
    loop {
        if let Some((pid, st)) = procfs::find_attempt(attempt) {
            return Ok(Some(Proc {
                pid,
                start: st.start,
            }));
        }
        // Ended; what still holds the log is left over from it (the
        // watcher ends such leftovers).
        if files.read_exit().is_some() {
            return Ok(Some(ended));
        }
        if !log_held(&files.stdout) {
            return Ok(files.read_exit().map(|_| ended));
        }
        if std::time::Instant::now() > deadline {
            return Err(LaunchError {
                message: format!(
                    "a process of this attempt still holds its log {} but cannot be found; not starting a second copy",
                    files.stdout.display()
                ),
                platform: true,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when some process holds the lock kaon took on an attempt's log.
fn log_held(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn attempt_id(order: &LaunchOrder) -> String {
    kaon_model::ids::AttemptId::new(&order.run, order.node.0, order.attempt).to_string()
}

fn user(message: String) -> LaunchError {
    LaunchError {
        message,
        platform: false,
    }
}

/// Finds `prog` the way `execvp` would, to fail early with a clear message.
fn resolve(prog: &str, workdir: &Path, path_var: Option<&str>) -> Result<(), LaunchError> {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if prog.contains('/') {
        let p = workdir.join(prog);
        return if is_exec(&p) {
            Ok(())
        } else if p.exists() {
            Err(user(format!("`{prog}` is not an executable file")))
        } else {
            Err(user(format!(
                "program `{prog}` not found (looked in {})",
                workdir.display()
            )))
        };
    }
    let path = path_var
        .map(str::to_string)
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    if std::env::split_paths(&path).any(|d| is_exec(&d.join(prog))) {
        Ok(())
    } else {
        Err(user(format!("program `{prog}` not found on PATH")))
    }
}

impl Executor for LocalExecutor {
    fn start(&self, order: &LaunchOrder) -> Result<Handle, LaunchError> {
        let files = self.files(order);
        if let Some(dir) = files.stdout.parent() {
            crate::files::create_private_dir(dir).map_err(|e| LaunchError {
                message: format!("cannot create the log folder {}: {e}", dir.display()),
                platform: true,
            })?;
        }
        if order.adopt
            && let Some(h) = earlier_process(&attempt_id(order), &files)?
        {
            // kaon died between ordering this launch and storing its handle.
            self.watch(order, h, None);
            return Ok(h.into());
        }
        let argv: Vec<String> = match &order.invocation {
            Invocation::Argv { argv } => {
                let Some(prog) = argv.first() else {
                    return Err(user("the command is empty".into()));
                };
                let path_var = order
                    .env
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.as_str());
                resolve(prog, &order.workdir, path_var)?;
                argv.clone()
            }
            Invocation::Script { script } => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            Invocation::Spark { .. } => {
                return Err(user(
                    "Spark steps need the Spark executor; this one runs processes only".into(),
                ));
            }
            Invocation::Unsupported { kind } => {
                return Err(user(format!(
                    "`{kind}` steps cannot run on the local executor of this build"
                )));
            }
        };
        if !order.workdir.is_dir() {
            return Err(user(format!(
                "the working directory {} does not exist",
                order.workdir.display()
            )));
        }
        for stale in [
            &files.exit,
            &files.outputs,
            &files.artifacts,
            &files.reported,
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let open = |p: &Path| {
            crate::files::create_private(p).map_err(|e| LaunchError {
                message: format!("cannot create the log {}: {e}", p.display()),
                platform: true,
            })
        };
        let (out, err) = (open(&files.stdout)?, open(&files.stderr)?);
        // The lock goes with the open file into the child's stdout and stays
        // held while anything of the attempt lives, from the fork on, even
        // after kaon dies (see `earlier_process`).
        out.lock().map_err(|e| LaunchError {
            message: format!("cannot lock the log {}: {e}", files.stdout.display()),
            platform: true,
        })?;
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("kaon-step")
            .args(&argv)
            .current_dir(&order.workdir)
            .envs(order.env.iter().map(|(k, v)| (k, v)))
            .env("KAON_OUTPUTS_FILE", &files.outputs)
            .env("KAON_ARTIFACTS_FILE", &files.artifacts)
            .envs(
                self.store
                    .as_ref()
                    .map(|s| ("KAON_ARTIFACT_STORE", s.url().to_string())),
            )
            .env("KAON_EXIT_FILE", &files.exit)
            .envs(self.data_dir.as_ref().map(|d| ("KAON_DATA_DIR", d)))
            .env("KAON_ATTEMPT_ID", attempt_id(order))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| LaunchError {
            // The program only: arguments may hold secrets.
            message: format!(
                "cannot start `{}`: {e}",
                argv.first().map(String::as_str).unwrap_or_default()
            ),
            platform: true,
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let start = procfs::stat(pid).map(|s| s.start).unwrap_or(0);
        let h = Proc { pid, start };
        self.watch(order, h, Some(child));
        Ok(h.into())
    }

    fn reattach(&self, order: &LaunchOrder, handle: &Handle) {
        // Not a process: nothing to watch, and no exit file (pid 0), so
        // the attempt is reported lost.
        let (pid, start) = handle.process().unwrap_or((0, 0));
        let h = Proc { pid, start };
        self.watch(order, h, None);
    }

    fn kill(&self, handle: &Handle) {
        let Some((pid, start)) = handle.process() else {
            return;
        };
        let h = Proc { pid, start };
        if h.pid <= 0 || !procfs::alive(h.pid, h.start) {
            return;
        }
        // The wrapper records the program's status only once its trap is
        // set; a SIGTERM in the instant before would end it without a word
        // (a kaon that did not start it would see the attempt as lost).
        let deadline = std::time::Instant::now() + TRAP_WAIT;
        while !traps_term(h.pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = killpg(Pid::from_raw(h.pid), Signal::SIGTERM);
        // This only makes sure the wrapper ends; what it leaves in the group
        // is ended by the attempt's watcher (`end_group`) once it has.
        let grace = self.grace;
        tokio::spawn(async move {
            let alive = || procfs::alive(h.pid, h.start);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !alive() {
                    return;
                }
            }
            // The program first, so that the wrapper (which outlives
            // SIGTERM by design) can still record how it ended.
            for pid in group_members(h.pid).into_iter().filter(|p| *p != h.pid) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if !alive() {
                    return;
                }
            }
            let _ = killpg(Pid::from_raw(h.pid), Signal::SIGKILL);
        });
    }
}

/// How long a kill waits for a just-started wrapper to set its trap.
const TRAP_WAIT: Duration = Duration::from_millis(200);

/// True when `pid` catches SIGTERM (or cannot be looked at: then waiting
/// for it is pointless).
fn traps_term(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    caught.is_none_or(|m| m & (1 << (Signal::SIGTERM as u32 - 1)) != 0)
}

/// The live members of process group `pgrp`.
fn group_members(pgrp: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.pgrp == pgrp && s.state != 'Z'))
        .collect()
}

/// Ends what a finished step left in its process group (background
/// processes, or children ignoring the SIGTERM that ended the wrapper):
/// SIGTERM, then SIGKILL after `grace`. A step counts as ended only once
/// its whole group is gone, so a cancelled or timed-out step never keeps
/// running behind kaon's back.
/// Zombies left in the group do not count: they run nothing.
async fn end_group(group: Pid, grace: Duration) {
    let gone = || killpg(group, None).is_err() || !procfs::group_alive(group.as_raw());
    if gone() {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if gone() {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    // Wait (briefly) for the kernel to take them down.
    for _ in 0..100 {
        if gone() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The wrapper reports a program killed by signal N as status 128 + N (the
/// shell's convention); turn that back into a signal, so that a program
/// the OOM killer ended is not blamed on the step.
fn from_wrapper(code: i32) -> Exit {
    match code {
        129..=192 => Exit::Signal { signal: code - 128 },
        code => Exit::Code { code },
    }
}

impl From<Proc> for Handle {
    fn from(p: Proc) -> Handle {
        Handle::Process {
            pid: p.pid,
            start: p.start,
        }
    }
}

/// Watches one attempt until it ends.
struct Watch {
    tx: UnboundedSender<ExecEvent>,
    files: AttemptFiles,
    order: LaunchOrder,
    poll: Duration,
    grace: Duration,
    offset: u64,
    outputs: Map<String, Value>,
    store: Option<ArtifactStore>,
}

impl Watch {
    async fn run(mut self, h: Proc, child: Option<tokio::process::Child>) {
        let exit = match child {
            Some(mut child) => {
                let mut tick = tokio::time::interval(self.poll);
                tick.tick().await;
                loop {
                    tokio::select! {
                        s = child.wait() => break match s {
                            Ok(s) => match (s.code(), s.signal()) {
                                (Some(code), _) => from_wrapper(code),
                                (None, Some(signal)) => Exit::Signal { signal },
                                _ => Exit::Lost { message: "the process ended without a status".into() },
                            },
                            Err(e) => Exit::Lost { message: format!("cannot wait for the process: {e}") },
                        },
                        _ = tick.tick() => self.tail(false),
                    }
                }
            }
            None => {
                while h.pid > 0 && procfs::alive(h.pid, h.start) {
                    self.tail(false);
                    tokio::time::sleep(self.poll).await;
                }
                match self.files.read_exit() {
                    Some(code) => from_wrapper(code),
                    None => Exit::Lost {
                        message:
                            "the process ended while kaon was not watching and left no exit status"
                                .into(),
                    },
                }
            }
        };
        if h.pid > 0 {
            end_group(Pid::from_raw(h.pid), self.grace).await;
        }
        self.tail(true);
        let (outputs, mut problems) = if exit == (Exit::Code { code: 0 }) {
            self.collect()
        } else {
            (Map::new(), Vec::new())
        };
        let (artifacts, reads) = match &self.store {
            Some(store) if exit == (Exit::Code { code: 0 }) && problems.is_empty() => {
                let (w, r, p) =
                    crate::outputs::store_outputs(store, &self.order, &self.files.artifacts).await;
                problems.extend(p);
                (w, r)
            }
            _ => (Vec::new(), Vec::new()),
        };
        self.send(Event::StepExited {
            node: self.order.node,
            attempt: self.order.attempt,
            exit,
            outputs,
            problems,
            artifacts,
            reads,
        });
    }

    fn send(&self, event: Event) {
        // A closed channel means the driver is gone; nothing is left to tell.
        let _ = self.tx.send(ExecEvent {
            run: self.order.run.clone(),
            event,
        });
    }

    /// Reads new complete lines of stdout for markers (all of it at the end).
    fn tail(&mut self, last: bool) {
        let Ok(mut f) = std::fs::File::open(&self.files.stdout) else {
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut r = BufReader::with_capacity(64 * 1024, f);
        let mut line = Vec::new();
        let mut progress = None;
        loop {
            line.clear();
            let n = match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if line.last() != Some(&b'\n') && !last {
                break;
            }
            self.offset += n as u64;
            if !line.starts_with(b"::kaon::") || line.len() > 1 << 20 {
                continue;
            }
            match parse_marker(&String::from_utf8_lossy(&line)) {
                Some(Marker::Output { name, value }) => {
                    self.outputs.insert(name, value);
                }
                Some(p @ Marker::Progress { .. }) => progress = Some(p),
                None => {}
            }
        }
        if let Some(Marker::Progress { percent, message }) = progress {
            self.send(Event::StepProgressed {
                node: self.order.node,
                attempt: self.order.attempt,
                percent,
                message,
            });
        }
    }

    /// Outputs of a successful attempt: see [`collect_outputs`].
    fn collect(&mut self) -> (Map<String, Value>, Vec<String>) {
        let markers = std::mem::take(&mut self.outputs);
        collect_outputs(&self.order, &self.files, markers)
    }
}

/// Outputs of a successful attempt: reported outputs, then stdout markers,
/// then the outputs file (later ones win), and declared file/dir outputs
/// that exist.
pub(crate) fn collect_outputs(
    order: &LaunchOrder,
    files: &AttemptFiles,
    markers: Map<String, Value>,
) -> (Map<String, Value>, Vec<String>) {
    let mut outputs = crate::files::read_reported(&files.reported);
    outputs.extend(markers);
    let mut problems = Vec::new();
    match std::fs::read_to_string(&files.outputs) {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => outputs.extend(m),
            Ok(_) | Err(_) => problems.push(format!(
                "$KAON_OUTPUTS_FILE ({}) does not hold a JSON object",
                files.outputs.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("cannot read $KAON_OUTPUTS_FILE: {e}")),
    }
    for o in &order.outputs {
        let Some(path) = &o.path else { continue };
        let ok = match o.ty {
            Type::Dir => path.is_dir(),
            _ => path.is_file(),
        };
        if ok {
            outputs.insert(o.name.clone(), Value::String(path.display().to_string()));
        } else {
            problems.push(format!(
                "declared {} output `{}` was not written at {}",
                o.ty,
                o.name,
                path.display()
            ));
        }
    }
    (outputs, problems)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::process::CommandExt;

    /// kaon killed between forking a step's wrapper and its exec: the
    /// process exists but its environment does not say which attempt it
    /// is yet. A re-issued launch must wait for it, not start a second
    /// copy (the crash test saw steps run twice).
    #[test]
    fn a_reissued_launch_finds_a_process_caught_between_fork_and_exec() {
        let dir = tempfile::tempdir().unwrap();
        let files = AttemptFiles::new(dir.path(), "run", 1, "s", 1);
        crate::files::create_private_dir(files.stdout.parent().unwrap()).unwrap();
        let out = crate::files::create_private(&files.stdout).unwrap();
        out.lock().unwrap();
        let id = "run/1/1";
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("sleep 1; exec env KAON_ATTEMPT_ID={id} sleep 5"))
            .stdout(out)
            .process_group(0)
            .spawn()
            .unwrap();
        assert_eq!(procfs::find_attempt(id), None, "not findable yet");
        let found = earlier_process(id, &files).unwrap();
        assert_eq!(found.map(|h| h.pid), Some(child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing of the attempt lives: launching is safe.
        assert_eq!(earlier_process(id, &files).unwrap(), None);
        // It ended and said how: that is adopted, even while something it
        // left behind still holds the log.
        let out = crate::files::create_private(&files.stdout).unwrap();
        out.lock().unwrap();
        let mut leftover = std::process::Command::new("sleep")
            .arg("5")
            .stdout(out)
            .spawn()
            .unwrap();
        std::fs::write(&files.exit, "0\n").unwrap();
        assert_eq!(
            earlier_process(id, &files).unwrap(),
            Some(Proc { pid: 0, start: 0 })
        );
        leftover.kill().unwrap();
        leftover.wait().unwrap();
    }
}
