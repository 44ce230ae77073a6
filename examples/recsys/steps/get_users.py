"""getUsers: synthesize the cohort of one day's viewers.

    python3 steps/get_users.py --date 2016-05-31 --size 5000

Writes work/users.csv (file output ``users``) and hands back ``count``
(the number of rows written). The cohort is deterministic: the RNG is
seeded from the date, so the same date and size give the same file.
A small share of rows is deliberately corrupted (missing values, NaN,
out-of-range numbers, bad labels, blank regions) for wrangle.py to clean.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import math
import os
import random
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, atomic_write_text, emit_outputs, progress, run  # noqa: E402

OUT_PATH = os.path.join("work", "users.csv")
MAX_SIZE = 1_000_000
BAD_ROW_SHARE = 0.015

# Region name, share of the cohort, and how strongly the region's viewers
# respond to each feature (so regional models have something to find).
REGIONS = [
    ("north-america", 0.35, {"hours": 1.0, "tenure": 0.6, "age": -0.2}),
    ("europe", 0.25, {"hours": 0.8, "tenure": 0.9, "age": 0.1}),
    ("latam", 0.15, {"hours": 1.2, "tenure": 0.3, "age": -0.5}),
    ("asia", 0.13, {"hours": 0.6, "tenure": 0.4, "age": 0.6}),
    ("oceania", 0.07, {"hours": 0.9, "tenure": 1.0, "age": 0.0}),
    ("africa", 0.05, {"hours": 1.3, "tenure": 0.2, "age": -0.3}),
]
WEIGHTS = [r[1] for r in REGIONS]
COLUMNS = ["user_id", "region", "age", "tenure_months", "hours_watched", "sessions_per_week", "label"]


def seed_for(date: str) -> int:
    return int.from_bytes(hashlib.sha256(f"kaon-recsys:{date}".encode()).digest()[:8], "big")


def make_user(rng: random.Random, i: int) -> list:
    region, _, eff = rng.choices(REGIONS, weights=WEIGHTS)[0]
    age = min(80, max(18, int(rng.gauss(38, 12))))
    tenure = max(0, int(rng.expovariate(1 / 24)))
    hours = max(0.0, rng.gauss(25, 12))
    sessions = max(0.0, hours / 5 + rng.gauss(0, 1.5))
    z = (
        eff["hours"] * (hours - 25) / 12
        + eff["tenure"] * (tenure - 24) / 24
        + eff["age"] * (age - 38) / 12
        + 0.3 * (sessions - 5) / 3
        + rng.gauss(0, 0.8)
    )
    label = 1 if rng.random() < 1 / (1 + math.exp(-z)) else 0
    return [f"u{i:07d}", region, age, tenure, round(hours, 2), round(sessions, 2), label]


def corrupt(rng: random.Random, row: list) -> list:
    row = list(row)
    kind = rng.randrange(6)
    if kind == 0:
        row[rng.randrange(2, 6)] = ""  # missing value
    elif kind == 1:
        row[rng.choice([4, 5])] = "NaN"
    elif kind == 2:
        row[4] = -abs(float(row[4])) - 1  # negative watch time
    elif kind == 3:
        row[2] = 999  # impossible age
    elif kind == 4:
        row[6] = rng.choice(["2", "yes", ""])  # bad label
    else:
        row[1] = ""  # no region
    return row


def main() -> None:
    p = argparse.ArgumentParser(description="Synthesize a cohort of users into work/users.csv.")
    p.add_argument("--date", required=True, help="cohort day, YYYY-MM-DD")
    p.add_argument("--size", required=True, type=int, help=f"number of users (1..{MAX_SIZE})")
    a = p.parse_args()

    try:
        date = datetime.date.fromisoformat(a.date).isoformat()
    except ValueError:
        raise StepError(f"--date: expected a date YYYY-MM-DD, got {a.date!r}")
    if not 1 <= a.size <= MAX_SIZE:
        raise StepError(f"--size: must be between 1 and {MAX_SIZE}, got {a.size}")

    rng = random.Random(seed_for(date))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    progress(0, f"selecting {a.size} users for {date}")
    for i in range(1, a.size + 1):
        row = make_user(rng, i)
        if rng.random() < BAD_ROW_SHARE:
            row = corrupt(rng, row)
        w.writerow(row)
        if i % 2000 == 0 and i < a.size:
            progress(100 * i / a.size, f"{i} users")
    atomic_write_text(OUT_PATH, buf.getvalue())
    progress(100, f"wrote {OUT_PATH}")
    emit_outputs({"count": a.size})


if __name__ == "__main__":
    run(main)
