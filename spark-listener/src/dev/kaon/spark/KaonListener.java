package dev.kaon.spark;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.SparkConf;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerApplicationEnd;
import org.apache.spark.scheduler.SparkListenerApplicationStart;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.StageInfo;
import org.apache.spark.scheduler.TaskInfo;

/**
 * Reports a Spark application's jobs, stages and progress to kaon over HTTP.
 *
 * <p>Load it with {@code spark.extraListeners=dev.kaon.spark.KaonListener} and the jar in
 * {@code --jars}; configure it with {@code spark.kaon.url}, {@code spark.kaon.token}, {@code
 * spark.kaon.run}, {@code spark.kaon.node} and {@code spark.kaon.attempt}. Without {@code
 * spark.kaon.url} it does nothing. See README.md for the event protocol.
 *
 * <p>Two rules hold throughout:
 *
 * <ul>
 *   <li>Every callback catches Throwable: an exception escaping a listener callback makes Spark
 *       stop the SparkContext and fail the user's job. Errors are reported by one line on stderr.
 *   <li>One jar serves Spark 3.5 (Scala 2.12) and 4.x (Scala 2.13): methods whose signatures
 *       mention Scala types are only called through {@link Reflect}.
 * </ul>
 *
 * <p>Callbacks run on Spark's listener-bus thread; they update counters and queue events on the
 * {@link Sink}, whose own thread does the network I/O, so the bus is never blocked (except for
 * a bounded flush at application end, so the last events leave before the JVM exits).
 */
public class KaonListener extends SparkListener {
    /** How long application end waits for queued events to be posted. */
    private static final long FLUSH_MS = 3_000;
    /** Longest failure message sent; Spark's job failure messages carry whole stack traces. */
    private static final int MAX_MESSAGE = 16_384;

    private final Sink sink; // null: disabled

    // Progress bookkeeping, guarded by this. Written on the listener-bus thread, read by the
    // sink's thread when it builds a snapshot.
    private final Map<Integer, StageProgress> stages = new HashMap<>(); // stages of the jobs seen
    private final Map<Integer, int[]> activeJobs = new HashMap<>(); // job id -> its stage ids
    private String appId;

    // Read lazily on the sink's thread (see Reflect.activeSparkContext for why not on the bus).
    private volatile String uiUrl;
    private volatile boolean uiUrlKnown;

    private boolean complained; // guarded by this: one line on stderr for listener errors

    private static final class StageProgress {
        int tasks; // of the first submitted attempt
        int done; // successful tasks, capped at tasks
        boolean submitted;
        boolean finished; // completed (or failed), or skipped by a job that ended
    }

    /** The constructor Spark calls for classes named in {@code spark.extraListeners}. */
    public KaonListener(SparkConf conf) {
        Sink s = null;
        try {
            s = Sink.fromConf(key -> conf.get(key, null), this::progressFields);
        } catch (Throwable t) {
            System.err.println("kaon: listener disabled: " + t);
        }
        sink = s;
        // Kaon.output sends through the listener of the current context; a listener without a
        // URL clears a stale one left by an earlier context in this JVM.
        Sink.setActive(s);
    }

    @Override
    public void onApplicationStart(SparkListenerApplicationStart event) {
        if (sink == null) {
            return;
        }
        try {
            String id = null;
            try {
                id = (String) Reflect.option(Reflect.call(event, "appId"));
            } catch (Throwable t) {
                complain("onApplicationStart (appId)", t);
            }
            synchronized (this) {
                appId = id;
            }
            sink.enqueue("application_start", new Json()
                    .str("app_id", id)
                    .str("app_name", event.appName())
                    .str("spark_version", Reflect.sparkVersion())
                    .str("user", event.sparkUser())
                    .fields());
        } catch (Throwable t) {
            complain("onApplicationStart", t);
        }
    }

