"""Duplicates: introscope vs DNIKit 2.0 on clustered vectors with planted near-copies.

Data: float32 vectors around 1,000 cluster centres (within-cluster spread 0.5 of the centres'
scale), 1 % of the rows replaced by near-copies of other rows (noise 1 % of the spread). Each
side runs ``Duplicates.introspect`` with its defaults (Slope threshold) in a fresh subprocess
reading the same memory-mapped ``.npy`` file in batches of 1,024, and reports wall time, peak
RSS (``ru_maxrss``; optional libraries imported before timing on both sides), the recall of the planted pairs (both members in one set), the number of
sets and the threshold. introscope's approximate neighbour search is also checked against exact
search: recall@10 over 2,000 random queries.

    .venv/bin/python benchmarks/bench_duplicates.py [--sizes 10000 30000 100000] [--dim 512]
    .venv/bin/python benchmarks/run.py duplicates [--quick]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import INTROSCOPE_PYTHON, dnikit_python, run_script  # noqa: E402

BATCH = 1024
CENTRES = 1000
PLANTED = 0.01

_COMMON = r"""
import resource, sys, time
import numpy as np
data = np.load(sys.argv[1], mmap_mode="r")
pairs = np.load(sys.argv[2])

class Recording:
    def __init__(self, inner):
        self.inner, self.values = inner, []
    def __call__(self, distances):
        value = self.inner(distances)
        self.values.append(float(value))
        return value

def producer(bs):
    for i in range(0, len(data), bs):
        yield Batch({"x": np.array(data[i:i + bs])})

def summary(sets, seconds, threshold):
    label = np.full(len(data), -1)
    for j, s in enumerate(sets):
        label[np.asarray(list(s.indices), dtype=np.int64)] = j
    a, b = label[pairs[:, 0]], label[pairs[:, 1]]
    return {
        "seconds": seconds,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "planted_recall": float(np.mean((a >= 0) & (a == b))),
        "sets": len(sets),
        "members": int((label >= 0).sum()),
        "largest_set": max((len(s.indices) for s in sets), default=0),
        "threshold": threshold,
    }
"""

_DNIKIT = (
    "from dnikit.base import Batch\nfrom dnikit.introspectors import Duplicates\n"
    + _COMMON
    + r"""
rec = Recording(Duplicates.ThresholdStrategy.Slope())
t = time.perf_counter()
dup = Duplicates.introspect(producer, batch_size=%(batch)d, threshold=rec)
seconds = time.perf_counter() - t
emit(summary(dup.results["x"], seconds, rec.values[0]))
"""
)

_INTROSCOPE = (
    "from introscope.base import Batch\nfrom introscope.introspectors import Duplicates\n"
    # introscope imports faiss and scipy's graph module lazily, DNIKit imports annoy and
    # scikit-learn with the package: import them before the clock starts on both sides.
    "import faiss, scipy.sparse.csgraph\n"
    + _COMMON
    + r"""
rec = Recording(Duplicates.ThresholdStrategy.Slope())
t = time.perf_counter()
dup = Duplicates.introspect(producer, batch_size=%(batch)d, threshold=rec)
seconds = time.perf_counter() - t
out = summary(dup.results["x"], seconds, rec.values[0])
out["neighbor_search"] = dup.neighbor_search["x"]
if %(check_recall)r:
    import faiss
    from introscope.introspectors.duplicates._duplicates import _column_norms, _normalised_f32
    from introscope.introspectors._knn import nearest_neighbors, recall_at_k
    raw = np.asarray(data)
    x = _normalised_f32(raw, _column_norms(raw))
    t = time.perf_counter()
    approx = nearest_neighbors(x, 10, "approximate")
    out["approx_search_s"] = time.perf_counter() - t
    q = np.sort(np.random.default_rng(0).choice(len(x), min(len(x), 2000), replace=False))
    _, truth = faiss.knn(x[q], x, 10)
    out["recall_at_10"] = recall_at_k(approx.indices[q], truth)
    out["recall_at_10_queries"] = len(q)
    out["approx_method"] = approx.method
emit(out)
"""
)


def make_data(folder: pathlib.Path, n: int, dim: int, seed: int = 0) -> tuple[str, str]:
    """Write the vectors (memory-mapped .npy) and the planted (source, copy) pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim)).astype(np.float32)
    path = folder / f"x_{n}_{dim}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    labels = rng.integers(0, CENTRES, n)
    for lo in range(0, n, 8192):
        hi = min(n, lo + 8192)
        noise = rng.standard_normal((hi - lo, dim)).astype(np.float32)
        out[lo:hi] = centres[labels[lo:hi]] + 0.5 * noise
    k = int(n * PLANTED)
    perm = rng.permutation(n)
    dst, src = np.sort(perm[:k]), perm[k : 2 * k]
    out[dst] = out[src] + 0.005 * rng.standard_normal((k, dim)).astype(np.float32)
    out.flush()
    del out
    pairs = folder / f"pairs_{n}.npy"
    np.save(pairs, np.stack([src, dst], axis=1))
    return str(path), str(pairs)


def run(quick: bool = False, sizes: list[int] | None = None, dim: int = 512) -> dict:
    """Sweep ``sizes`` (quick: 3,000 x 64); DNIKit first at each size, then introscope."""
    if sizes is None:
        sizes = [3000] if quick else [10_000, 30_000, 100_000]
    if quick:
        dim = 64
    dnikit = dnikit_python()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x_path, pairs_path = make_data(pathlib.Path(tmp), n, dim)
            row: dict = {"samples": n, "dim": dim}
            if dnikit is not None:
                row["dnikit"] = run_script(
                    dnikit, _DNIKIT % {"batch": BATCH}, [x_path, pairs_path], timeout=3600
                )
            row["introscope"] = run_script(
                INTROSCOPE_PYTHON,
                _INTROSCOPE % {"batch": BATCH, "check_recall": True},
                [x_path, pairs_path],
            )
            if "dnikit" in row:
                d, i = row["dnikit"], row["introscope"]
                row["speedup"] = round(d["seconds"] / i["seconds"], 2)
                row["memory_ratio"] = round(d["maxrss_mb"] / i["maxrss_mb"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    for row in rows:
        i = row["introscope"]
        line = (
            f"{row['samples']:>7} x {row['dim']}: introscope {i['seconds']:.1f} s "
            f"({i['neighbor_search']}), {i['maxrss_mb']:.0f} MiB, planted recall "
            f"{i['planted_recall']:.3f}, recall@10 {i['recall_at_10']:.3f} ({i['approx_method']})"
        )
        if "dnikit" in row:
            d = row["dnikit"]
            line += (
                f"; DNIKit {d['seconds']:.1f} s, {d['maxrss_mb']:.0f} MiB, planted recall "
                f"{d['planted_recall']:.3f}; speedup {row['speedup']}x (goal >= 5x at 100,000)"
            )
        summary.append(line)
    if dnikit is None:
        summary.append("DNIKit 2.0 venv not found: no comparison (make dnikit-venv)")
    return {
        "name": "duplicates",
        "summary": summary,
        "quick": quick,
        "batch_size": BATCH,
        "centres": CENTRES,
        "planted_fraction": PLANTED,
        "dnikit_available": dnikit is not None,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick, args.sizes, args.dim)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
