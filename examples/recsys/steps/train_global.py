"""trainGlobalModel: one logistic regression over every region, with Spark MLlib.

    kaon runs it as a `kind = "spark"` step, i.e.
    spark-submit --py-files steps/train.py,../lib/kaon_step.py \\
        steps/train_global.py --data work/prepared

Trains a pyspark.ml Pipeline (VectorAssembler -> LogisticRegression) on
<data>/all.csv, leaving out the same 20% of users as train.py (so
validateGlobalModel and the regional models are judged on the same rows),
and writes:

- work/global.model (dir output ``model``): the fitted PipelineModel, for
  anything that scores with Spark;
- work/global.json (file output ``coefficients``): the same model in
  train.py's JSON model format, which the stdlib steps downstream
  (validate.py, select_model.py, publish.py) read without Spark;
- work/feature_importance.json (file output ``feature_importance``): each
  feature's share of the model's effect, ``{"age": 0.05, ...}``, summing to
  1: the coefficient's magnitude times the feature's standard deviation on
  the training rows (the coefficient of the standardized feature), so that
  features measured in years and in hours compare. kaon records it as an
  artifact of media type application/json; the UI charts it over runs.

Hands back ``train_rows`` and ``auc``, MLlib's area under the ROC curve on
the held-out rows (validateGlobalModel recomputes it from the JSON).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, atomic_write_json, progress, run  # noqa: E402
from train import FEATURES, HOLDOUT_BUCKETS, L2, MODEL_KIND, SPLIT, data_file  # noqa: E402

MODEL_DIR = os.path.join("work", "global.model")
JSON_PATH = os.path.join("work", "global.json")
IMPORTANCE_PATH = os.path.join("work", "feature_importance.json")
MAX_ITER = 100


def holdout(user_id):
    """train.is_holdout as a Spark column: the first 8 bytes of the user id's
    sha256, read as an unsigned integer, fall in bucket 0."""
    from pyspark.sql import functions as F

    first8 = F.conv(F.substring(F.sha2(user_id, 256), 1, 16), 16, 10).cast("decimal(20,0)")
    return first8 % HOLDOUT_BUCKETS == 0


def feature_importance(weights: list[float], stds: list[float]) -> dict[str, float]:
    """Each feature's share of a linear model's effect: |weight| x the
    feature's standard deviation, normalised to sum 1 (all 0 when no
    feature counts). Rounded to 6 places."""
    raw = [abs(w) * s for w, s in zip(weights, stds)]
    total = sum(raw)
    return {f: round(r / total, 6) if total > 0 else 0.0 for f, r in zip(FEATURES, raw)}


def main() -> None:
    p = argparse.ArgumentParser(description="Train the global model with Spark MLlib.")
    p.add_argument("--data", required=True, help="prepared data directory (from wrangle.py)")
    a = p.parse_args()
    path = data_file(a.data, None)

    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import SparkSession, functions as F

    import kaon_spark  # shipped by kaon with every Python Spark application

    spark = SparkSession.builder.appName("trainGlobalModel").getOrCreate()
    try:
        schema = "user_id STRING, region STRING, " + ", ".join(f"{c} DOUBLE" for c in FEATURES) + ", label DOUBLE"
        rows = spark.read.csv(path, header=True, schema=schema, mode="FAILFAST")
        rows = rows.withColumn("held_out", holdout(F.col("user_id"))).cache()
        train = rows.where(~F.col("held_out"))
        test = rows.where(F.col("held_out"))
        n_train = train.count()
        if n_train == 0 or train.select("label").distinct().count() < 2:
            raise StepError(f"{path}: {n_train} training rows, too few (or one label only) to train on")
        progress(10, f"training on {n_train} of {rows.count()} rows with Spark {spark.version}")

        # MLlib standardizes the features internally and reports the
        # coefficients on their original scale.
        lr = LogisticRegression(featuresCol="features", labelCol="label", maxIter=MAX_ITER,
                                regParam=L2, elasticNetParam=0.0)
        model = Pipeline(stages=[VectorAssembler(inputCols=FEATURES, outputCol="features"), lr]).fit(train)
        model.write().overwrite().save(MODEL_DIR)
        progress(80, f"saved {MODEL_DIR}")

        auc = BinaryClassificationEvaluator(labelCol="label", metricName="areaUnderROC").evaluate(
            model.transform(test))
        fitted = model.stages[-1]
        # Coefficients on the raw features: mean 0 and std 1 make train.py's
        # score() compute exactly MLlib's probability.
        atomic_write_json(JSON_PATH, {
            "kind": MODEL_KIND,
            "region": None,
            "features": FEATURES,
            "data": path,
            "split": SPLIT,
            "train_rows": n_train,
            "trainer": f"Spark {spark.version} MLlib LogisticRegression",
            "max_iter": MAX_ITER,
            "l2": L2,
            "spark_model": MODEL_DIR,
            "mean": [0.0] * len(FEATURES),
            "std": [1.0] * len(FEATURES),
            "weights": [float(w) for w in fitted.coefficients],
            "bias": float(fitted.intercept),
        })
        spread = train.select([F.stddev_samp(c).alias(c) for c in FEATURES]).first()
        importance = feature_importance(
            [float(w) for w in fitted.coefficients],
            [float(spread[c] or 0.0) for c in FEATURES],
        )
        atomic_write_json(IMPORTANCE_PATH, importance)
        top = max(importance, key=importance.get)
        progress(100, f"held-out AUC {auc:.4f}; wrote {JSON_PATH} and {IMPORTANCE_PATH} "
                      f"(most important: {top}, {importance[top]:.0%})")
        kaon_spark.output(spark, "train_rows", n_train)
        kaon_spark.output(spark, "auc", round(float(auc), 6))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
