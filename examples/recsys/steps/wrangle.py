"""wrangleData: clean the cohort and split it by region.

    python3 steps/wrangle.py --users work/users.csv

Drops rows with missing, non-numeric, non-finite or out-of-range values,
bad labels, unusable region names and duplicate user ids, then writes
work/prepared/all.csv and one work/prepared/<region>.csv per region (dir
output ``prepared``; stale CSVs from an earlier run are removed). Hands
back ``regions``: the sorted list of region names present.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, atomic_write_text, emit_outputs, progress, run  # noqa: E402

OUT_DIR = os.path.join("work", "prepared")
COLUMNS = ["user_id", "region", "age", "tenure_months", "hours_watched", "sessions_per_week", "label"]
# Numeric columns and their allowed closed ranges.
RANGES = {
    "age": (13, 120),
    "tenure_months": (0, 1200),
    "hours_watched": (0, 744),  # hours in a 31-day month
    "sessions_per_week": (0, 500),
}
REGION_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
RESERVED = {"all"}  # all.csv holds every region


def clean(row: dict, seen: set) -> tuple[dict | None, str]:
    uid = (row.get("user_id") or "").strip()
    if not uid:
        return None, "no user id"
    if uid in seen:
        return None, "duplicate user id"
    region = (row.get("region") or "").strip().lower()
    if not REGION_RE.match(region) or region in RESERVED:
        return None, "bad region"
    out = {"user_id": uid, "region": region}
    for col, (lo, hi) in RANGES.items():
        try:
            v = float(row.get(col) or "")
        except ValueError:
            return None, f"bad {col}"
        if not math.isfinite(v) or not lo <= v <= hi:
            return None, f"bad {col}"
        out[col] = repr(v) if col != "age" and col != "tenure_months" else str(int(v))
    label = (row.get("label") or "").strip()
    if label not in ("0", "1"):
        return None, "bad label"
    out["label"] = label
    return out, ""


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description="Clean the cohort and split it by region into work/prepared/.")
    p.add_argument("--users", required=True, help="path of the users CSV (from get_users.py)")
    a = p.parse_args()

    if not os.path.isfile(a.users):
        raise StepError(f"--users: no such file: {a.users}")
    progress(0, f"reading {a.users}")
    kept: list[dict] = []
    dropped: dict[str, int] = {}
    seen: set = set()
    with open(a.users, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise StepError(f"{a.users}: missing column(s): {', '.join(missing)}")
            for row in reader:
                good, why = clean(row, seen)
                if good is None:
                    dropped[why] = dropped.get(why, 0) + 1
                else:
                    seen.add(good["user_id"])
                    kept.append(good)
        except csv.Error as e:
            raise StepError(f"{a.users}: malformed CSV at line {reader.line_num}: {e}")
        except UnicodeDecodeError:
            raise StepError(f"{a.users}: not UTF-8 text")
    total = len(kept) + sum(dropped.values())
    detail = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items())) or "none"
    progress(40, f"kept {len(kept)} of {total} rows; dropped: {detail}")
    if not kept:
        raise StepError(f"{a.users}: no valid rows left after cleaning")

    by_region: dict[str, list[dict]] = {}
    for r in kept:
        by_region.setdefault(r["region"], []).append(r)
    regions = sorted(by_region)

    os.makedirs(OUT_DIR, exist_ok=True)
    for name in os.listdir(OUT_DIR):  # stale regions from an earlier cohort
        if name.endswith(".csv") and name[:-4] not in regions and name != "all.csv":
            os.remove(os.path.join(OUT_DIR, name))
    atomic_write_text(os.path.join(OUT_DIR, "all.csv"), to_csv(kept))
    for i, region in enumerate(regions, 1):
        atomic_write_text(os.path.join(OUT_DIR, f"{region}.csv"), to_csv(by_region[region]))
        progress(40 + 60 * i / len(regions), f"{region}: {len(by_region[region])} rows")
    emit_outputs({"regions": regions})


if __name__ == "__main__":
    run(main)
