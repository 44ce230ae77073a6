"""train: score one (learning rate, depth) combination.

    python3 train_one.py --lr 0.03 --depth 5

A stand-in for a real training run: the score is a smooth function of
log10(lr) and depth that peaks near lr = 0.03, depth = 6, minus a small
penalty, plus tiny noise from an RNG seeded by the arguments, so the same
combination always gets the same score. Hands back ``score`` in [0, 1].
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kaon_step import StepError, emit_outputs, progress, run  # noqa: E402

BEST_LOG_LR = math.log10(0.03)
BEST_DEPTH = 6.0
MAX_DEPTH = 64


def synthetic_score(lr: float, depth: int) -> float:
    seed = int.from_bytes(hashlib.sha256(f"{lr!r}:{depth}".encode()).digest()[:8], "big")
    noise = random.Random(seed).gauss(0.0, 0.003)
    fit = 0.92 - 0.06 * (math.log10(lr) - BEST_LOG_LR) ** 2 - 0.004 * (depth - BEST_DEPTH) ** 2
    overfit = 0.002 * max(0, depth - 10)  # deep trees cost a little extra
    return min(1.0, max(0.0, fit - overfit + noise))


def main() -> None:
    p = argparse.ArgumentParser(description="Train and score one (learning rate, depth) combination.")
    p.add_argument("--lr", required=True, type=float, help="learning rate (> 0)")
    p.add_argument("--depth", required=True, type=int, help=f"tree depth (1..{MAX_DEPTH})")
    a = p.parse_args()
    if not (math.isfinite(a.lr) and a.lr > 0):
        raise StepError(f"--lr: must be a positive finite number, got {a.lr}")
    if not 1 <= a.depth <= MAX_DEPTH:
        raise StepError(f"--depth: must be between 1 and {MAX_DEPTH}, got {a.depth}")
    progress(0, f"training lr={a.lr} depth={a.depth}")
    score = round(synthetic_score(a.lr, a.depth), 6)
    progress(100, f"score {score:.4f}")
    emit_outputs({"score": score})


if __name__ == "__main__":
    run(main)
