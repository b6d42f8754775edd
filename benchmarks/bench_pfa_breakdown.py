"""Where ``PFA.introspect``'s time goes at the sweep's closest points, in one process.

The sweep (``bench_pfa.py``) compares whole calls with DNIKit 2.0 in another process. This
breaks one call down on the same responses (``bench_pfa.make_responses``: ReLU units, 8 of them
dead), one BLAS thread, each figure the minimum over many repeats:

- per block: numpy's ``X.T @ X`` (one syrk), introscope's column sums and DNIKit's
  ``np.sum(x, axis=0)``, one ``PFACovarianceState.update`` after the first (where batches are
  staged, as at 384 units, that is the copy into the staging block; its syrk comes once per
  block of staging rows, in a later update), and the exact dead-unit test (the float32 Gram
  product of a block with dead units minus that of the same block with those columns made
  live; below the timing noise it can come out negative);
- per call: the final ``eigvalsh`` (introscope) and ``eigh`` (DNIKit), ``finalize`` of a filled
  state, ``PFA.introspect`` over batches already in memory, and a bare numpy loop doing DNIKit's
  arithmetic (column sums, ``x.T.dot(x)`` added to float64, ``eigh`` of the covariance) with
  none of its pipeline: the floor DNIKit's own code sits on.

    .venv/bin/python benchmarks/bench_pfa_breakdown.py
    .venv/bin/python benchmarks/run.py pfa_breakdown [--quick]
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_pfa import make_responses  # noqa: E402

#: (units, batch size, samples): the two points of the sweep closest to DNIKit (float32).
POINTS = [(64, 1024, 10_000), (384, 500, 60_000)]
QUICK_POINTS = [(64, 1024, 4_096)]


def _min_us(f, repeats: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e6


def _point(units: int, batch: int, samples: int, repeats: int) -> dict:
    from introscope.base import Batch
    from introscope.introspectors import PFA
    from introscope.introspectors.pfa._field_sums import FieldSums
    from introscope.introspectors.pfa._sums_math import column_sums

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "r.npy"
        make_responses(path, samples, units)
        data = np.load(path)
    blocks = [np.ascontiguousarray(data[i : i + batch]) for i in range(0, samples, batch)]
    x = blocks[1]
    live = x.copy()
    live[:, :8] = 1.0  # the dead columns made live: no zero on the Gram diagonal
    buf = np.empty((units, units), np.float32)
    out = {"units": units, "batch": batch, "samples": samples, "blocks": len(blocks)}

    out["syrk_us"] = _min_us(lambda: np.matmul(x.T, x, out=buf), repeats)
    out["column_sums_us"] = _min_us(lambda: column_sums(x), repeats)
    out["np_sum_us"] = _min_us(lambda: np.sum(x, axis=0), repeats)
    state = PFA.accumulator()
    state.update("r", blocks[0])
    out["update_us"] = _min_us(lambda: state.update("r", x), repeats)
    sums = FieldSums(units)
    sums.update(blocks[0])
    dead = _min_us(lambda: sums._gram(x), repeats)
    out["dead_unit_test_us"] = dead - _min_us(lambda: sums._gram(live), repeats)

    cov = np.cov(data.T.astype(np.float64))
    out["eigvalsh_us"] = _min_us(lambda: np.linalg.eigvalsh(cov), repeats)
    out["eigh_us"] = _min_us(lambda: np.linalg.eigh(cov), repeats)

    def filled() -> object:
        acc = PFA.accumulator()
        for b in blocks:
            acc.update("r", b)
        return acc

    states = [filled() for _ in range(repeats)]
    out["finalize_us"] = _min_us(lambda: states.pop().finalize(), repeats)

    def producer(bs: int):  # noqa: ANN202 - the batches are in memory: no reading cost
        for b in blocks:
            yield Batch({"r": b})

    def dnikit_arithmetic() -> None:
        total, outer, count = np.zeros(units), np.zeros((units, units)), 0
        for b in producer(batch):
            r = b.fields["r"]
            count += len(r)
            total += np.sum(r, axis=0)
            outer += r.T.dot(r)
        mean = total / count
        np.linalg.eigh(outer / count - np.outer(mean, mean))

    ours, bare = [], []
    for _ in range(repeats):  # alternating, so both see the same machine
        t = time.perf_counter()
        PFA.introspect(producer, batch_size=batch)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        dnikit_arithmetic()
        bare.append(time.perf_counter() - t)
    out["introspect_us"] = min(ours) * 1e6
    out["dnikit_arithmetic_us"] = min(bare) * 1e6
    out["introspect_over_arithmetic"] = min(ours) / min(bare)
    return out


def run(quick: bool = False) -> dict:
    """Entry point for benchmarks/run.py."""
    import scipy.linalg.blas  # noqa: F401 - loaded before the thread limit (see bench_pfa)
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("INTROSCOPE_PROGRESS", "0")
    repeats = 20 if quick else 300
    with threadpool_limits(1):
        points = [_point(*p, repeats) for p in (QUICK_POINTS if quick else POINTS)]
    lines = [
        f"PFA breakdown (min of {repeats}, 1 BLAS thread, float32): per block: syrk | column "
        "sums (introscope / np.sum) | update | dead-unit test; per call: eigvalsh / eigh | "
        "finalize | introspect | DNIKit's arithmetic in bare numpy | ratio (us)"
    ]
    for p in points:
        lines.append(
            f"  {p['units']} x {p['samples']} b{p['batch']} ({p['blocks']} blocks): "
            f"{p['syrk_us']:.1f} | {p['column_sums_us']:.1f} / {p['np_sum_us']:.1f} | "
            f"{p['update_us']:.1f} | {p['dead_unit_test_us']:.1f}; "
            f"{p['eigvalsh_us']:.0f} / {p['eigh_us']:.0f} | {p['finalize_us']:.0f} | "
            f"{p['introspect_us']:.0f} | {p['dnikit_arithmetic_us']:.0f} | "
            f"x{p['introspect_over_arithmetic']:.2f}"
        )
    return {"points": points, "summary": lines}


if __name__ == "__main__":
    print("\n".join(run(quick="--quick" in sys.argv)["summary"]))
