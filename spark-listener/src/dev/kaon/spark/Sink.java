package dev.kaon.spark;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.URI;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * Where events go: an in-memory queue drained, in order, by one daemon thread that POSTs each
 * event to {@code <url>/v1/spark/events}.
 *
 * <p>Nothing here may block or fail the caller (Spark's listener-bus thread or a user's task):
 * enqueueing takes a short lock and never waits for the network. The queue is bounded; when it
 * is full the oldest queued progress snapshot goes first, then the oldest event. A post is tried
 * up to four times with a short backoff, then dropped; after a drop, later events get one try
 * each until a post succeeds again, so an unreachable kaon costs little. Problems are reported
 * by one line on stderr per sink, never per event.
 *
 * <p>{@code seq} is assigned when an event is posted, so it follows the posting order with no
 * gaps except where an event was dropped. {@code time} is when the event was queued, so it does
 * not decrease along {@code seq} (barring wall-clock steps). Progress snapshots are queued as
 * placeholders whose counts are read when their turn comes: a snapshot is as fresh as possible
 * (its counts may include progress made after its {@code time}), the throttle keeps at most one
 * waiting in the queue, and a snapshot identical to the previous one is not sent.
 *
 * <p>The posting thread exits after 10 s without work and is started again by the next event,
 * so a long-lived JVM that creates many SparkContexts does not collect threads.
 *
 * <p>Posts go through {@link HttpURLConnection}, not {@code java.net.http.HttpClient}: building
 * an HttpClient initialises the default SSL context and a selector thread, which added about
 * 450 ms to every trivial application on a 2-core machine. HttpURLConnection is in java.base,
 * keeps connections alive between posts, and costs nothing until the first post.
 */
final class Sink {
    static final String PATH = "/v1/spark/events";
    private static final int CAPACITY = 10_000;
    private static final long THROTTLE_NANOS = 500_000_000L;
    private static final long IDLE_EXIT_MS = 10_000;
    private static final int TRIES = 4;
    private static final long FIRST_BACKOFF_MS = 200;

    /** The sink of the listener of the current SparkContext, for {@link Kaon}. */
    private static volatile Sink active;

    static Sink active() {
        return active;
    }

    static void setActive(Sink sink) {
        active = sink;
    }

    private final String base;
    private final URL endpoint;
    private final String token;
    private final String header; // "run":..,"node":..,"attempt":..
    private final Supplier<String> progress; // builds a snapshot's fields; null: no snapshots

    // Guarded by this.
    private final ArrayDeque<Entry> queue = new ArrayDeque<>();
    private int placeholders;
    private boolean posting; // the posting thread is alive
    private boolean inFlight; // it has taken an entry and not finished with it
    private boolean dirty; // progress changed since the last snapshot was queued
    private long lastSnapshotNanos = System.nanoTime() - THROTTLE_NANOS;
    private long seq;
    private boolean ended;
    private boolean warned;

    // Used by the posting thread only (or by the caller of postNow, for a direct sink).
    private volatile boolean degraded;
    private String lastSnapshot;

    private static final class Entry {
        final String type;
        final String fields; // null: a progress snapshot still to be built
        final long time;
        final String fallback; // printed on stdout if the event cannot be posted

        Entry(String type, String fields, long time, String fallback) {
            this.type = type;
            this.fields = fields;
            this.time = time;
            this.fallback = fallback;
        }
    }

    private Sink(String base, URL endpoint, String token, String run, Long node, Long attempt,
            Supplier<String> progress) {
        this.base = base;
        this.endpoint = endpoint;
        this.token = token;
        this.header = new Json().str("run", run).num("node", node).num("attempt", attempt).fields();
        this.progress = progress;
    }

    /**
     * A sink for the {@code spark.kaon.*} settings read through {@code conf}, or null when
     * {@code spark.kaon.url} is unset or unusable (then a line on stderr says why).
     */
    static Sink fromConf(Function<String, String> conf, Supplier<String> progress) {
        String url = baseUrl(conf);
        if (url == null) {
            return null;
        }
        URL endpoint;
        try {
            URI u = URI.create(url + PATH);
            String scheme = u.getScheme();
            if (!"http".equalsIgnoreCase(scheme) && !"https".equalsIgnoreCase(scheme)) {
                throw new IllegalArgumentException("not an http(s) URL");
            }
            endpoint = u.toURL();
        } catch (IllegalArgumentException | IOException e) {
            System.err.println("kaon: spark.kaon.url " + url + " is not usable (" + e.getMessage()
                    + "); no events will be sent");
            return null;
        }
        return new Sink(url, endpoint, trim(conf.apply("spark.kaon.token")),
                trim(conf.apply("spark.kaon.run")), integer(conf.apply("spark.kaon.node")),
                integer(conf.apply("spark.kaon.attempt")), progress);
    }