    @Override
    public void onJobStart(SparkListenerJobStart event) {
        if (sink == null) {
            return;
        }
        try {
            int jobId = event.jobId();
            Long stageCount = null;
            Long taskCount = null;
            int[] ids = new int[0];
            try {
                // stageInfos() returns a Seq of a different class per Scala version.
                List<Object> infos = Reflect.elements(Reflect.call(event, "stageInfos"));
                ids = new int[infos.size()];
                long tasks = 0;
                for (int i = 0; i < ids.length; i++) {
                    StageInfo info = (StageInfo) infos.get(i);
                    ids[i] = info.stageId();
                    tasks += info.numTasks();
                }
                stageCount = (long) ids.length;
                taskCount = tasks;
            } catch (Throwable t) {
                complain("onJobStart (stageInfos)", t);
            }
            synchronized (this) {
                activeJobs.put(jobId, ids);
                for (int id : ids) {
                    stages.computeIfAbsent(id, k -> new StageProgress());
                }
            }
            sink.enqueue("job_start", new Json()
                    .num("job_id", jobId)
                    .num("stages", stageCount)
                    .num("tasks", taskCount)
                    .fields());
            sink.progressChanged();
        } catch (Throwable t) {
            complain("onJobStart", t);
        }
    }

    @Override
    public void onJobEnd(SparkListenerJobEnd event) {
        if (sink == null) {
            return;
        }
        try {
            int jobId = event.jobId();
            boolean succeeded = true;
            String message = null;
            Object result = event.jobResult();
            // JobSucceeded is a Scala object (class JobSucceeded$), JobFailed a case class with
            // exception(); go by name so that neither is linked into this class.
            String kind = result == null ? "" : result.getClass().getName();
            if (!kind.startsWith("org.apache.spark.scheduler.JobSucceeded")) {
                succeeded = false;
                message = kind.isEmpty() ? null : result.toString();
                try {
                    Object e = Reflect.call(result, "exception");
                    if (e instanceof Throwable) {
                        message = messageOf((Throwable) e);
                    }
                } catch (Throwable t) {
                    // keep toString()
                }
            }
            synchronized (this) {
                int[] ids = activeJobs.remove(jobId);
                if (ids != null) {
                    for (int id : ids) {
                        StageProgress s = stages.get(id);
                        // A stage of the job that never ran was skipped (its output already
                        // existed) or abandoned with the job: either way it is no longer pending.
                        if (s != null && !s.submitted) {
                            s.finished = true;
                        }
                    }
                }
            }
            sink.enqueue("job_end", new Json()
                    .num("job_id", jobId)
                    .bool("succeeded", succeeded)
                    .str("message", truncate(message))
                    .fields());
            sink.progressChanged();
        } catch (Throwable t) {
            complain("onJobEnd", t);
        }
    }

    @Override
    public void onStageSubmitted(SparkListenerStageSubmitted event) {
        if (sink == null) {
            return;
        }
        try {
            StageInfo info = event.stageInfo();
            synchronized (this) {
                StageProgress s = stages.computeIfAbsent(info.stageId(), k -> new StageProgress());
                if (!s.submitted) {
                    s.submitted = true;
                    s.tasks = info.numTasks();
                }
                s.finished = false; // a retried attempt runs again
            }
            sink.enqueue("stage_submitted", new Json()
                    .num("stage_id", info.stageId())
                    .num("stage_attempt", info.attemptNumber())
                    .str("name", info.name())
                    .num("tasks", info.numTasks())
                    .fields());
            sink.progressChanged();
        } catch (Throwable t) {
            complain("onStageSubmitted", t);
        }
    }

    @Override
    public void onStageCompleted(SparkListenerStageCompleted event) {
        if (sink == null) {
            return;
        }
        try {
            StageInfo info = event.stageInfo();
            String failure = null;
            try {
                Object reason = Reflect.option(Reflect.call(info, "failureReason"));
                failure = reason == null ? null : reason.toString();
            } catch (Throwable t) {
                complain("onStageCompleted (failureReason)", t);
            }
            synchronized (this) {
                StageProgress s = stages.computeIfAbsent(info.stageId(), k -> new StageProgress());
                s.finished = true;
                if (failure == null) {
                    s.done = s.tasks;
                }
            }
            sink.enqueue("stage_completed", new Json()
                    .num("stage_id", info.stageId())
                    .num("stage_attempt", info.attemptNumber())
                    .str("name", info.name())
                    .num("tasks", info.numTasks())
                    .bool("failed", failure != null)
                    .str("message", truncate(failure))
                    .fields());
            sink.snapshotNow();
        } catch (Throwable t) {
            complain("onStageCompleted", t);
        }
    }

