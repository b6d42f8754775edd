"""Run every ``benchmarks/bench_*.py`` (or those named) and write JSON to ``benchmarks/results/``.

    .venv/bin/python benchmarks/run.py [--quick] [names...]

Each module exposes ``run(quick: bool) -> dict`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import pathlib
import platform
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import RESULTS_DIR, write_json  # noqa: E402


def discover(names: list[str]) -> list[pathlib.Path]:
    """``bench_*.py`` files in this folder, filtered by names (with or without ``bench_``)."""
    found = sorted(HERE.glob("bench_*.py"))
    if not names:
        return found
    wanted = {n.removeprefix("bench_").removesuffix(".py") for n in names}
    chosen = [p for p in found if p.stem.removeprefix("bench_") in wanted]
    missing = wanted - {p.stem.removeprefix("bench_") for p in chosen}
    if missing:
        known = [p.stem.removeprefix("bench_") for p in found]
        raise SystemExit(f"unknown benchmark(s) {sorted(missing)}; available: {known}")
    return chosen


def load(path: pathlib.Path):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine() -> dict:
    import numpy as np

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="introscope benchmarks")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    os.environ.setdefault("INTROSCOPE_PROGRESS", "0")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    failed = []
    combined: dict = {"when": stamp, "quick": args.quick, "machine": machine(), "benchmarks": {}}
    for path in discover(args.names):
        name = path.stem.removeprefix("bench_")
        print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
        start = time.perf_counter()
        try:
            module = load(path)
            run = getattr(module, "run", None)
            if not callable(run):
                raise TypeError(f"{path.name} does not define run(quick: bool) -> dict")
            result = run(quick=args.quick)
            if not isinstance(result, dict):
                raise TypeError(f"{path.name}: run() returned {type(result).__name__}, not dict")
        except Exception:
            traceback.print_exc()
            failed.append(name)
            result = {"error": traceback.format_exc(limit=3)}
        seconds = round(time.perf_counter() - start, 1)
        for line in result.get("summary", []):
            print(f"  {line}")
        print(f"   ({seconds} s)", flush=True)
        entry = {"when": stamp, "quick": args.quick, "seconds": seconds, "result": result}
        combined["benchmarks"][name] = entry
        write_json(RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json", entry)
    write_json(RESULTS_DIR / f"run-{stamp}.json", combined)
    print(f"results written to {RESULTS_DIR.relative_to(HERE.parent)}/")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
