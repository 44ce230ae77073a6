"""loadGrid: read the learning rates to try.

    python3 load_grid.py grid.txt

One learning rate per line; blank lines and comments (from ``#`` to the
end of the line) are ignored. Hands back ``rates``, the list of floats in
file order. A line that is not a positive finite number, an empty grid or
an unreadable file is an error with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kaon_step import StepError, emit_outputs, progress, run  # noqa: E402

BAD_INPUT = 2


def parse_grid(path: str, text: str) -> list[float]:
    rates = []
    for n, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            rate = float(item)
        except ValueError:
            raise StepError(f"{path}:{n}: not a number: {item!r}", BAD_INPUT)
        if not math.isfinite(rate) or rate <= 0:
            raise StepError(f"{path}:{n}: a learning rate must be a positive finite number, got {item!r}", BAD_INPUT)
        rates.append(rate)
    if not rates:
        raise StepError(f"{path}: no learning rates in the file", BAD_INPUT)
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description="Read one learning rate per line.")
    p.add_argument("file", help="grid file: one learning rate per line, # comments")
    a = p.parse_args()
    try:
        with open(a.file, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise StepError(f"grid file not found: {a.file}", BAD_INPUT)
    except IsADirectoryError:
        raise StepError(f"grid file is a directory: {a.file}", BAD_INPUT)
    except UnicodeDecodeError:
        raise StepError(f"grid file is not UTF-8 text: {a.file}", BAD_INPUT)
    except OSError as e:
        raise StepError(f"cannot read grid file {a.file}: {e.strerror}", BAD_INPUT)
    rates = parse_grid(a.file, text)
    progress(100, f"{len(rates)} learning rates from {a.file}")
    emit_outputs({"rates": rates})


if __name__ == "__main__":
    run(main)
