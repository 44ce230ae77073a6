"""wrangleData: clean the cohort and split it by region (a PySpark job).

    kaon runs it as a `kind = "spark"` step, i.e.
    spark-submit steps/wrangle.py --users work/users

Reads the cohort getUsers wrote as Parquet (--users), drops rows with
missing, non-finite or out-of-range values, bad labels, unusable region
names and user ids that occur more than once, then writes
work/prepared/all.csv and one work/prepared/<region>.csv per region (dir
output ``prepared``, rebuilt from scratch each time). Plain CSV files,
because the regional training and the validation downstream are stdlib
Python. Hands back ``regions``: the sorted list of region names present.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, progress, run  # noqa: E402

OUT_DIR = os.path.join("work", "prepared")
COLUMNS = ["user_id", "region", "age", "tenure_months", "hours_watched", "sessions_per_week", "label"]
INT_COLUMNS = {"age", "tenure_months"}
# Numeric columns and their allowed closed ranges.
RANGES = {
    "age": (13, 120),
    "tenure_months": (0, 1200),
    "hours_watched": (0, 744),  # hours in a 31-day month
    "sessions_per_week": (0, 500),
}
REGION_RE = r"^[a-z][a-z0-9-]{0,63}$"
RESERVED = ["all"]  # all.csv holds every region


def write_one_csv(df, dest: str) -> None:
    """Write ``df`` as the single CSV file ``dest``.

    Spark writes a folder of part files; coalesce(1) makes it one part,
    which is then moved into place. Only right for small results on a local
    file system (the prepared data of this example), not for big tables.
    """
    parts = dest + ".parts"
    df.coalesce(1).write.mode("overwrite").option("header", True).csv(parts)
    found = glob.glob(os.path.join(parts, "part-*"))
    if len(found) != 1:
        raise StepError(f"{parts}: expected one part file, Spark wrote {len(found)}")
    os.replace(found[0], dest)
    shutil.rmtree(parts)


def main() -> None:
    p = argparse.ArgumentParser(description="Clean the cohort and split it by region into work/prepared/.")
    p.add_argument("--users", required=True, help="the cohort, a Parquet folder (from getUsers)")
    a = p.parse_args()
    if not os.path.isdir(a.users):
        raise StepError(f"--users: no such folder: {a.users}")

    from pyspark.sql import SparkSession, Window, functions as F

    import kaon_spark  # shipped by kaon with every Python Spark application

    spark = SparkSession.builder.appName("wrangleData").getOrCreate()
    try:
        users = spark.read.parquet(a.users)
        missing = [c for c in COLUMNS if c not in users.columns]
        if missing:
            raise StepError(f"{a.users}: missing column(s): {', '.join(missing)}")

        # `why` is the first rule a row breaks, null for the rows that are kept.
        region = F.lower(F.trim(F.col("region")))
        rules = [
            (F.col("user_id").isNull() | (F.trim("user_id") == ""), "no user id"),
            (F.count("*").over(Window.partitionBy("user_id")) > 1, "duplicate user id"),
            (region.isNull() | ~region.rlike(REGION_RE) | region.isin(RESERVED), "bad region"),
        ]
        for col, (lo, hi) in RANGES.items():
            v = F.col(col).cast("double")
            rules.append((v.isNull() | F.isnan(v) | (v < lo) | (v > hi), f"bad {col}"))
        label = F.col("label").cast("string")
        rules.append((label.isNull() | ~label.isin("0", "1"), "bad label"))
        why = F.when(rules[0][0], rules[0][1])
        for cond, reason in rules[1:]:
            why = why.when(cond, reason)

        checked = users.withColumn("why", why).cache()
        dropped = {r["why"]: r["count"] for r in checked.where("why IS NOT NULL").groupBy("why").count().collect()}
        kept = checked.where("why IS NULL").select(
            F.trim("user_id").alias("user_id"),
            region.alias("region"),
            *[F.col(c).cast("int" if c in INT_COLUMNS else "double").alias(c) for c in RANGES],
            F.col("label").cast("int").alias("label"),
        ).orderBy("user_id").cache()  # sorted: the same cohort gives byte-identical files
        n = kept.count()
        detail = ", ".join(f"{k} {reason}" for reason, k in sorted(dropped.items())) or "none"
        progress(40, f"kept {n} of {n + sum(dropped.values())} rows; dropped: {detail}")
        if n == 0:
            raise StepError(f"{a.users}: no valid rows left after cleaning")

        regions = sorted(r["region"] for r in kept.select("region").distinct().collect())
        shutil.rmtree(OUT_DIR, ignore_errors=True)  # no stale regions of an earlier cohort
        os.makedirs(OUT_DIR)
        write_one_csv(kept, os.path.join(OUT_DIR, "all.csv"))
        for i, name in enumerate(regions, 1):
            write_one_csv(kept.where(F.col("region") == name), os.path.join(OUT_DIR, f"{name}.csv"))
            progress(40 + 60 * i / len(regions), f"{name}: wrote {OUT_DIR}/{name}.csv")
        kaon_spark.output(spark, "regions", regions)
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
