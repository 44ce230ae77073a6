"""trainRegModel: fit a logistic regression, in plain Python.

    python3 steps/train.py --data work/prepared --region europe --out work/europe.model
    python3 steps/train.py --data work/prepared --out work/all.model

Trains on <data>/all.csv, or on <data>/<region>.csv with --region, by
plain full-batch gradient descent on standardized features (small L2
penalty, fixed step, deterministic). Rows are split 80/20 by user id
(``sha256(user_id) % 5 == 0`` is held out), so the same user is held out
whichever file it appears in; only the 80% is used for training.

The model is written as JSON to --out (file output ``model``); it records
the data file it was trained on and the split, so validate.py can find the
held-out rows. validate.py and select_model.py import the helpers below.

The global model (trainGlobalModel) is trained with Spark MLlib instead, by
train_global.py, which takes the features, the split and the JSON model
format from here.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, atomic_write_json, emit_outputs, progress, run, warn  # noqa: E402

FEATURES = ["age", "tenure_months", "hours_watched", "sessions_per_week"]
HOLDOUT_BUCKETS = 5  # one bucket of five = 20% held out
SPLIT = {"method": "sha256(user_id) % 5 == 0 is held out", "buckets": HOLDOUT_BUCKETS}
EPOCHS = 100
STEP = 0.5
L2 = 1e-3
MODEL_KIND = "logistic-regression"


def is_holdout(user_id: str) -> bool:
    h = hashlib.sha256(user_id.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % HOLDOUT_BUCKETS == 0


def data_file(data_dir: str, region: str | None) -> str:
    if region is not None and (not region or "/" in region or "\\" in region or region.startswith(".")):
        raise StepError(f"--region: not a usable region name: {region!r}")
    path = os.path.join(data_dir, f"{region}.csv" if region else "all.csv")
    if not os.path.isfile(path):
        if not os.path.isdir(data_dir):
            raise StepError(f"data directory not found: {data_dir}")
        what = f"region {region!r}" if region else "all regions"
        raise StepError(f"no prepared data for {what}: {path} not found")
    return path


def read_rows(path: str) -> list[tuple[str, list[float], int]]:
    """(user_id, features, label) for every row of a prepared CSV."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ["user_id", "label", *FEATURES] if c not in (reader.fieldnames or [])]
            if missing:
                raise StepError(f"{path}: missing column(s): {', '.join(missing)} (not a prepared CSV?)")
            for row in reader:
                try:
                    x = [float(row[c]) for c in FEATURES]
                    y = int(row["label"])
                except (TypeError, ValueError):
                    raise StepError(f"{path}:{reader.line_num}: bad value (run wrangle.py first)")
                if y not in (0, 1) or not all(math.isfinite(v) for v in x):
                    raise StepError(f"{path}:{reader.line_num}: bad value (run wrangle.py first)")
                rows.append((row["user_id"], x, y))
    except FileNotFoundError:
        raise StepError(f"data file not found: {path}")
    except (csv.Error, UnicodeDecodeError) as e:
        raise StepError(f"{path}: malformed CSV: {e}")
    return rows


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def score(model: dict, x: list[float]) -> float:
    """The model's probability that the label is 1."""
    z = model["bias"]
    for w, v, m, s in zip(model["weights"], x, model["mean"], model["std"]):
        z += w * (v - m) / s
    return sigmoid(z)


def fit(xs: list[list[float]], ys: list[int]) -> dict:
    n, d = len(xs), len(FEATURES)
    mean = [sum(x[j] for x in xs) / n for j in range(d)]
    std = [math.sqrt(sum((x[j] - mean[j]) ** 2 for x in xs) / n) or 1.0 for j in range(d)]
    zs = [[(x[j] - mean[j]) / std[j] for j in range(d)] for x in xs]
    w = [0.0] * d
    b = 0.0
    loss = float("nan")
    for epoch in range(1, EPOCHS + 1):
        gw = [0.0] * d
        gb = 0.0
        loss = 0.0
        for z, y in zip(zs, ys):
            p = sigmoid(b + sum(wi * zi for wi, zi in zip(w, z)))
            err = p - y
            gb += err
            for j in range(d):
                gw[j] += err * z[j]
            loss -= math.log(max(p, 1e-12)) if y else math.log(max(1 - p, 1e-12))
        w = [wi - STEP * (g / n + L2 * wi) for wi, g in zip(w, gw)]
        b -= STEP * gb / n
        if epoch % 25 == 0:
            progress(10 + 85 * epoch / EPOCHS, f"epoch {epoch}/{EPOCHS} log-loss {loss / n:.4f}")
    return {"mean": mean, "std": std, "weights": w, "bias": b, "train_log_loss": loss / n}


def main() -> None:
    p = argparse.ArgumentParser(description="Train a logistic regression on prepared data.")
    p.add_argument("--data", required=True, help="prepared data directory (from wrangle.py)")
    p.add_argument("--region", help="train on this region only (default: all regions)")
    p.add_argument("--out", required=True, help="where to write the model JSON")
    a = p.parse_args()

    path = data_file(a.data, a.region)
    progress(0, f"reading {path}")
    rows = read_rows(path)
    train = [(x, y) for uid, x, y in rows if not is_holdout(uid)]
    if not train:
        # A tiny region: keep the fan-out going with a constant model.
        warn(f"{path}: no training rows ({len(rows)} rows, all held out); writing a constant model")
        d = len(FEATURES)
        params = {"mean": [0.0] * d, "std": [1.0] * d, "weights": [0.0] * d, "bias": 0.0,
                  "train_log_loss": None}
    else:
        if len({y for _, y in train}) < 2:
            warn(f"{path}: all {len(train)} training rows have the same label; the model will be weak")
        progress(10, f"training on {len(train)} of {len(rows)} rows")
        params = fit([x for x, _ in train], [y for _, y in train])
    model = {
        "kind": MODEL_KIND,
        "region": a.region,
        "features": FEATURES,
        "data": path,
        "split": SPLIT,
        "train_rows": len(train),
        "epochs": EPOCHS,
        "step": STEP,
        "l2": L2,
        **params,
    }
    atomic_write_json(a.out, model)
    progress(100, f"wrote {a.out}")
    emit_outputs({})  # the model is a file output; no value outputs


if __name__ == "__main__":
    run(main)
