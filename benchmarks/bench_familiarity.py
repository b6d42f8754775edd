"""Familiarity: fit and scoring, introscope vs DNIKit 2.0 on the same seeded embeddings.

float32 embeddings drawn around 20 Gaussian blobs are written to a ``.npy`` file; each library
runs in its own fresh process (DNIKit under ``.venv-dnikit``) and reads the file batch by batch
with ``np.fromfile`` (nothing memory-mapped, so the page cache does not count as the process's
memory). Both fit the default-shaped mixture (5 components, diagonal covariances) with the same
``RandomState(0)``, so both run the same scikit-learn EM; scores of the first rows are compared.
introscope scores every row; DNIKit, whose scoring costs the same per row in every batch and
takes seconds per batch at D=512, is timed on the first 4,096 rows (D >= 512) or 20,000 rows and
compared per row. Peak memory is the rise of the resident set (VmHWM after ``/proc/self/clear_refs``) over the
resident set before each phase.

    .venv/bin/python benchmarks/bench_familiarity.py [--quick]
    .venv/bin/python benchmarks/run.py familiarity [--quick]
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
HEAD = 1000  # leading scores compared between the libraries

_WORKER = r"""
import sys, time
import numpy as np
lib, path, n_score, batch_size, cov = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if lib == "dnikit":
    from dnikit.base import Batch, pipeline
    from dnikit.introspectors import Familiarity, GMMCovarianceType
else:
    from introscope.base import Batch, pipeline
    from introscope.introspectors import Familiarity, GMMCovarianceType

# Both import these when they run; import them first so the phases below time only the work.
import scipy.linalg, scipy.special, scipy.stats, sklearn.mixture  # noqa: E401,F401
_warm = sklearn.mixture.GaussianMixture(2, random_state=0).fit(np.random.RandomState(0).randn(50, 2))

_arr = np.load(path, mmap_mode="r")
N, D = _arr.shape
DTYPE, OFFSET = _arr.dtype, _arr.offset
del _arr

def rows(count):
    def producer(bs):
        with open(path, "rb") as f:
            for i in range(0, count, bs):
                m = min(bs, count - i)
                f.seek(OFFSET + i * D * DTYPE.itemsize)
                yield Batch({"emb": np.fromfile(f, dtype=DTYPE, count=m * D).reshape(m, D)})
    return producer

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status()["VmRSS"]

strategy = Familiarity.Strategy.GMM(
    covariance_type=getattr(GMMCovarianceType, cov), _random_state=np.random.RandomState(0))
base = reset_peak()
t = time.perf_counter()
fam = Familiarity.introspect(rows(N), strategy=strategy, batch_size=batch_size)
fit_s = time.perf_counter() - t
fit_peak = status()["VmHWM"] - base

scores = np.empty(n_score)
base = reset_peak()
t = time.perf_counter()
seen = 0
for b in pipeline(rows(n_score), fam)(batch_size):
    results = b.metadata[fam.meta_key]["emb"]
    scores[seen:seen + len(results)] = [r.score for r in results]
    seen += len(results)
score_s = time.perf_counter() - t
score_peak = status()["VmHWM"] - base
assert seen == n_score
emit({"fit_s": fit_s, "fit_peak_mb": fit_peak / 2**20, "score_s": score_s,
      "score_peak_mb": score_peak / 2**20, "n_score": n_score,
      "head": scores[:%(head)d].tolist()})
"""


def make_embeddings(path: pathlib.Path, samples: int, dims: int, seed: int = 8) -> None:
    """float32 rows around 20 blobs with per-blob scales, written block by block."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(20, dims)).astype(np.float32)
    scales = rng.uniform(0.5, 1.5, size=(20, dims)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(samples, dims))
    for i in range(0, samples, 16384):
        n = min(16384, samples - i)
        pick = rng.integers(0, 20, size=n)
        noise = rng.standard_normal((n, dims), dtype=np.float32)
        out[i : i + n] = centres[pick] + scales[pick] * noise
    out.flush()
    del out