    @Override
    public void onTaskEnd(SparkListenerTaskEnd event) {
        if (sink == null) {
            return;
        }
        try {
            TaskInfo info = event.taskInfo();
            if (info == null || !info.successful()) {
                return;
            }
            boolean changed = false;
            synchronized (this) {
                StageProgress s = stages.get(event.stageId());
                // Speculative copies and re-run attempts can succeed more than once per task.
                if (s != null && s.done < s.tasks) {
                    s.done++;
                    changed = true;
                }
            }
            if (changed) {
                sink.progressChanged();
            }
        } catch (Throwable t) {
            complain("onTaskEnd", t);
        }
    }

    @Override
    public void onApplicationEnd(SparkListenerApplicationEnd event) {
        if (sink == null) {
            return;
        }
        try {
            String id;
            synchronized (this) {
                id = appId;
            }
            sink.snapshotNow(); // the final state (not sent if nothing changed)
            sink.enqueue("application_end", new Json().str("app_id", id).fields());
            // The driver JVM may exit right after this callback returns: let the queue drain.
            sink.flush(FLUSH_MS);
        } catch (Throwable t) {
            complain("onApplicationEnd", t);
        }
    }

    /** The fields of a progress snapshot; called on the sink's thread. */
    private String progressFields() {
        lookUpUiUrl();
        long jobs, stagesDone = 0, stagesTotal, tasksDone = 0, tasksTotal = 0;
        String id;
        synchronized (this) {
            jobs = activeJobs.size();
            stagesTotal = stages.size();
            for (StageProgress s : stages.values()) {
                if (s.finished) {
                    stagesDone++;
                }
                if (s.submitted) {
                    tasksTotal += s.tasks;
                    tasksDone += s.done;
                }
            }
            id = appId;
        }
        return new Json()
                .num("jobs_active", jobs)
                .num("stages_done", stagesDone)
                .num("stages_total", stagesTotal)
                .num("tasks_done", tasksDone)
                .num("tasks_total", tasksTotal)
                .str("ui_url", uiUrl)
                .str("app_id", id)
                .fields();
    }

    /** Reads the UI's URL once the SparkContext is active (null when the UI is disabled). */
    private void lookUpUiUrl() {
        if (uiUrlKnown) {
            return;
        }
        try {
            Object sc = Reflect.activeSparkContext();
            if (sc == null) {
                return; // not constructed yet (or already stopped): try again next time
            }
            uiUrl = (String) Reflect.option(Reflect.call(sc, "uiWebUrl"));
            uiUrlKnown = true;
            synchronized (this) {
                if (appId == null) {
                    appId = (String) Reflect.call(sc, "applicationId");
                }
            }
        } catch (Throwable t) {
            uiUrlKnown = true; // do not retry a lookup that cannot work on this Spark
            complain("ui url lookup", t);
        }
    }

    static String messageOf(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isEmpty() ? e.toString() : m;
    }

    private static String truncate(String s) {
        if (s == null || s.length() <= MAX_MESSAGE) {
            return s;
        }
        return s.substring(0, MAX_MESSAGE) + "... (truncated)";
    }

    /** One line on stderr for the first listener error; never throws. */
    private void complain(String where, Throwable t) {
        try {
            synchronized (this) {
                if (complained) {
                    return;
                }
                complained = true;
            }
            System.err.println("kaon: listener error in " + where + " (reported once, ignored): "
                    + Reflect.cause(t));
        } catch (Throwable ignored) {
            // nothing more to do
        }
    }
}