    /** The settings of a sink as one string (Kaon caches direct sinks by it); null without a URL. */
    static String settingsKey(Function<String, String> conf) {
        String url = baseUrl(conf);
        if (url == null) {
            return null;
        }
        return url + "\n" + conf.apply("spark.kaon.token") + "\n" + conf.apply("spark.kaon.run")
                + "\n" + conf.apply("spark.kaon.node") + "\n" + conf.apply("spark.kaon.attempt");
    }

    private static String baseUrl(Function<String, String> conf) {
        String url = trim(conf.apply("spark.kaon.url"));
        while (url != null && url.endsWith("/")) {
            url = url.substring(0, url.length() - 1);
        }
        return url;
    }

    private static String trim(String s) {
        if (s == null) {
            return null;
        }
        s = s.trim();
        return s.isEmpty() ? null : s;
    }

    private static Long integer(String s) {
        s = trim(s);
        if (s == null) {
            return null;
        }
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            return null;
        }
    }

    /** Queues an event of {@code type} with {@code fields} (see {@link Json#fields()}). */
    void enqueue(String type, String fields) {
        enqueue(type, fields, null);
    }

    /**
     * Queues an event; if it cannot be posted (or is dropped from a full queue), the line
     * {@code fallback} is printed on stdout instead (kaon's marker protocol, for outputs).
     */
    void enqueue(String type, String fields, String fallback) {
        synchronized (this) {
            add(new Entry(type, fields, System.currentTimeMillis(), fallback));
        }
    }

    /** Queues a progress snapshot now, bypassing the throttle (after a stage completes). */
    void snapshotNow() {
        if (progress == null) {
            return;
        }
        synchronized (this) {
            dirty = false;
            lastSnapshotNanos = System.nanoTime();
            add(new Entry("progress", null, System.currentTimeMillis(), null));
        }
    }

    /** Progress changed: a snapshot follows within the throttle interval. */
    void progressChanged() {
        if (progress == null) {
            return;
        }
        synchronized (this) {
            if (!dirty) {
                dirty = true;
                wake();
            }
        }
    }

    // Holding this.
    private void add(Entry e) {
        if (queue.size() >= CAPACITY) {
            dropOne();
        }
        queue.addLast(e);
        if (e.fields == null) {
            placeholders++;
        }
        wake();
    }

    // Holding this.
    private void dropOne() {
        Entry victim = null;
        if (placeholders > 0) {
            for (Iterator<Entry> it = queue.iterator(); it.hasNext(); ) {
                Entry e = it.next();
                if (e.fields == null) {
                    it.remove();
                    victim = e;
                    break;
                }
            }
        }
        if (victim == null) {
            victim = queue.pollFirst();
        }
        if (victim != null && victim.fields == null) {
            placeholders--;
        }
        if (victim != null && victim.fallback != null) {
            System.out.println(victim.fallback);
            System.out.flush();
        }
        warnOnce("kaon: event queue full (" + CAPACITY + "), dropping the oldest events for "
                + base);
    }

    // Holding this: makes sure the posting thread runs and sees the change.
    private void wake() {
        if (!posting) {
            Thread t = new Thread(this::drain, "kaon-event-poster");
            t.setDaemon(true);
            try {
                t.start();
                posting = true;
            } catch (Throwable e) {
                warnOnce("kaon: cannot start the event thread: " + e);
            }
        }
        notifyAll();
    }

    /**
     * Waits up to {@code timeoutMs} until every queued event has been posted or dropped. Marks
     * the sink as ended (later outputs from {@link Kaon} then flush too, since the JVM may be
     * about to exit). Never call on the posting thread.
     */
    void flush(long timeoutMs) {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        synchronized (this) {
            ended = true;
            try {
                while ((!queue.isEmpty() || inFlight) && posting) {
                    long left = (deadline - System.nanoTime()) / 1_000_000L;
                    if (left <= 0) {
                        giveUp();
                        return;
                    }
                    wait(left);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    // Holding this: kaon is too slow to take what is left before the JVM may exit. Outputs
    // still queued are printed as markers now (and taken out of the queue, so they are not
    // reported twice); the other events stay queued in case the JVM lives on.
    private void giveUp() {
        int left = queue.size();
        for (Iterator<Entry> it = queue.iterator(); it.hasNext(); ) {
            Entry e = it.next();
            if (e.fallback != null) {
                it.remove();
                System.out.println(e.fallback);
            }
        }
        System.out.flush();
        warnOnce("kaon: " + left + " events not yet taken by " + base + PATH
                + " when the application ended; they may be lost");
    }

    synchronized boolean ended() {
        return ended;
    }

    /** The posting thread. */
    private void drain() {
        try {
            while (true) {
                Entry e;
                synchronized (this) {
                    e = next();
                    if (e == null) {
                        return;
                    }
                    inFlight = true;
                }
                try {
                    post(e);
                } finally {
                    synchronized (this) {
                        inFlight = false;
                        notifyAll();
                    }
                }
            }
        } catch (Throwable t) {
            warnOnce("kaon: event thread failed: " + t);
        } finally {
            synchronized (this) {
                posting = false;
                inFlight = false;
                notifyAll();
            }
        }
    }

    // Holding this. The next entry to post, waiting as needed; null when the thread should exit.
    private Entry next() throws InterruptedException {
        long idleSince = System.nanoTime();
        while (true) {
            long now = System.nanoTime();
            if (dirty && now - lastSnapshotNanos >= THROTTLE_NANOS) {
                dirty = false;
                lastSnapshotNanos = now;
                if (placeholders == 0) {
                    queue.addLast(new Entry("progress", null, System.currentTimeMillis(), null));
                    placeholders++;
                }
            }
            Entry e = queue.pollFirst();
            if (e != null) {
                if (e.fields == null) {
                    placeholders--;
                }
                return e;
            }
            long waitMs;
            if (dirty) {
                waitMs = Math.max(1, (THROTTLE_NANOS - (now - lastSnapshotNanos)) / 1_000_000L);
            } else {
                long idle = (now - idleSince) / 1_000_000L;
                if (idle >= IDLE_EXIT_MS) {
                    posting = false;
                    return null;
                }
                waitMs = IDLE_EXIT_MS - idle;
            }
            wait(waitMs);
        }
    }

    // On the posting thread.
    private void post(Entry e) {
        String fields = e.fields;
        if (fields == null) {
            try {
                fields = progress.get();
            } catch (Throwable t) {
                return;
            }
            if (fields == null || fields.equals(lastSnapshot)) {
                return; // nothing changed since the last snapshot
            }
            lastSnapshot = fields;
        }
        long n;
        synchronized (this) {
            n = ++seq;
        }
        if (!send(body(n, e.time, e.type, fields)) && e.fallback != null) {
            System.out.println(e.fallback);
            System.out.flush();
        }
    }

    /**
     * Posts one event synchronously on the caller's thread (for {@link Kaon} when no listener is
     * active); true when kaon accepted it.
     */
    boolean postNow(String type, String fields) {
        long n;
        synchronized (this) {
            n = ++seq;
        }
        return send(body(n, System.currentTimeMillis(), type, fields));
    }

    private String body(long n, long time, String type, String fields) {
        StringBuilder b = new StringBuilder(header.length() + fields.length() + 64);
        b.append('{').append(header);
        b.append(",\"seq\":").append(n).append(",\"time\":").append(time).append(",\"type\":");
        Json.quote(b, type);
        if (!fields.isEmpty()) {
            b.append(',').append(fields);
        }
        return b.append('}').toString();
    }

    private boolean send(String body) {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        String problem = null;
        int tries = degraded ? 1 : TRIES;
        for (int i = 0; i < tries; i++) {
            if (i > 0) {
                try {
                    Thread.sleep(FIRST_BACKOFF_MS << (i - 1));
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            try {
                int status = postOnce(bytes);
                if (status >= 200 && status < 300) {
                    degraded = false;
                    return true;
                }
                problem = "HTTP " + status;
                if (status >= 400 && status < 500 && status != 408 && status != 429) {
                    break; // refused (bad token, bad request): trying again will not help
                }
            } catch (Throwable t) {
                problem = t.getClass().getSimpleName()
                        + (t.getMessage() == null ? "" : ": " + t.getMessage());
            }
        }
        degraded = true;
        synchronized (this) {
            warnOnce("kaon: could not send Spark events to " + base + PATH + " (" + problem
                    + "); dropping events it does not take");
        }
        return false;
    }

    /** One POST of {@code body}; its HTTP status. The response is read to the end so the
     * connection goes back to the JDK's keep-alive cache. */
    private int postOnce(byte[] body) throws IOException {
        // kaon's endpoint is reached directly: a proxy configured for the job's own traffic
        // (http.proxyHost) must not see the token.
        HttpURLConnection c = (HttpURLConnection) endpoint.openConnection(Proxy.NO_PROXY);
        try {
            c.setConnectTimeout(2_000);
            c.setReadTimeout(5_000);
            c.setUseCaches(false);
            c.setInstanceFollowRedirects(false);
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            c.setFixedLengthStreamingMode(body.length);
            c.setRequestProperty("Content-Type", "application/json");
            if (token != null) {
                c.setRequestProperty("Authorization", "Bearer " + token);
            }
            try (OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            if (in != null) {
                try (in) {
                    in.readAllBytes();
                }
            }
            return status;
        } catch (IOException e) {
            c.disconnect(); // a broken connection must not be reused
            throw e;
        }
    }

    // Holding this.
    private void warnOnce(String line) {
        if (!warned) {
            warned = true;
            System.err.println(line);
        }
    }
}
