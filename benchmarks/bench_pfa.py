"""PFA: introscope vs DNIKit 2.0 on the same responses (512 units, 100,000 samples, batches of 256).

Times the covariance pass (``PFA.introspect``) and ``get_recipe`` for every unit-selection
strategy with the default KL strategy, checks that both give the same recipes, and records peak
traced memory (tracemalloc, a second pass). DNIKit runs from ``.venv-dnikit/bin/python`` in a
subprocess on the same memory-mapped ``.npy`` file. Optionally (``--digits``) reports the digits
CNN's accuracy before and after pruning with a KL recipe, and after a short fine-tune.

``--sweep`` (and ``run``) also time ``PFA.introspect`` on a grid of shapes (units, batch size,
samples, float32/float64) against DNIKit 2.0 (one long-lived subprocess, rounds alternating
with introscope) and against one ``X.T @ X`` over the same data in memory, all on one BLAS
thread (two threads on the shared 2-core VM made the figures erratic).

    .venv/bin/python benchmarks/bench_pfa.py [--samples 100000] [--units 512] [--digits]
    .venv/bin/python benchmarks/bench_pfa.py --sweep-only [--quick]
    .venv/bin/python benchmarks/run.py pfa [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import dnikit_python  # noqa: E402

UNITS = ["L1Max", "L1Min", "AbsMax", "AbsMin"]
BATCH = 256
REPEAT = 1  # timed calls per round
ROUNDS = 3  # the machine is shared: rounds alternate introscope / DNIKit; best round is kept

_DNIKIT = r"""
import json, sys, time, tracemalloc, resource
import numpy as np
from dnikit.base import Batch
from dnikit.introspectors import PFA
data = np.load(sys.argv[1], mmap_mode="r")
def producer(bs):
    for i in range(0, len(data), bs):
        yield Batch({"r": np.array(data[i:i + bs])})
out = {"recipe_s": {}, "recipes": {}}
def best(f):
    times = []
    for _ in range(%(repeat)d):
        t = time.perf_counter(); value = f(); times.append(time.perf_counter() - t)
    return min(times), value
out["introspect_s"], pfa = best(lambda: PFA.introspect(producer, batch_size=%(batch)d))
for name in %(units)r:
    out["recipe_s"][name], recipes = best(
        lambda: pfa.get_recipe(unit_strategy=getattr(PFA.UnitSelectionStrategy, name)()))
    r = recipes["r"]
    out["recipes"][name] = [int(r.recommended_output_count), [int(u) for u in r.maximally_correlated_units]]
