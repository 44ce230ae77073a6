"""validateGlobalModel / validateRegModel / validateModel: AUC on held-out rows.

    python3 steps/validate.py --model work/global.json
    python3 steps/validate.py --model work/europe.model --region europe
    python3 steps/validate.py --model work/selected.model --min-auc 0.6 --stability

Computes the ROC AUC of a model on the held-out 20% (by user id, see
train.py) of the data file the model records; with --region, of that
region's file in the same prepared directory. Hands back ``auc``; with
--stability also ``stable`` (auc >= --min-auc, default 0.6).

--model may also be the regional bundle select_model.py writes; its AUC is the
mean of its regional models' AUCs, each on its own region's held-out rows
(or only the named region's, with --region).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, emit_outputs, load_json_file, progress, run, warn  # noqa: E402
from train import MODEL_KIND, FEATURES, data_file, is_holdout, read_rows, score  # noqa: E402

BUNDLE_KIND = "regional-bundle"
DEFAULT_MIN_AUC = 0.6


def auc(scores: list[float], labels: list[int]) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties averaged."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum += avg_rank * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def check_model(model, where: str) -> dict:
    if not isinstance(model, dict) or model.get("kind") != MODEL_KIND:
        raise StepError(f"{where}: not a {MODEL_KIND} model (train.py or train_global.py write them)")
    try:
        d = len(FEATURES)
        ok = (
            all(len(model[k]) == d for k in ("weights", "mean", "std"))
            and all(isinstance(v, (int, float)) for k in ("weights", "mean", "std") for v in model[k])
            and isinstance(model["bias"], (int, float))
            and all(s != 0 for s in model["std"])
            and isinstance(model["data"], str)
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise StepError(f"{where}: model is missing or has malformed fields")
    return model


def model_data(model: dict, region: str | None, where: str) -> str:
    """The data file to validate on: the model's own, or --region's sibling."""
    recorded = model["data"]  # relative to the working directory, like every kaon path
    if region is None:
        if not os.path.isfile(recorded):
            raise StepError(f"{where}: the data it was trained on is gone: {model['data']}")
        return recorded
    return data_file(os.path.dirname(recorded), region)


def evaluate(model: dict, region: str | None, where: str) -> tuple[float, int]:
    path = model_data(model, region, where)
    held = [(x, y) for uid, x, y in read_rows(path) if is_holdout(uid)]
    value = auc([score(model, x) for x, _ in held], [y for _, y in held])
    if value is None:
        warn(f"{path}: held-out rows ({len(held)}) lack one label class; AUC undefined, reporting 0.5")
        value = 0.5
    return value, len(held)


def main() -> None:
    p = argparse.ArgumentParser(description="Compute a model's AUC on held-out rows.")
    p.add_argument("--model", required=True, help="model JSON (train.py, train_global.py) or regional bundle (select_model.py)")
    p.add_argument("--region", help="validate on this region's held-out rows")
    p.add_argument("--min-auc", type=float, default=DEFAULT_MIN_AUC,
                   help=f"with --stability: the AUC a stable model reaches (default {DEFAULT_MIN_AUC})")
    p.add_argument("--stability", action="store_true", help="also output stable = auc >= --min-auc")
    a = p.parse_args()
    if not (math.isfinite(a.min_auc) and 0.0 <= a.min_auc <= 1.0):
        raise StepError(f"--min-auc: must be between 0 and 1, got {a.min_auc}")

    doc = load_json_file(a.model, "model")
    if isinstance(doc, dict) and doc.get("kind") == BUNDLE_KIND:
        members = doc.get("models")
        if not isinstance(members, dict) or not members:
            raise StepError(f"{a.model}: regional bundle lists no models")
        names = sorted(members)
        if a.region is not None:
            if a.region not in members:
                raise StepError(f"{a.model}: bundle has no model for region {a.region!r} (has: {', '.join(names)})")
            names = [a.region]
        aucs = []
        for i, name in enumerate(names, 1):
            entry = members[name]
            where = f"{a.model} [{name}]"
            model = check_model(entry.get("model") if isinstance(entry, dict) else None, where)
            value, n = evaluate(model, name, where)
            aucs.append(value)
            progress(100 * i / len(names), f"{name}: AUC {value:.4f} on {n} held-out rows")
        value = sum(aucs) / len(aucs)
    else:
        model = check_model(doc, a.model)
        progress(0, f"validating {a.model}")
        value, n = evaluate(model, a.region, a.model)
        progress(100, f"AUC {value:.4f} on {n} held-out rows")

    value = round(float(value), 6)
    outputs: dict = {"auc": value}
    if a.stability:
        outputs["stable"] = value >= a.min_auc
    emit_outputs(outputs)


if __name__ == "__main__":
    run(main)
