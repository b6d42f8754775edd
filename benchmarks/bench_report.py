"""DatasetReport end to end: introscope vs DNIKit 2.0 on the same labelled embeddings.

20,000 x 256 float32 embeddings around class centres (2 % planted near-copies), with three label
dimensions (10 classes, 3 sources, a long-tailed "group" of which only some values reach
``split_familiarity_min``). Each library runs ``DatasetReport.introspect`` in its own fresh
process on the same ``.npy`` file, with the same configuration: the default components (PCA to 40
dimensions, Slope duplicates, GMM familiarity seeded with 0, overall and per label value; UMAP
projection) and the same without projection. Recorded: wall time, growth of the peak resident
set during the call (ru_maxrss after minus before), how often the producer was called (passes)
and how many batches it yielded.

UMAP's numba kernels compile once per process, so each run says what ran before the timed call:
``none`` (the first report of a fresh process: what one ``introscope analyze`` or notebook run
costs), ``small`` (a 400-row report first: compiles UMAP's layout but not its neighbour search,
which umap-learn skips below 4,096 rows) or ``full`` (a report of the same shape on other data
first: everything compiled, the steady state of a long-lived process; its peak-RSS growth is ~0
because the warm-up set the peak).

    .venv/bin/python benchmarks/bench_report.py [--quick] [--samples 20000] [--dims 256]
    .venv/bin/python benchmarks/run.py report [--quick]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import INTROSCOPE_PYTHON, dnikit_python, run_script  # noqa: E402

BATCH = 1024

SCRIPT = r"""
import importlib, json, resource, sys, time
import numpy as np

lib, data_path, labels_path, config_name, warmup = sys.argv[1:6]
base = importlib.import_module(lib + ".base")
intr = importlib.import_module(lib + ".introspectors")
Batch = base.Batch
data = np.load(data_path)
with open(labels_path) as f:
    labels = json.load(f)
ids = [f"images/{i:06d}.png" for i in range(len(data))]

class Producer:
    def __init__(self, data, ids, labels):
        self.data, self.ids, self.labels = data, ids, labels
        self.calls = 0
        self.batches = 0
    def __call__(self, batch_size):
        self.calls += 1
        for start in range(0, len(self.data), batch_size):
            stop = start + batch_size
            self.batches += 1
            builder = Batch.Builder(fields={"embedding": np.array(self.data[start:stop])})
            builder.metadata[Batch.StdKeys.IDENTIFIER] = self.ids[start:stop]
            builder.metadata[Batch.StdKeys.LABELS] = {k: v[start:stop] for k, v in self.labels.items()}
            yield builder.make_batch()

def config():
    kwargs = {"familiarity": intr.Familiarity.Strategy.GMM(_random_state=0)}
    if config_name == "no_projection":
        kwargs["projection"] = None
    else:
        kwargs["projection"] = intr.DimensionReduction.Strategy.UMAP(2)
    return intr.ReportConfig(**kwargs)

# warm-up on other data: numba compiles UMAP's kernels once per process
if warmup != "none":
    rows = 400 if warmup == "small" else len(data)
    rng = np.random.default_rng(1)
    other = (data[rng.permutation(len(data))[:rows]] + rng.normal(size=(rows, data.shape[1]))).astype(np.float32)
    other_labels = {k: v[:rows] for k, v in labels.items()}
    intr.DatasetReport.introspect(Producer(other, ids[:rows], other_labels), config=config(), batch_size=%(batch)d)

