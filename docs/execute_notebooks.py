"""Execute examples/*.ipynb from a clean kernel into docs/examples/ (with outputs) for the site.

    .venv/bin/python docs/execute_notebooks.py [--force] [NOTEBOOK ...]

A notebook whose executed copy is newer than its source is skipped unless ``--force``. The
test suite (tests/test_notebooks.py) writes the same copies, so ``make test`` runs each once.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples"
TARGET = ROOT / "docs" / "examples"


def execute(source: pathlib.Path, target: pathlib.Path, timeout: int = 900) -> float:
    """Run ``source`` in a fresh kernel and write it, outputs included, to ``target``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    )
    # The kernel inherits this environment: charts inline (a test run sets MPLBACKEND=Agg,
    # which would leave only their repr), no progress bars in the saved outputs.
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "INTROSCOPE_PROGRESS")}
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["INTROSCOPE_PROGRESS"] = "0"
    try:
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, target)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--force", action="store_true")
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args(argv)
    sources = [pathlib.Path(n) for n in args.notebooks] or sorted(SOURCE.glob("*.ipynb"))
    for source in sources:
        target = TARGET / source.name
        if not args.force and target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            print(f"{source.name}: up to date")
            continue
        print(f"{source.name}: executed in {execute(source, target):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