def measure(
    path: pathlib.Path,
    n_score: int,
    n_score_dnikit: int,
    cov: str = "DIAG",
    *,
    dnikit_first: bool = False,
) -> dict:
    """One shape: both libraries, each in a fresh process."""
    script = _WORKER % {"head": HEAD}
    python = dnikit_python()

    def ref_run() -> dict:
        args = ["dnikit", str(path), str(n_score_dnikit), str(BATCH), cov]
        return run_script(python, script, args, timeout=5400)

    ref = ref_run() if python is not None and dnikit_first else None
    ours = run_script(
        INTROSCOPE_PYTHON,
        script,
        ["introscope", str(path), str(n_score), str(BATCH), cov],
        timeout=5400,
    )
    out: dict = {"introscope": {k: v for k, v in ours.items() if k != "head"}}
    if python is None:
        out["dnikit"] = None
        return out
    if ref is None:
        ref = ref_run()
    out["dnikit"] = {k: v for k, v in ref.items() if k != "head"}
    a, b = np.array(ours["head"]), np.array(ref["head"])
    m = min(len(a), len(b))
    out["max_rel_score_diff"] = float(np.max(np.abs(a[:m] - b[:m]) / np.abs(b[:m])))
    out["max_abs_score_diff"] = float(np.max(np.abs(a[:m] - b[:m])))
    per_row_ours = ours["score_s"] / ours["n_score"]
    per_row_ref = ref["score_s"] / ref["n_score"]
    out["score_speedup"] = per_row_ref / per_row_ours
    out["fit_speedup"] = ref["fit_s"] / ours["fit_s"]
    return out


def run(
    quick: bool = False, shapes: list[tuple[int, int]] | None = None, dnikit_first: bool = False
) -> dict:
    if shapes:
        main_shape, sweep = shapes[0], shapes[1:]
    elif quick:
        main_shape, sweep = (4000, 64), [(2000, 32), (2000, 128)]
    else:
        main_shape = (100_000, 512)
        sweep = [(10_000, 32), (10_000, 128), (10_000, 512), (100_000, 32), (100_000, 128)]
    results: dict = {"batch_size": BATCH, "shapes": {}}
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, d in [main_shape, *sweep]:
            path = pathlib.Path(tmp) / f"emb_{n}x{d}.npy"
            make_embeddings(path, n, d)
            # DNIKit's scoring costs the same per row in every batch and is slow at large D
            # (seconds per batch of 1024 at D=512): it is timed on the first rows only and
            # compared per row.
            res = measure(path, n, min(n, 4096 if d >= 512 else 20_000), dnikit_first=dnikit_first)
            results["shapes"][f"{n}x{d}"] = res
            path.unlink()
            i = res["introscope"]
            line = (
                f"familiarity {n}x{d}: introscope fit {i['fit_s']:.2f} s (peak +"
                f"{i['fit_peak_mb']:.0f} MiB), score {i['score_s']:.2f} s"
            )
            if res["dnikit"] is not None:
                r = res["dnikit"]
                line += (
                    f" | DNIKit fit {r['fit_s']:.2f} s (peak +{r['fit_peak_mb']:.0f} MiB), score "
                    f"{r['score_s']:.2f} s on {r['n_score']} rows | scoring {res['score_speedup']:.0f}x"
                    f", fit {res['fit_speedup']:.2f}x, max rel score diff "
                    f"{res['max_rel_score_diff']:.1e} (abs {res['max_abs_score_diff']:.1e})"
                )
            else:
                line += " | DNIKit not available (.venv-dnikit missing): no comparison"
            summary.append(line)
            print(line, file=sys.stderr, flush=True)
    results["summary"] = summary
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shape", nargs=2, type=int, action="append", metavar=("N", "D"))
    parser.add_argument("--dnikit-first", action="store_true", help="run DNIKit before introscope")
    args = parser.parse_args()
    shapes = [tuple(s) for s in args.shape] if args.shape else None
    out = run(quick=args.quick, shapes=shapes, dnikit_first=args.dnikit_first)
    print(json.dumps({k: v for k, v in out.items() if k != "summary"}, indent=1))
    print("\n".join(out["summary"]))


if __name__ == "__main__":
    main()