producer = Producer(data, ids, labels)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
report = intr.DatasetReport.introspect(producer, config=config(), batch_size=%(batch)d)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frame = report.data
emit({
    "seconds": seconds,
    "peak_rss_growth_mib": (after - before) / 1024,
    "producer_calls": producer.calls,
    "batches_pulled": producer.batches,
    "columns": [str(c) for c in frame.columns],
    "rows": int(len(frame)),
    "duplicate_clusters": int(frame["duplicates_embedding"].max() + 1),
    "in_duplicates": int((frame["duplicates_embedding"] >= 0).sum()),
})
""".replace("%(batch)d", str(BATCH))


def make_data(n: int, dims: int, seed: int = 0) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Embeddings around 10 class centres with 2 % near-copies, and three label dimensions."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(10, size=n, p=np.linspace(2, 1, 10) / np.linspace(2, 1, 10).sum())
    centres = rng.normal(scale=3.0, size=(10, dims))
    data = (centres[classes] + rng.normal(size=(n, dims))).astype(np.float32)
    copies = rng.choice(n, size=n // 50, replace=False)
    data[copies] = data[rng.choice(n, size=len(copies))] + rng.normal(
        scale=1e-3, size=(len(copies), dims)
    ).astype(np.float32)
    # long tail: values 0, 1, 2 are common, the rest rare (under 50 elements each at n=20,000)
    group = np.minimum(rng.zipf(1.6, size=n) - 1, 99)
    labels = {
        "class": [f"class {c}" for c in classes],
        "source": list(rng.choice(["train", "test", ""], size=n, p=[0.6, 0.3, 0.1])),
        "group": [str(g) for g in group],
    }
    return data, {k: [str(v) for v in vals] for k, vals in labels.items()}


def run(
    quick: bool = False,
    samples: int | None = None,
    dims: int | None = None,
    configs: tuple[str, ...] = ("default", "no_projection"),
    concurrent: bool = True,
    warmups: tuple[str, ...] = ("none", "full"),
) -> dict:
    """The report benchmark; ``quick`` uses 2,000 x 64 and the report without a projection
    only (UMAP's first call compiles with numba for ~30 s in each library, which would break the
    "quick is well under a minute" rule). With ``concurrent`` both libraries run at the same
    time (each in its own process), so a loaded machine slows both alike."""
    if quick and configs == ("default", "no_projection"):
        configs = ("no_projection",)
    n = samples or (2000 if quick else 20000)
    d = dims or (64 if quick else 256)
    data, labels = make_data(n, d)
    out: dict = {"samples": n, "dims": d, "batch": BATCH, "concurrent": concurrent, "configs": {}}
    dnikit = dnikit_python()
    with tempfile.TemporaryDirectory() as tmp:
        data_path = pathlib.Path(tmp) / "data.npy"
        labels_path = pathlib.Path(tmp) / "labels.json"
        np.save(data_path, data)
        labels_path.write_text(json.dumps(labels))
        cases = [
            (name, warmup)
            for name in configs
            for warmup in (warmups if name == "default" else ("small",))
        ]
        for name, warmup in cases:
            args = [str(data_path), str(labels_path), name, warmup]
            jobs = {"introscope": (INTROSCOPE_PYTHON, ["introscope", *args])}
            if dnikit is not None:
                jobs["dnikit"] = (dnikit, ["dnikit", *args])
            if concurrent:
                # both at once: on a shared machine they then see the same load
                with ThreadPoolExecutor(len(jobs)) as pool:
                    futures = {
                        k: pool.submit(run_script, p, SCRIPT, a) for k, (p, a) in jobs.items()
                    }
                    entry = {k: f.result() for k, f in futures.items()}
            else:
                entry = {k: run_script(p, SCRIPT, a) for k, (p, a) in jobs.items()}
            out["configs"][f"{name}/{warmup}"] = entry
    out["summary"] = summary(out)
    return out


def summary(out: dict) -> list[str]:
    how = "side by side" if out["concurrent"] else "one after the other"
    lines = [
        f"DatasetReport on {out['samples']} x {out['dims']} float32 with 3 label dimensions "
        f"(both libraries {how})"
    ]
    for name, entry in out["configs"].items():
        for lib in ("introscope", "dnikit"):
            if lib in entry:
                r = entry[lib]
                lines.append(
                    f"{name:20s} {lib:10s} {r['seconds']:7.2f} s, peak RSS +{r['peak_rss_growth_mib']:.0f} "
                    f"MiB, producer called {r['producer_calls']}x ({r['batches_pulled']} batches), "
                    f"{len(r['columns'])} columns, {r['in_duplicates']} rows in "
                    f"{r['duplicate_clusters']} duplicate clusters"
                )
        if "dnikit" in entry:
            ratio = entry["dnikit"]["seconds"] / entry["introscope"]["seconds"]
            lines.append(f"{name:20s} introscope is {ratio:.2f}x faster than DNIKit 2.0")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--dims", type=int)
    parser.add_argument("--configs", nargs="+", default=["default", "no_projection"])
    parser.add_argument("--sequential", action="store_true", help="one library after the other")
    parser.add_argument(
        "--warmups",
        nargs="+",
        default=["none", "full"],
        choices=["none", "small", "full"],
        help="what runs before the timed default report (see the module docstring)",
    )
    args = parser.parse_args()
    result = run(
        args.quick,
        args.samples,
        args.dims,
        tuple(args.configs),
        not args.sequential,
        tuple(args.warmups),
    )
    print(json.dumps({k: v for k, v in result.items() if k != "summary"}, indent=1))
    print("\n".join(result["summary"]))
