"""kaon's SQL runner: runs the SQL of a `kind = "spark"` step with `sql = ...`.

    spark-submit kaon_sql.py --query "SELECT ..." [--output PATH] [--show N]

Statements are separated by `;` (outside quotes). The result of the last
statement is written as Parquet to --output when given, and reported to kaon
as the step outputs `rows` (its row count) and, with --output, `path`.
"""

import argparse
import json
import sys


def statements(text):
    """Splits on `;` outside single or double quotes and `--` comments."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
        elif c in ("'", '"', "`"):
            quote = c
            cur.append(c)
        elif c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        elif c == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]


def report(spark, name, value):
    try:
        import kaon_spark

        kaon_spark.output(spark, name, value)
    except ImportError:
        print("::kaon::output %s=%s" % (name, json.dumps(value)), flush=True)


def main(argv):
    p = argparse.ArgumentParser(prog="kaon_sql.py")
    p.add_argument("--query", required=True)
    p.add_argument("--output")
    p.add_argument("--show", type=int, default=20)
    args = p.parse_args(argv)

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    stmts = statements(args.query)
    if not stmts:
        print("kaon_sql.py: the query is empty", file=sys.stderr)
        return 2
    df = None
    for s in stmts:
        df = spark.sql(s)
    if args.output:
        df.write.mode("overwrite").parquet(args.output)
        rows = spark.read.parquet(args.output).count()
        report(spark, "path", args.output)
    else:
        rows = df.count()
        if args.show > 0:
            df.show(args.show, truncate=False)
    report(spark, "rows", rows)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
