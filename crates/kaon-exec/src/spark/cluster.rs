//! Cluster mode on a standalone master: submitting over REST with the
//! intent written first, watching the driver to the master's word, and
//! killing it, as the executor's events and handles.

use std::sync::Arc;

use kaon_engine::{Event, Exit, LaunchOrder};
use kaon_spark::SparkError;
use kaon_spark::discover::{known_drivers, new_tag, with_tag};
use kaon_spark::driver::{self, Ending, Resolution};
use kaon_spark::logs::DriverLogs;
use kaon_spark::record::{
    DriverRecord, PENDING, PendingSubmission, SparkFile, read_spark_file, write_record,
};
use kaon_spark::rest::RestClient;
use kaon_spark::submit::Submission;
use kaon_spark::target::Target;
use serde_json::{Map, Value};

use super::{Inner, Key, SparkExecutor, attempt_label, key, warn};
use crate::files::{AttemptFiles, Marker, parse_marker};
use crate::local::collect_outputs;
use crate::{Handle, LaunchError};

impl SparkExecutor {
    /// Submits the driver over REST: intent first, then the request, then
    /// the master's answer, each on disk before the next step.
    pub(super) fn start_rest(
        &self,
        order: &LaunchOrder,
        sub: &Submission<'_>,
        target: &Target,
        files: AttemptFiles,
    ) -> Result<Handle, LaunchError> {
        if let Some(dir) = files.spark.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LaunchError {
                message: format!("cannot create {}: {e}", dir.display()),
                platform: true,
            })?;
        }
        let mut env: Vec<(String, String)> = order.env.clone();
        env.push(("KAON_ATTEMPT_ID".into(), attempt_label(order)));
        let body = sub.rest_body(&env);
        // kaon died while submitting (a recorded driver was adopted in
        // `start_spark`): the master may or may not have the driver.
        if order.adopt
            && let Some(SparkFile::Pending(p)) = read_spark_file(&files.spark)
        {
            return Ok(self.resolve_later(order, p, body, files));
        }
        for stale in [&files.stdout, &files.stderr, &files.reported, &files.spark] {
            let _ = std::fs::remove_file(stale);
        }
        let Some(rest_url) = target.rest.clone() else {
            return Err(super::user(SparkError::NoRestServer {
                master: target.master.clone(),
            }));
        };
        let ui = target.ui.clone();
        let listed = ui.clone();
        let known = block_on(async move { known_drivers(listed.as_deref()).await }).flatten();
        let p = PendingSubmission {
            spark: PENDING.into(),
            tag: new_tag(&attempt_label(order)),
            rest: rest_url.clone(),
            ui,
            version: sub.dist.version.to_string(),
            main_class: body["mainClass"].as_str().unwrap_or("").to_string(),
            known,
            run: order.run.clone(),
            node: order.node.0,
            attempt: order.attempt,
        };
        // Without the intent on disk, a crash during the request could
        // lead to a second driver: no record, no submission.
        write_record(&files.spark, &p).map_err(|e| LaunchError {
            message: format!(
                "cannot record the submission in {}: {e}",
                files.spark.display()
            ),
            platform: true,
        })?;
        kaon_artifacts::failpoint("spark-before-create");
        let rest = RestClient::new(&rest_url);
        let tagged = with_tag(body, &p.tag);
        let sent = tagged.clone();
        let created =
            block_on(async move { rest.create(&sent).await }).ok_or_else(|| LaunchError {
                platform: true,
                message: "the submission thread failed".into(),
            })?;
        let id = match created {
            Ok(id) => id,
            // Sent, unanswered: as after a crash, the master is asked.
            Err(e @ SparkError::NoAnswer { .. }) => {
                warn(&format!("{}: {e}", attempt_label(order)));
                return Ok(self.resolve_later(order, p, tagged, files));
            }
            Err(e) => {
                return Err(LaunchError {
                    platform: e.is_transient(),
                    message: e.to_string(),
                });
            }
        };
        kaon_artifacts::failpoint("spark-after-create");
        let h = p.driver(id);
        // Written before the handle goes back, so that even a kaon that
        // dies before storing the handle finds this driver again.
        record_driver(&files, &h);
        let _ = crate::files::create_private(&files.stdout);
        let _ = crate::files::create_private(&files.stderr);
        let v = Handle::from(h.clone());
        self.watch_rest(order, h);
        Ok(v)
    }

    pub(super) fn watch_rest(&self, order: &LaunchOrder, h: DriverRecord) {
        let files = self.local.files(order);
        self.inner.register(order, files.clone(), None, false);
        self.inner.set_driver(&key(order), &h);
        let inner = self.inner.clone();
        let order = order.clone();
        tokio::spawn(async move { inner.watch_rest(order, h, files).await });
    }

    /// Finds out in the background whether the master has the driver of
    /// `p` (see [`driver::resolve`]): a driver waiting for a worker has no
    /// launch command yet, so this can take a while. Returns the handle.
    fn resolve_later(
        &self,
        order: &LaunchOrder,
        p: PendingSubmission,
        body: Value,
        files: AttemptFiles,
    ) -> Handle {
        let v = Handle::from(p.clone());
        self.inner.register(order, files.clone(), None, false);
        let inner = self.inner.clone();
        let order = order.clone();
        tokio::spawn(async move { inner.resolve(order, p, body, files).await });
        v
    }

    /// Kills the driver of a REST handle; a kill that comes while kaon
    /// still looks for its driver is carried out once it is found.
    pub(super) fn kill_rest(&self, handle: &Handle) {
        if let Some(h) = handle.driver_record() {
            kill(h);
            return;
        }
        let Some(p) = handle.pending_submission() else {
            return;
        };
        let k = (p.run, p.node, p.attempt);
        let mut live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = live.get_mut(&k) {
            match &l.driver {
                Some(h) => kill(h.clone()),
                // Sent by `set_driver` once the driver is known.
                None => l.kill_requested = true,
            }
        }
    }
}

