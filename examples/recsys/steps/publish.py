"""publish: publish the selected model.

    python3 steps/publish.py --model work/selected.model --choice regional

Checks that the model is what --choice says (a model JSON, as train.py and
train_global.py write, for "global"; a select_model.py regional bundle for
"regional"), then copies it to
work/published/<first 16 hex digits of its sha256>.model and prints where.
Publishing the same model twice is harmless. No value outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
from kaon_step import StepError, atomic_copy, emit_outputs, load_json_file, progress, run  # noqa: E402
from train import MODEL_KIND  # noqa: E402
from validate import BUNDLE_KIND  # noqa: E402

PUBLISH_DIR = os.path.join("work", "published")
EXPECTED_KIND = {"global": MODEL_KIND, "regional": BUNDLE_KIND}


def main() -> None:
    p = argparse.ArgumentParser(description="Publish the selected model under its content hash.")
    p.add_argument("--model", required=True, help="the selected model (select_model.py)")
    p.add_argument("--choice", required=True, help="what select_model.py chose: global or regional")
    a = p.parse_args()

    if a.choice not in EXPECTED_KIND:
        raise StepError(f"--choice: expected 'global' or 'regional', got {a.choice!r}")
    doc = load_json_file(a.model, "model")
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind != EXPECTED_KIND[a.choice]:
        raise StepError(f"{a.model}: is a {kind or 'unknown'} model, but --choice is {a.choice!r}")

    with open(a.model, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    dest = os.path.join(PUBLISH_DIR, f"{digest[:16]}.model")
    progress(0, f"publishing {a.choice} model {a.model}")
    atomic_copy(a.model, dest)
    progress(100, "published")
    print(f"published {a.choice} model {a.model} (sha256 {digest}) to {dest}", flush=True)
    emit_outputs({})  # publish declares no outputs


if __name__ == "__main__":
    run(main)
