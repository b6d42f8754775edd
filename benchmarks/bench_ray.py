"""Ray Data: single-process driver vs ``introscope.ray.introspect`` with 1 and 2 workers.

Two models (the bundled digits CNN on 8x8 images, a ResNet-style CNN on 3x32x32), one pass of
IUA + PFA over their ReLU responses max-pooled over space ((N, C) per response). Reported:

- samples per second of the single-process driver (``accumulate`` over a pipeline), with torch
  on 1 thread (as each Ray worker) and on the machine's default threads;
- samples per second with Ray on a local cluster (``init_local(num_cpus=2)``), 1 and 2 actors,
  timed end to end (actor start, model load, merges included), and the ratios: Ray's overhead
  on 1 worker (single / Ray-1) and the 2-worker speed-up (Ray-2 / Ray-1);
- bytes shipped per partial state (one per block) for IUA and PFA, and merges done;
- numbers checked identical to the single-process run (IUA exactly, PFA covariances relative).

Plus an estimate of what a 64-node ImageNet-1k run with ResNet-50 ships and merges (no run).

    .venv/bin/python benchmarks/bench_ray.py [--quick]
    INTROSCOPE_RAY_ADDRESS=auto INTROSCOPE_RAY_WORKERS=1,8,64 .venv/bin/python benchmarks/run.py ray
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

BLOCK_ROWS = 1024
BATCH = 256
#: Ray worker counts to time; the first must be 1 (the overhead reference).
WORKERS = tuple(int(w) for w in os.environ.get("INTROSCOPE_RAY_WORKERS", "1,2").split(","))


def _resnetish():  # noqa: ANN202
    """A small ResNet-style CNN for 3x32x32 inputs (stem and 6 basic blocks, 32-128 channels)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu2 = nn.ReLU()
            self.shortcut = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu1(self.bn1(self.conv1(x)))
            return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        plan = [(32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
        layers += [Block(cin, cout, stride) for cin, cout, stride in plan]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
        return nn.Sequential(*layers).eval()


def digits_model():  # noqa: ANN201
    """The digits CNN as an introscope Model, torch on one thread (what one worker gets)."""
    import torch
    from introscope.samples import load_digits_cnn

    torch.set_num_threads(1)
    return load_digits_cnn(seed=0)


def resnet_model():  # noqa: ANN201
    """The ResNet-style CNN as an introscope Model, torch on one thread."""
    import torch
    from introscope.torch import load_torch_model_from_memory

    torch.set_num_threads(1)
    return load_torch_model_from_memory(
        _resnetish(), example_input=np.zeros((2, 3, 32, 32), np.float32)
    )


def _inputs(kind: str, samples: int) -> np.ndarray:
    if kind == "digits":
        from introscope.samples import load_digits_split

        (x, _), _ = load_digits_split()
        reps = math.ceil(samples / len(x))
        return np.ascontiguousarray(np.tile(x, (reps, 1, 1))[:samples])
    rng = np.random.default_rng(0)
    return rng.standard_normal((samples, 3, 32, 32), dtype=np.float32)


def _relu_names(model: Any) -> list[str]:
    """The convolutional ReLU outputs (N, C, H, W) of a model."""
    infos = model.response_infos
    return [n for n, i in infos.items() if i.layer.typename == "ReLU" and len(i.shape) == 4]


def _single(factory, x: np.ndarray, responses: list[str], threads: int):  # noqa: ANN001, ANN202
    import torch
    from introscope.base import Batch, pipeline
    from introscope.introspectors import IUA, PFA
    from introscope.introspectors._accumulator import accumulate
    from introscope.processors import Pooler

    model = factory()
    torch.set_num_threads(threads)

    def produce(batch_size: int):
        for s in range(0, len(x), batch_size):
            yield Batch({"x": x[s : s + batch_size]})

    producer = pipeline(produce, model(responses), Pooler(dim=(2, 3), method=Pooler.Method.MAX))
    start = time.perf_counter()
    iua, pfa = accumulate(producer, IUA(), PFA.accumulator(), batch_size=BATCH)
    return time.perf_counter() - start, iua, pfa


def _on_ray(ray, factory, x: np.ndarray, responses: list[str], workers: int):  # noqa: ANN001, ANN202
    import introscope.ray as iray
    from introscope.introspectors import IUA, PFA
    from introscope.processors import Pooler

    blocks = max(2, len(x) // BLOCK_ROWS)
    ds = ray.data.from_numpy(x).rename_columns({"data": "x"}).repartition(blocks).materialize()
    start = time.perf_counter()
    (iua, pfa), stats = iray.introspect(
        ds,
        [IUA, PFA],
        model=factory,
        responses=responses,
        batch_size=BATCH,
        concurrency=workers,
        stages=[Pooler(dim=(2, 3), method=Pooler.Method.MAX)],
        return_stats=True,
    )
    return time.perf_counter() - start, iua, pfa, stats


def _same(iua_a, iua_b, pfa_a, pfa_b) -> dict:  # noqa: ANN001
    iua_equal = all(iua_a.results[n] == iua_b.results[n] for n in iua_b.results)
    rel = 0.0
    for name, ref in pfa_b.covariances.items():
        cov = pfa_a.covariances[name].covariances
        rel = max(
            rel, float(np.max(np.abs(cov - ref.covariances)) / np.max(np.abs(ref.covariances)))
        )
    recipes_a, recipes_b = pfa_a.get_recipe(), pfa_b.get_recipe()
    recipes_equal = all(
        recipes_a[n].recommended_output_count == recipes_b[n].recommended_output_count
        and list(recipes_a[n].maximally_correlated_units)
        == list(recipes_b[n].maximally_correlated_units)
        for n in recipes_b
    )
    return {"iua_equal": iua_equal, "pfa_cov_max_rel": rel, "pfa_recipes_equal": recipes_equal}


def bench_model(ray, kind: str, samples: int) -> dict:  # noqa: ANN001
    factory = digits_model if kind == "digits" else resnet_model
    x = _inputs(kind, samples)
    responses = _relu_names(factory())
    t1, iua_ref, pfa_ref = _single(factory, x, responses, threads=1)
    tn, _, _ = _single(factory, x, responses, threads=os.cpu_count() or 1)
    out: dict[str, Any] = {
        "samples": samples,
        "responses": len(responses),
        "single_1thread_sps": round(samples / t1),
        "single_default_threads_sps": round(samples / tn),
    }
    for workers in WORKERS:
        t, iua, pfa, stats = _on_ray(ray, factory, x, responses, workers)
        out[f"ray_{workers}_sps"] = round(samples / t)
        out[f"ray_{workers}_check"] = _same(iua, iua_ref, pfa, pfa_ref)
        out[f"ray_{workers}_blocks"] = stats.blocks
        out["iua_bytes_per_state"] = round(stats.bytes_per_merge(0))
        out["pfa_bytes_per_state"] = round(stats.bytes_per_merge(1))
        out["merges_per_introspector"] = stats.merges[0]
    out["ray1_overhead"] = round(out["single_1thread_sps"] / out["ray_1_sps"], 2)
    for workers in WORKERS[1:]:
        out[f"ray{workers}_over_ray1"] = round(out[f"ray_{workers}_sps"] / out["ray_1_sps"], 2)
    return out


def _resnet50_relu_shapes() -> list[tuple[int, int]]:
    """(channels, spatial positions) of ResNet-50's 49 ReLU outputs on 224x224 images."""
    shapes = [(64, 112 * 112)]
    size_in = 56
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            size_out = size_in // (stride if b == 0 else 1)
            shapes += [(width, size_in**2), (width, size_out**2), (4 * width, size_out**2)]
            size_in = size_out
    return shapes


def imagenet_estimate(nodes: int = 64, images: int = 1_281_167, block_rows: int = 1000) -> dict:
    """Bytes a ResNet-50 IUA (+channel view) and PFA (pooled ReLUs) run over ImageNet-1k ships.

    What is shipped depends on the number of blocks, not of nodes: each block sends one state
    per introspector to the driver.
    """
    shapes = _resnet50_relu_shapes()
    blocks = math.ceil(images / block_rows)
    # unit and channel counts (int64 in memory) travel in the smallest dtype that holds them
    count_bytes = np.dtype(np.min_scalar_type(block_rows)).itemsize
    iua_fixed = sum(count_bytes * (c * p + c) for c, p in shapes)
    per_sample = sum(
        np.dtype(np.min_scalar_type(c * p)).itemsize + np.dtype(np.min_scalar_type(c)).itemsize
        for c, p in shapes
    )
    pfa_fixed = sum(8 * (c * (c + 1) // 2 + 2 * c) + 16 for c, _ in shapes)
    iua_total = blocks * iua_fixed + images * per_sample
    pfa_total = blocks * pfa_fixed
    return {
        "nodes": nodes,
        "images": images,
        "block_rows": block_rows,
        "blocks": blocks,
        "relu_responses": len(shapes),
        "units": sum(c * p for c, p in shapes),
        "iua_bytes_per_block": iua_fixed + block_rows * per_sample,
        "iua_total_gib": round(iua_total / 2**30, 1),
        "iua_final_state_mib": round(
            (sum(8 * (c * p + c) for c, p in shapes) + images * per_sample) / 2**20, 1
        ),
        "pfa_bytes_per_block": pfa_fixed,
        "pfa_total_gib": round(pfa_total / 2**30, 1),
        "merges_per_introspector": blocks - 1,
        "tree_depth": math.ceil(math.log2(blocks)),
        "responses_float32_tib": round(images * sum(c * p for c, p in shapes) * 4 / 2**40, 1),
    }


def run(quick: bool = False) -> dict:
    import introscope.ray as iray
    import ray

    # The model factories defined here travel to the workers by value: this file is not
    # importable there (run.py loads it without registering it in sys.modules, and cloudpickle
    # then pickles by value on its own).
    module = sys.modules.get(__name__)
    if module is not None and __name__ != "__main__":
        ray.cloudpickle.register_pickle_by_value(module)
    if ray.is_initialized():
        ray.shutdown()
    address = os.environ.get("INTROSCOPE_RAY_ADDRESS")
    if address:  # a running cluster (ray start --head ...), e.g. "auto" or "10.0.0.1:6379"
        ray.init(address=address, log_to_driver=False)
    else:
        iray.init_local(num_cpus=2, log_to_driver=False)
    try:
        # quick: the digits CNN only (each Ray call pays seconds of actor start-up)
        sizes = {"digits": 2048} if quick else {"digits": 40960, "resnet": 2048}
        out: dict[str, Any] = {k: bench_model(ray, k, n) for k, n in sizes.items()}
    finally:
        ray.shutdown()
    out["imagenet_estimate"] = imagenet_estimate()
    out["imagenet_estimate_10k_blocks"] = imagenet_estimate(block_rows=10_000)
    summary = []
    for kind in sizes:
        r = out[kind]
        summary.append(
            f"{kind}: single {r['single_1thread_sps']} samples/s (1 thread), "
            f"{r['single_default_threads_sps']} (default threads); Ray 1 worker "
            f"{r['ray_1_sps']} ({r['ray1_overhead']}x overhead), "
            + ", ".join(
                f"{w} workers {r[f'ray_{w}_sps']} ({r[f'ray{w}_over_ray1']}x of 1 worker)"
                for w in WORKERS[1:]
            )
            + f"; bytes per state IUA {r['iua_bytes_per_state']}, PFA "
            f"{r['pfa_bytes_per_state']}; identical: {r[f'ray_{WORKERS[-1]}_check']}"
        )
    for key in ("imagenet_estimate", "imagenet_estimate_10k_blocks"):
        e = out[key]
        summary.append(
            f"ImageNet-1k ResNet-50 estimate ({e['blocks']} blocks of {e['block_rows']}): IUA "
            f"ships {e['iua_total_gib']} GiB, PFA {e['pfa_total_gib']} GiB, vs "
            f"{e['responses_float32_tib']} TiB of float32 responses"
        )
    out["summary"] = summary
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    result = run(quick=parser.parse_args().quick)
    print(json.dumps(result, indent=2))
