package dev.kaon.spark;

import java.util.function.Function;

/**
 * The API for Spark jobs run by kaon: hand an output of the step back to kaon.
 *
 * <pre>{@code
 * dev.kaon.spark.Kaon.output("record_count", n);
 * dev.kaon.spark.Kaon.output("regions", "[\"US\",\"CA\"]");
 * }</pre>
 *
 * <p>The output goes, in order of preference:
 *
 * <ol>
 *   <li>through the {@link KaonListener} of this JVM's SparkContext, as an {@code output} event
 *       queued after the events already reported (asynchronous; if kaon cannot be reached, the
 *       marker line below is printed instead when the event is given up);
 *   <li>if there is none but the active SparkContext's conf has {@code spark.kaon.url}, posted
 *       directly (synchronously, a few seconds at most);
 *   <li>otherwise, or if that post fails, printed as kaon's stdout marker {@code ::kaon::output
 *       <name>=<json>}, which kaon reads from the driver's output in client mode.
 * </ol>
 *
 * <p>None of these methods throws: reporting must never fail the job. A bad name or a value that
 * is not JSON is reported on stderr and ignored.
 */
public final class Kaon {
    private Kaon() {}

    private static final Object DIRECT_LOCK = new Object();
    private static Sink direct; // guarded by DIRECT_LOCK
    private static String directKey;

    /** Reports output {@code name} with {@code jsonValue}, JSON text (null means JSON null). */
    public static void output(String name, String jsonValue) {
        try {
            send(name, jsonValue == null ? "null" : jsonValue);
        } catch (Throwable t) {
            try {
                System.err.println("kaon: output " + name + " not reported: " + t);
            } catch (Throwable ignored) {
                // nothing more to do
            }
        }
    }

    public static void output(String name, long value) {
        output(name, Long.toString(value));
    }

    /** NaN and infinities are not JSON numbers: they are reported as null. */
    public static void output(String name, double value) {
        output(name, Double.isFinite(value) ? Double.toString(value) : "null");
    }

    /** Reports a string output (quoted as a JSON string; null means JSON null). */
    public static void outputString(String name, String value) {
        output(name, value == null ? "null" : Json.quote(value));
    }

    private static void send(String rawName, String json) {
        String name = rawName == null ? "" : rawName.trim();
        boolean usable = !name.isEmpty() && name.indexOf('=') < 0 && name.indexOf('\n') < 0
                && name.indexOf('\r') < 0;
        if (!usable) {
            System.err.println("kaon: output name "
                    + (rawName == null ? "null" : Json.quote(rawName))
                    + " is not usable (empty, or has '=' or a line break); ignored");
            return;
        }
        if (!Json.isValid(json)) {
            System.err.println("kaon: output " + name + " is not valid JSON; ignored: "
                    + abbreviate(json));
            return;
        }
        String fields = new Json().str("name", name).raw("value", json.trim()).fields();

        Sink sink = Sink.active();
        if (sink != null) {
            sink.enqueue("output", fields, markerLine(name, json));
            if (sink.ended()) {
                // The application has stopped; the JVM may exit soon, so do not leave it queued.
                sink.flush(3_000);
            }
            return;
        }
        Sink d = directSink();
        if (d != null && d.postNow("output", fields)) {
            return;
        }
        System.out.println(markerLine(name, json));
        System.out.flush();
    }

    /** A sink built from the active SparkContext's conf, or null (no context, or no URL). */
    private static Sink directSink() {
        Function<String, String> conf;
        try {
            Object sc = Reflect.activeSparkContext();
            if (sc == null) {
                return null;
            }
            Object sparkConf = Reflect.call(sc, "getConf");
            if (!(sparkConf instanceof org.apache.spark.SparkConf)) {
                return null;
            }
            org.apache.spark.SparkConf c = (org.apache.spark.SparkConf) sparkConf;
            conf = key -> c.get(key, null);
        } catch (Throwable t) {
            return null; // no Spark classes here, or no way to reach the context
        }
        String key = Sink.settingsKey(conf);
        if (key == null) {
            return null;
        }
        synchronized (DIRECT_LOCK) {
            if (direct == null || !key.equals(directKey)) {
                direct = Sink.fromConf(conf, null);
                directKey = key;
            }
            return direct;
        }
    }

    /**
     * kaon's stdout protocol, one line: line breaks in valid JSON can only be whitespace, so
     * they become spaces.
     */
    private static String markerLine(String name, String json) {
        return "::kaon::output " + name + "=" + json.trim().replace('\n', ' ').replace('\r', ' ');
    }

    private static String abbreviate(String s) {
        return s.length() <= 200 ? s : s.substring(0, 200) + "...";
    }
}
