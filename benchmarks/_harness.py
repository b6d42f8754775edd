"""Helpers shared by the ``bench_*.py`` modules: timing, subprocess runs, DNIKit venv, JSON."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
INTROSCOPE_PYTHON = pathlib.Path(sys.executable)
_MARKER = "@@BENCH-RESULT@@"

#: Prepended to every subprocess script: ``emit(obj)`` sends a JSON result back to the parent.
SCRIPT_PRELUDE = f"""
import json as _json
def emit(obj):
    print({_MARKER!r} + _json.dumps(obj), flush=True)
"""


def dnikit_python() -> pathlib.Path | None:
    """DNIKit 2.0's interpreter (``$INTROSCOPE_DNIKIT_PYTHON`` or ``.venv-dnikit``), or None."""
    env = os.environ.get("INTROSCOPE_DNIKIT_PYTHON")
    path = pathlib.Path(env) if env else ROOT / ".venv-dnikit" / "bin" / "python"
    if not path.exists():
        return None
    ok = subprocess.run([str(path), "-c", "import dnikit"], capture_output=True)
    return path if ok.returncode == 0 else None


def best_time(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> float:
    """Best wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_script(
    python: pathlib.Path | str,
    script: str,
    args: Sequence[str] = (),
    *,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
) -> dict:
    """Run ``script`` under ``python`` in a fresh process; return what it passed to ``emit``."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(SCRIPT_PRELUDE + script)
        path = f.name
    try:
        full_env = {**os.environ, "INTROSCOPE_PROGRESS": "0", **(env or {})}
        proc = subprocess.run(
            [str(python), path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=ROOT,
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({python}):\n{proc.stderr[-4000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER) :])
    raise RuntimeError(f"benchmark subprocess emitted no result:\n{proc.stdout[-2000:]}")


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def mib(nbytes: float) -> float:
    """Bytes to MiB, rounded for reports."""
    return round(nbytes / 2**20, 1)