tracemalloc.start(); PFA.introspect(producer, batch_size=%(batch)d).get_recipe()
out["peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20; tracemalloc.stop()
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def make_responses(path: pathlib.Path, samples: int, units: int, dtype: str = "float32") -> None:
    """Correlated ReLU responses (rank ~64 plus noise) with a few dead units, float32."""
    rng = np.random.default_rng(1807)
    mix = rng.standard_normal((64, units)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(samples, units))
    for i in range(0, samples, 8192):
        n = min(8192, samples - i)
        z = rng.standard_normal((n, 64)).astype(np.float32)
        x = z @ mix + 0.3 * rng.standard_normal((n, units)).astype(np.float32)
        out[i : i + n] = np.maximum(x, 0)
    out[:, :8] = 0.0  # dead units
    out.flush()
    del out


def _best(f):  # noqa: ANN001, ANN202
    times, value = [], None
    for _ in range(REPEAT):
        t = time.perf_counter()
        value = f()
        times.append(time.perf_counter() - t)
    return min(times), value


def run_introscope(path: pathlib.Path) -> dict:
    import resource

    from introscope.base import Batch
    from introscope.introspectors import PFA
    from introscope.introspectors.pfa import PFACovarianceState

    data = np.load(path, mmap_mode="r")

    def producer(bs):
        for i in range(0, len(data), bs):
            yield Batch({"r": np.array(data[i : i + bs])})

    out: dict = {"recipe_s": {}, "recipes": {}}
    out["introspect_s"], pfa = _best(lambda: PFA.introspect(producer, batch_size=BATCH))
    # Where the introspect time goes: reading batches, the sums, the eigen-decomposition.
    out["read_batches_s"], _ = _best(lambda: [None for _ in producer(BATCH)])

    def sums_only() -> None:
        state = PFACovarianceState()
        for batch in producer(BATCH):
            state.update("r", batch.fields["r"])

    out["update_s"], _ = _best(sums_only)

    def sums_float64() -> None:
        state = PFACovarianceState(precision="float64")
        for batch in producer(BATCH):
            state.update("r", batch.fields["r"])

    out["update_f64_s"], _ = _best(sums_float64)
    cov = pfa.covariances["r"].covariances
    out["eigh_s"], _ = _best(lambda: np.linalg.eigh(cov))
    for name in UNITS:
        unit_strategy = getattr(PFA.UnitSelectionStrategy, name)()
        out["recipe_s"][name], recipes = _best(
            lambda u=unit_strategy: pfa.get_recipe(unit_strategy=u)
        )
        r = recipes["r"]
        out["recipes"][name] = [r.recommended_output_count, list(r.maximally_correlated_units)]
    tracemalloc.start()
    PFA.introspect(producer, batch_size=BATCH).get_recipe()
    out["peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_dnikit(path: pathlib.Path) -> dict | None:
    python = dnikit_python()
    if python is None:
        return None
    code = _DNIKIT % {"batch": BATCH, "units": UNITS, "repeat": REPEAT}
    proc = subprocess.run([str(python), "-c", code, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"DNIKit run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def digits_demo(fine_tune_epochs: int = 2) -> dict:
    """Digits CNN: accuracy before/after pruning with PFA KL recipes, and after a fine-tune."""
    import torch
    from introscope.introspectors import PFA
    from introscope.introspectors.pfa import prune_sequential
    from introscope.samples import digits_cnn_accuracy, load_digits_split, train_digits_cnn

    net = train_digits_cnn()
    # DigitsCNN registers its modules in forward order: the same function as a Sequential
    # (after adding the channel axis that its forward adds to (N, 8, 8) inputs).
    chain = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8)), *[m for _, m in net.named_children()]
    )
    chain.eval()
    (x_train, y_train), _ = load_digits_split()
    xt = torch.from_numpy(x_train)
    with torch.no_grad():
        assert torch.allclose(chain(xt[:64]), net(xt[:64]))
    # Responses after each ReLU (max-pooled over space for the convolutions).
    with PFA.monitor(chain, ["2", "4", "8"]) as monitor, torch.no_grad():
        for i in range(0, len(xt), 256):
            chain(xt[i : i + 256])
    recipes = monitor.result().get_recipe(strategy=PFA.Strategy.KL())
    plan = PFA.pruning_plan(recipes)
    pruned = prune_sequential(chain, plan, example_input=xt[:1])
    small = pruned.module
    out = {
        "kept": {k: f"{len(v.keep)}/{v.original_count}" for k, v in plan.layers.items()},
        "summary": pruned.summary(),
        "acc_before": digits_cnn_accuracy(chain),
        "acc_pruned": digits_cnn_accuracy(small),
    }
    small.train()
    opt = torch.optim.Adam(small.parameters(), lr=1e-3)
    yt = torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(0)
    for _ in range(fine_tune_epochs):
        order = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), 32):
            idx = order[s : s + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(small(xt[idx]), yt[idx]).backward()
            opt.step()
    small.eval()
    out["acc_fine_tuned"] = digits_cnn_accuracy(small)
    out["fine_tune_epochs"] = fine_tune_epochs
    return out


def _best_rounds(rounds: list[dict]) -> dict:
    """Per timing key, the fastest round; everything else from the first round."""
    out = dict(rounds[0])
    for key, value in rounds[0].items():
        if key.endswith("_s") and isinstance(value, dict):
            out[key] = {k: min(r[key][k] for r in rounds) for k in value}
        elif key.endswith("_s"):
            out[key] = min(r[key] for r in rounds)
    return out


def measure(samples: int, units: int, digits: bool) -> dict:
    """Run both libraries on the same responses; ``summary`` holds the lines to print."""
    os.environ.setdefault("INTROSCOPE_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "responses.npy"
        make_responses(path, samples, units)
        ours_rounds, ref_rounds = [], []
        for _ in range(ROUNDS):
            ours_rounds.append(run_introscope(path))
            ref_rounds.append(run_dnikit(path))
        ours = _best_rounds(ours_rounds)
        ref = None if ref_rounds[0] is None else _best_rounds(ref_rounds)
    result: dict = {"samples": samples, "units": units, "batch": BATCH, "introscope": ours}
    lines = [
        f"PFA {units} units, {samples:,} samples, batches of {BATCH} (best of {ROUNDS} alternating rounds)"
    ]
    lines.append(
        f"introscope: introspect {ours['introspect_s']:.2f}s (reading batches "
        f"{ours['read_batches_s']:.2f}s, sums {ours['update_s']:.2f}s [precision='float64': "
        f"{ours['update_f64_s']:.2f}s], eigh {ours['eigh_s'] * 1e3:.0f}ms), "
        + ", ".join(f"get_recipe[{k}] {v:.3f}s" for k, v in ours["recipe_s"].items())
        + f", peak traced {ours['peak_traced_mb']:.1f} MiB, maxrss {ours['maxrss_mb']:.0f} MiB"
    )
    if ref is not None:
        result["dnikit"] = ref
        same = {k: ours["recipes"][k] == ref["recipes"][k] for k in UNITS}
        result["same_recipes"] = same
        lines.append(
            f"DNIKit 2.0: introspect {ref['introspect_s']:.2f}s, "
            + ", ".join(f"get_recipe[{k}] {v:.3f}s" for k, v in ref["recipe_s"].items())
            + f", peak traced {ref['peak_traced_mb']:.1f} MiB, maxrss {ref['maxrss_mb']:.0f} MiB"
        )
        lines.append(f"same recipes (count and units): {same}")
        lines.append(
            f"KL keeps {ours['recipes']['L1Max'][0]} of {units} units; speed-up introspect "
            f"x{ref['introspect_s'] / ours['introspect_s']:.1f}, get_recipe[L1Max] "
            f"x{ref['recipe_s']['L1Max'] / ours['recipe_s']['L1Max']:.1f}"
        )
    else:
        lines.append("DNIKit 2.0: not available (.venv-dnikit missing)")
    if digits:
        result["digits"] = d = digits_demo()
        lines.append(
            f"digits CNN, KL recipe: kept {d['kept']}; {d['summary']}; test accuracy "
            f"{d['acc_before']:.3f} -> {d['acc_pruned']:.3f} pruned -> "
            f"{d['acc_fine_tuned']:.3f} after {d['fine_tune_epochs']} fine-tune epochs"
        )
    del result["introscope"]["recipes"]
    if "dnikit" in result:
        del result["dnikit"]["recipes"]
    result["summary"] = lines
    return result


# ---------------------------------------------------------------------------- shape sweep
#: (units, batch size, samples, dtype): corners of units 64-1,024, batches 32-1,024 and samples
#: 10,000-200,000 in both dtypes, plus the shape of issue 11 (384 x 60,000, batches of 500)
#: and the main benchmark's (512 x 100,000, batches of 256).
SWEEP = [
    (64, 32, 200_000, "float32"),
    (64, 1024, 10_000, "float32"),
    (64, 256, 100_000, "float64"),
    (128, 128, 200_000, "float32"),
    (256, 32, 50_000, "float32"),
    (256, 1024, 200_000, "float64"),
    (384, 500, 60_000, "float32"),
    (384, 500, 60_000, "float64"),
    (512, 256, 100_000, "float32"),
    (512, 64, 20_000, "float64"),
    (1024, 32, 10_000, "float32"),
    (1024, 1024, 10_000, "float64"),
    (1024, 256, 100_000, "float32"),
    (1024, 128, 50_000, "float64"),
]
QUICK_SWEEP = [(64, 32, 2_000, "float32"), (256, 500, 5_000, "float64")]
SWEEP_ROUNDS = 5
# Points whose first introspect takes under _SHORT_S seconds get _SHORT_ROUNDS rounds.
_SHORT_S, _SHORT_ROUNDS = 0.05, 40

# One DNIKit process serves every point: one JSON request per line on stdin, one answer per line.
_DNIKIT_SERVER = r"""
import json, sys, time
import numpy as np
from dnikit.base import Batch
from dnikit.introspectors import PFA
for line in sys.stdin:
    req = json.loads(line)
    data = np.load(req["path"], mmap_mode="r")
    def producer(bs):
        for i in range(0, len(data), bs):
            yield Batch({"r": np.array(data[i:i + bs])})
    t = time.perf_counter()
    PFA.introspect(producer, batch_size=req["batch"])
    print(json.dumps({"s": time.perf_counter() - t}), flush=True)
"""

_ONE_THREAD = {v: "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


class _DNIKitServer:
    def __init__(self, python: pathlib.Path) -> None:
        self.proc = subprocess.Popen(
            [str(python), "-c", _DNIKIT_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **_ONE_THREAD},
        )

    def introspect_s(self, path: pathlib.Path, batch: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": str(path), "batch": batch}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"DNIKit sweep process exited with {self.proc.wait()}")
        return json.loads(line)["s"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def sweep(points: list[tuple[int, int, int, str]], rounds: int = SWEEP_ROUNDS) -> dict:
    """``PFA.introspect`` vs DNIKit 2.0 vs one ``X.T @ X`` per shape (min of alternating rounds)."""
    # scipy.linalg.blas (PFA's syrk) loads scipy's own OpenBLAS, apart from numpy's: import it
    # before threadpool_limits, which limits the libraries loaded at that time only.
    import scipy.linalg.blas  # noqa: F401
    from threadpoolctl import threadpool_limits

    from introscope.base import Batch
    from introscope.introspectors import PFA

    os.environ.setdefault("INTROSCOPE_PROGRESS", "0")
    python = dnikit_python()
    server = None if python is None else _DNIKitServer(python)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
            for units, batch, samples, dtype in points:
                path = pathlib.Path(tmp) / f"r_{units}_{samples}_{dtype}.npy"
                make_responses(path, samples, units, dtype)
                data = np.load(path, mmap_mode="r")
                full = np.load(path)

                def producer(bs, data=data):  # noqa: ANN001, ANN202
                    for i in range(0, len(data), bs):
                        yield Batch({"r": np.array(data[i : i + bs])})

                ours, ref, gram, eigh, read = [], [], [], [], []
                todo = rounds
                while len(ours) < todo:
                    # Reading the batches (copies out of the memory map, Batch objects): part
                    # of both libraries' introspect.
                    t = time.perf_counter()
                    for _ in producer(batch):
                        pass
                    read.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    PFA.introspect(producer, batch_size=batch)
                    ours.append(time.perf_counter() - t)
                    if server is not None:
                        ref.append(server.introspect_s(path, batch))
                    t = time.perf_counter()
                    xtx = full.T @ full
                    gram.append(time.perf_counter() - t)
                    # Both libraries' introspect ends with the eigh of the (units, units)
                    # float64 covariance: a floor of its own at few samples per unit.
                    xtx = xtx.astype(np.float64)
                    t = time.perf_counter()
                    np.linalg.eigh(xtx)
                    eigh.append(time.perf_counter() - t)
                    if len(ours) == 1 and ours[0] < _SHORT_S:
                        # A few milliseconds: the minimum of more rounds, or the ratios
                        # are the VM's noise.
                        todo = max(rounds, _SHORT_ROUNDS)
                row = {
                    "units": units,
                    "batch": batch,
                    "samples": samples,
                    "dtype": dtype,
                    "introscope_s": min(ours),
                    "xtx_s": min(gram),
                    "eigh_s": min(eigh),
                    "read_s": min(read),
                }
                if ref:
                    row["dnikit_s"] = min(ref)
                    row["speedup"] = row["dnikit_s"] / row["introscope_s"]
                row["vs_xtx"] = row["introscope_s"] / row["xtx_s"]
                rows.append(row)
                del data, full
                path.unlink()
    finally:
        if server is not None:
            server.close()
    lines = [
        f"PFA.introspect sweep (min of {rounds} alternating rounds, {_SHORT_ROUNDS} under "
        f"{_SHORT_S * 1e3:.0f} ms; 1 BLAS thread): "
        "units batch samples dtype | introscope s | DNIKit s | DNIKit/introscope | X.T@X s | "
        "introscope/X.T@X | eigh s | reading batches s"
    ]
    for r in rows:
        ref_s = f"{r['dnikit_s']:.4f} | x{r['speedup']:.2f}" if "dnikit_s" in r else "- | -"
        lines.append(
            f"  {r['units']} {r['batch']} {r['samples']} {r['dtype']} | {r['introscope_s']:.4f} | "
            f"{ref_s} | {r['xtx_s']:.4f} | {r['vs_xtx']:.2f} | {r['eigh_s']:.4f} | "
            f"{r['read_s']:.4f}"
        )
    return {"points": rows, "summary": lines}


def run(quick: bool = False) -> dict:
    """Entry point for benchmarks/run.py."""
    out = measure(5_000, 128, digits=False) if quick else measure(100_000, 512, digits=True)
    out["sweep"] = sweep(QUICK_SWEEP if quick else SWEEP)
    out["summary"] = out["summary"] + out["sweep"].pop("summary")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--digits", action="store_true", help="also run the digits CNN demo")
    parser.add_argument("--sweep-only", action="store_true", help="only the shape sweep")
    parser.add_argument("--quick", action="store_true", help="with --sweep-only: tiny shapes")
    args = parser.parse_args(argv)
    if args.sweep_only:
        print("\n".join(sweep(QUICK_SWEEP if args.quick else SWEEP)["summary"]))
        return 0
    print("\n".join(measure(args.samples, args.units, args.digits)["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
