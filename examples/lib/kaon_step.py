"""Tiny helper for kaon step scripts (stdlib only, Python 3.11).

The kaon step protocol
======================

kaon runs a ``kind = "command"`` step as a plain process, in the workflow's
working directory, with the arguments named by the step's ``command`` in the
workflow TOML. The step talks back to kaon like this:

Value outputs
    A step hands back its value outputs (``count = "int"``,
    ``regions = "list<string>"``, ``best = "json"``, ...) by writing one JSON
    object ``{output_name: value}`` to the file whose path is in the
    environment variable ``KAON_OUTPUTS_FILE``, if that variable is set. The
    file is written atomically: a temporary file in the same directory, then
    ``os.replace``, so kaon never reads half an object. Each value must have
    the JSON type its declaration asks for (``int`` -> integer, ``float`` ->
    number, ``bool`` -> true/false, ``string``, ``list<T>`` -> array, ``json``
    -> anything).

    Whether or not the variable is set, the step also prints one line per
    output to stdout, for a human reading the log::

        ::kaon::output name=<json value>

File and dir outputs
    An output declared as ``{ type = "file" | "dir", path = "..." }`` is not
    written to the outputs file: the step creates it at that path, relative
    to the current working directory (creating parent directories), and
    kaon picks it up from there.

Progress
    Now and then a step may print ``::kaon::progress <percent> <message>``
    to stdout (percent an integer 0-100).

Arguments
    A list-typed value handed to a step (a fan-out's outputs seen after the
    join, e.g. every per-region AUC) arrives as one argument holding the
    list JSON-encoded, e.g. ``'[0.71, 0.68]'``; use :func:`json_list_arg`.
    File and dir outputs of other steps arrive as paths.

Errors
    Bad input ends the step with one clear line on stderr
    (``<script>: error: <message>``) and a non-zero exit status, never a
    traceback; raise :class:`StepError` and run ``main`` through :func:`run`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from typing import Any, Callable

OUTPUTS_ENV = "KAON_OUTPUTS_FILE"


class StepError(Exception):
    """Bad input or environment: reported as one line, exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _prog() -> str:
    return os.path.basename(sys.argv[0]) or "step"


def fail(message: str, code: int = 1) -> None:
    """Print ``<script>: error: message`` to stderr and exit with ``code``."""
    print(f"{_prog()}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def warn(message: str) -> None:
    print(f"{_prog()}: warning: {message}", file=sys.stderr, flush=True)


def run(main: Callable[[], Any]) -> None:
    """Run ``main``; turn expected failures into one-line errors."""
    try:
        main()
    except StepError as e:
        fail(str(e), e.code)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        fail(f"{e.strerror or e}{where}")
    except KeyboardInterrupt:
        fail("interrupted", 130)


def progress(percent: float, message: str) -> None:
    pct = max(0, min(100, int(round(percent))))
    print(f"::kaon::progress {pct} {message}", flush=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkstemp_beside(path: str) -> tuple[int, str]:
    """A temp file in ``path``'s directory (made if missing), with the
    permissions a plain ``open(path, "w")`` would give (mkstemp uses 0600)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".kaon-", suffix=".tmp", dir=directory)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


def _replace_atomically(path: str, fill: Callable[[int, str], None]) -> None:
    """Create a temp file beside ``path``, let ``fill(fd, tmp)`` write it (and
    close ``fd``), then rename it over ``path``; on any failure remove it."""
    fd, tmp = _mkstemp_beside(path)
    try:
        fill(fd, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write_bytes(path: str, data: bytes) -> None:
    def fill(fd: int, _tmp: str) -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _replace_atomically(path, fill)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file + ``os.replace``; makes parents."""
    _atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def atomic_copy(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` atomically (temp file in dst's directory)."""

    def fill(fd: int, tmp: str) -> None:
        os.close(fd)
        shutil.copyfile(src, tmp)

    _replace_atomically(dst, fill)


def emit_outputs(outputs: dict[str, Any]) -> None:
    """Hand value outputs back to kaon (see the module docstring)."""
    try:
        encoded = {k: json.dumps(v, allow_nan=False) for k, v in outputs.items()}
    except (TypeError, ValueError) as e:
        raise StepError(f"cannot encode outputs as JSON: {e}")
    for name, text in encoded.items():
        print(f"::kaon::output {name}={text}", flush=True)
    path = os.environ.get(OUTPUTS_ENV)
    if path:
        atomic_write_text(path, json.dumps(outputs, allow_nan=False) + "\n")


def json_list_arg(text: str, name: str) -> list:
    """Parse a list argument that kaon passed JSON-encoded."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise StepError(f"{name}: not valid JSON ({e.msg} at char {e.pos}): {text!r}")
    if not isinstance(value, list):
        raise StepError(f"{name}: expected a JSON list, got {type(value).__name__}: {text!r}")
    return value


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_json_file(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise StepError(f"{what} not found: {path}")
    except IsADirectoryError:
        raise StepError(f"{what} is a directory, expected a file: {path}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StepError(f"{what} is not valid JSON: {path} ({e})")
