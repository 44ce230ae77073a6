"""selectModel: pick the global model or the regional ones.

    python3 steps/select_model.py --global-model work/global.json --global-auc 0.74 \\
        --regional-aucs '[0.71, 0.77, 0.69]'

--regional-aucs is the list of every validateRegModel AUC, JSON-encoded,
in the order of the fan-out over regions, i.e. wrangle.py's sorted region
list; the regions are read back from the prepared directory the global
model was trained on, and each region's model is <dir of
--global-model>/<region>.model (work/<region>.model).

Chooses "regional" if the mean regional AUC beats the global AUC, else
"global". Writes work/selected.model (file output ``model``): a copy of
the global model, or a regional bundle, a JSON object listing each
region's model path and AUC and embedding the model itself, so the bundle
stands alone once published. Hands back ``choice``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import (  # noqa: E402
    StepError, atomic_copy, atomic_write_json, emit_outputs, is_number, json_list_arg,
    load_json_file, progress, run,
)
from validate import BUNDLE_KIND, check_model  # noqa: E402

OUT_PATH = os.path.join("work", "selected.model")


def prepared_regions(global_model: dict, where: str) -> tuple[str, list[str]]:
    prepared = os.path.dirname(global_model["data"])
    if not os.path.isdir(prepared):
        raise StepError(f"{where}: its prepared data directory is gone: {prepared}")
    regions = sorted(n[:-4] for n in os.listdir(prepared) if n.endswith(".csv") and n != "all.csv")
    return prepared, regions


def main() -> None:
    p = argparse.ArgumentParser(description="Pick the global model or the regional models.")
    p.add_argument("--global-model", required=True, help="the global model's JSON (train_global.py)")
    p.add_argument("--global-auc", required=True, type=float, help="its AUC (validate.py)")
    p.add_argument("--regional-aucs", required=True,
                   help="JSON list of the regional AUCs, in sorted region order")
    a = p.parse_args()

    if not (math.isfinite(a.global_auc) and 0.0 <= a.global_auc <= 1.0):
        raise StepError(f"--global-auc: must be between 0 and 1, got {a.global_auc}")
    aucs = json_list_arg(a.regional_aucs, "--regional-aucs")
    for i, v in enumerate(aucs):
        if not (is_number(v) and 0.0 <= v <= 1.0):
            raise StepError(f"--regional-aucs: item {i} is not an AUC between 0 and 1: {v!r}")
    global_model = check_model(load_json_file(a.global_model, "global model"), a.global_model)

    if not aucs:
        choice, mean = "global", None
        progress(50, f"no regional models; global AUC {a.global_auc:.4f}")
    else:
        mean = sum(aucs) / len(aucs)
        choice = "regional" if mean > a.global_auc else "global"
        progress(50, f"global AUC {a.global_auc:.4f} vs mean regional AUC {mean:.4f} ({len(aucs)} regions)")

    if choice == "global":
        atomic_copy(a.global_model, OUT_PATH)
    else:
        prepared, regions = prepared_regions(global_model, a.global_model)
        if len(regions) != len(aucs):
            raise StepError(
                f"--regional-aucs has {len(aucs)} AUCs but {prepared} holds {len(regions)} regions "
                f"({', '.join(regions) or 'none'})"
            )
        model_dir = os.path.dirname(a.global_model)
        members = {}
        for region, value in zip(regions, aucs):
            path = os.path.join(model_dir, f"{region}.model")
            model = check_model(load_json_file(path, f"model of region {region!r}"), path)
            if model.get("region") != region:
                raise StepError(f"{path}: trained for region {model.get('region')!r}, expected {region!r}")
            members[region] = {"path": path, "auc": value, "model": model}
        atomic_write_json(OUT_PATH, {
            "kind": BUNDLE_KIND,
            "choice": choice,
            "mean_auc": mean,
            "global_auc": a.global_auc,
            "models": members,
        })
    progress(100, f"chose {choice}; wrote {OUT_PATH}")
    emit_outputs({"choice": choice})


if __name__ == "__main__":
    run(main)
