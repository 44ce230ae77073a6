import java.io.File;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;

/**
 * The test job of kaon's Spark tests: `Job MODE [TASKS] [MILLIS] [FILE]`.
 * MODE is `ok`, `fail` (throws after its job), `slow` (TASKS tasks that
 * sleep MILLIS each), or `flaky` (fails while FILE does not exist, creating
 * it, so that the second attempt succeeds).
 */
public class Job {
    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "ok";
        int tasks = args.length > 1 ? Integer.parseInt(args[1]) : 6;
        long ms = args.length > 2 ? Long.parseLong(args[2]) : 0;
        JavaSparkContext sc = new JavaSparkContext(new SparkConf());
        List<Integer> xs = new ArrayList<>();
        for (int i = 0; i < tasks * 100; i++) xs.add(i);
        long n = sc.parallelize(xs, tasks)
                .map(x -> {
                    if (ms > 0 && x % 100 == 0) Thread.sleep(ms);
                    return x * 2;
                })
                .count();
        System.out.println("counted " + n);
        // Through kaon's listener jar, which kaon ships with the job; by
        // reflection so this job compiles without it.
        Class.forName("dev.kaon.spark.Kaon")
                .getMethod("output", String.class, long.class)
                .invoke(null, "record_count", n);
        if (mode.equals("fail")) throw new IllegalStateException("boom from the job");
        if (mode.equals("flaky")) {
            File f = new File(args[3]);
            if (f.createNewFile()) throw new IllegalStateException("flaky: first attempt fails");
        }
        sc.stop();
    }
}
