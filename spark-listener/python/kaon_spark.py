"""Report outputs of a PySpark job to kaon.

    import kaon_spark
    kaon_spark.output(spark, "record_count", df.count())

The value is serialized with json.dumps and handed to the JVM side
(dev.kaon.spark.Kaon.output, in kaon's listener jar), which sends it to kaon
with the job's other events. Without that jar (or without a JVM, e.g. under
Spark Connect) it prints kaon's stdout marker `::kaon::output name=<json>`
instead, which kaon reads from the driver's output in client mode.

Like the listener, this never raises: reporting must not fail the job. A value
json cannot serialize is reported on stderr and skipped.
"""

import json
import math
import sys

__all__ = ["output"]


def output(spark_or_sc, name, value):
    """Report output `name` = `value` (anything json.dumps takes) to kaon.

    `spark_or_sc` is a SparkSession or a SparkContext.
    """
    try:
        text = _dumps(value)
    except Exception as e:  # noqa: BLE001 - never fail the user's job
        print("kaon: output %s not reported: %s" % (name, e), file=sys.stderr, flush=True)
        return
    try:
        kaon = _kaon_class(spark_or_sc)
        if kaon is not None:
            kaon.output(str(name), text)
            return
    except Exception:  # noqa: BLE001 - fall back to the stdout marker
        pass
    print("::kaon::output %s=%s" % (name, text), flush=True)


def _dumps(value):
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_plain)
    except ValueError:
        # NaN or an infinity somewhere: not JSON, reported as null (as the JVM side does).
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False, default=_plain)


def _plain(o):
    """Values json does not know but that have an obvious JSON form (numpy, Decimal, dates)."""
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):  # datetime, date
        return o.isoformat()
    if type(o).__name__ == "Decimal":
        return float(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError("%s is not JSON serializable" % type(o).__name__)


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _kaon_class(spark_or_sc):
    """The JVM class dev.kaon.spark.Kaon through py4j, or None."""
    sc = spark_or_sc
    try:
        sc = spark_or_sc.sparkContext  # a SparkSession
    except Exception:  # noqa: BLE001 - a SparkContext, or a Connect session without one
        pass
    jvm = getattr(sc, "_jvm", None)
    if jvm is None:
        return None
    kaon = jvm.dev.kaon.spark.Kaon
    # A missing class comes back as a py4j JavaPackage, not a JavaClass.
    from py4j.java_gateway import JavaClass

    return kaon if isinstance(kaon, JavaClass) else None