/// Asks the master, in the background, to kill a driver until it ends.
fn kill(h: DriverRecord) {
    tokio::spawn(async move { driver::kill_until_ended(&h).await });
}

/// Writes the driver down in the attempt's files.
fn record_driver(files: &AttemptFiles, h: &DriverRecord) {
    if let Err(e) = write_record(&files.spark, h) {
        warn(&format!(
            "cannot record the submission {}: {e}",
            h.submission
        ));
    }
}

/// Runs a future to completion from synchronous code inside or outside a
/// runtime, on a thread of its own (submissions are rare and short).
fn block_on<F: Future + Send>(f: F) -> Option<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
                .map(|rt| rt.block_on(f))
        })
        .join()
        .ok()
        .flatten()
    })
}

fn markers_of(stdout: &std::path::Path) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(text) = std::fs::read_to_string(stdout) {
        for line in text.lines().filter(|l| l.starts_with("::kaon::")) {
            if let Some(Marker::Output { name, value }) = parse_marker(line) {
                out.insert(name, value);
            }
        }
    }
    out
}

impl Inner {
    /// Records the attempt's driver; a kill that came before it was known
    /// is sent now.
    fn set_driver(&self, k: &Key, h: &DriverRecord) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(l) = live.get_mut(k) else { return };
        l.driver = Some(h.clone());
        if l.kill_requested {
            kill(h.clone());
        }
    }

    /// After a crash between writing a [`PendingSubmission`] and the
    /// master's answer: watches the driver the submission made, or the one
    /// submitted now (see [`driver::resolve`]), or ends the attempt.
    async fn resolve(
        self: Arc<Self>,
        order: LaunchOrder,
        p: PendingSubmission,
        body: Value,
        files: AttemptFiles,
    ) {
        let k = key(&order);
        let kill_requested = || {
            self.live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&k)
                .is_some_and(|l| l.kill_requested)
        };
        let label = attempt_label(&order);
        let waiting = |why: &str| {
            warn(&format!("{label}: {why}"));
            self.send(
                &order.run,
                Event::StepProgressed {
                    node: order.node,
                    attempt: order.attempt,
                    percent: None,
                    message: Some(why.to_string()),
                },
            );
        };
        let exit = match driver::resolve(&p, body, kill_requested, waiting).await {
            Resolution::Found(h) => return self.adopted(order, h, files).await,
            Resolution::Resubmitted(h) => {
                kaon_artifacts::failpoint("spark-after-create");
                let _ = crate::files::create_private(&files.stdout);
                let _ = crate::files::create_private(&files.stderr);
                return self.adopted(order, h, files).await;
            }
            Resolution::Killed { undecided } => {
                if let Some(why) = undecided {
                    warn(&format!(
                        "{label}: killed before kaon could tell whether the master has this step's driver ({why}); kill it by hand if it is"
                    ));
                }
                Exit::Signal { signal: 15 }
            }
            Resolution::Failed(e) => Exit::Lost {
                message: format!("the submission could not be made again: {e}"),
            },
        };
        self.forget(&k);
        self.send(
            &order.run,
            Event::StepExited {
                node: order.node,
                attempt: order.attempt,
                exit,
                outputs: Map::new(),
                problems: Vec::new(),
                artifacts: Vec::new(),
                reads: Vec::new(),
            },
        );
    }

    /// Records and watches the driver a pending submission turned out to have.
    async fn adopted(self: Arc<Self>, order: LaunchOrder, h: DriverRecord, files: AttemptFiles) {
        record_driver(&files, &h);
        self.set_driver(&key(&order), &h);
        self.watch_rest(order, h, files).await;
    }

    /// Watches a driver to the master's word and reports the attempt's
    /// end, with its outputs when it succeeded.
    async fn watch_rest(self: Arc<Self>, order: LaunchOrder, h: DriverRecord, files: AttemptFiles) {
        let mut logs = DriverLogs::new(files.stdout.clone(), files.stderr.clone());
        let status = driver::watch(&h, self.poll, &mut logs, warn).await;
        let live = self.forget(&key(&order));
        let last_error = live.and_then(|l| l.progress.last_error);
        let exit = match Ending::of(
            &h,
            &status,
            &files.stderr,
            &files.stdout,
            last_error.as_deref(),
        ) {
            Ending::Succeeded => Exit::Code { code: 0 },
            Ending::Killed => Exit::Signal { signal: 15 },
            Ending::Failed { message } => Exit::Failed {
                code: None,
                message,
            },
            Ending::Forgotten { message } => Exit::Lost { message },
        };
        let (mut outputs, mut problems) = (Map::new(), Vec::new());
        let (mut artifacts, mut reads) = (Vec::new(), Vec::new());
        if exit == (Exit::Code { code: 0 }) {
            let markers = markers_of(&files.stdout);
            (outputs, problems) = collect_outputs(&order, &files, markers);
            if let Some(store) = &self.store
                && problems.is_empty()
            {
                let (w, r, p) =
                    crate::outputs::store_outputs(store, &order, &files.artifacts).await;
                problems.extend(p);
                (artifacts, reads) = (w, r);
            }
        }
        self.send(
            &order.run,
            Event::StepExited {
                node: order.node,
                attempt: order.attempt,
                exit,
                outputs,
                problems,
                artifacts,
                reads,
            },
        );
    }
}
