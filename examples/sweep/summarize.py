"""summarize: pick the best combination.

    python3 summarize.py --scores '[0.81, 0.9, 0.77]'

--scores is the list of every train score, JSON-encoded, in the order of
the sweep's combinations. Hands back ``best`` = {"index": i, "score": s}
for the highest score (the first one on a tie).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kaon_step import StepError, emit_outputs, is_number, json_list_arg, progress, run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description="Pick the highest of the sweep's scores.")
    p.add_argument("--scores", required=True, help="JSON list of scores")
    a = p.parse_args()
    scores = json_list_arg(a.scores, "--scores")
    if not scores:
        raise StepError("--scores: the list is empty; nothing to pick from")
    for i, s in enumerate(scores):
        if not is_number(s):
            raise StepError(f"--scores: item {i} is not a finite number: {s!r}")
    index = max(range(len(scores)), key=lambda i: (scores[i], -i))
    best = {"index": index, "score": float(scores[index])}
    progress(100, f"best of {len(scores)}: #{index} with {best['score']}")
    emit_outputs({"best": best})


if __name__ == "__main__":
    run(main)
