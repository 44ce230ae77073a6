"""PySpark job of kaon's Spark tests: a few stages, an output through kaon's
listener, and `fail` as the first argument to fail after the work."""
import sys

import kaon_spark
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
df = spark.range(0, 200000, numPartitions=4)
n = df.groupBy((df.id % 7).alias("k")).count().count()
kaon_spark.output(spark, "groups", n)
if len(sys.argv) > 1 and sys.argv[1] == "fail":
    raise ValueError("boom from python")
print("groups", n)
spark.stop()
