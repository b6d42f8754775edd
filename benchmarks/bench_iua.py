"""IUA: introscope vs DNIKit 2.0 on identical responses, the count_nonzero floor, memory, monitor.

Four ReLU-like layers shaped 64x32x32, 128x16x16, 256x8x8 and 512 (float32), 2,048 samples in
batches of 128, saved to .npy and loaded by each library in its own process (DNIKit from
``.venv-dnikit``). Reports, in one run:

- introspect time of both and the throughput ratio introscope / DNIKit;
- introscope's time over one ``numpy.count_nonzero`` pass over the same batches (the floor);
- peak traced memory (tracemalloc) of both at N and 8N samples, streamed from a fixed pool;
- the PyTorch monitor on a ResNet-style CNN on CPU: forward time with / without the monitor.

    .venv/bin/python benchmarks/bench_iua.py [--quick]
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

LAYERS = {"layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8), "fc": (512,)}
BATCH = 128


def make_arrays(folder: pathlib.Path, samples: int, seed: int = 0) -> None:
    """ReLU outputs with a per-channel bias (some channels mostly dead), written chunk by chunk."""
    rng = np.random.default_rng(seed)
    for name, shape in LAYERS.items():
        out = np.lib.format.open_memmap(
            folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(samples, *shape)
        )
        bias = rng.uniform(-2.5, 1.0, size=shape[0]).astype(np.float32)
        bias = bias.reshape((-1,) + (1,) * (len(shape) - 1))
        for start in range(0, samples, 256):
            chunk = rng.standard_normal((min(256, samples - start), *shape), dtype=np.float32)
            np.maximum(chunk + bias, 0.0, out=out[start : start + len(chunk)])
        out.flush()
        del out


# Runs under either interpreter: argv = library, data folder, repeats.
TIME_SCRIPT = f"""
import sys, time
import numpy as np
LAYERS = {list(LAYERS)!r}
BATCH = {BATCH}
lib, folder, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
if lib == "dnikit":
    from dnikit.base import Batch
    from dnikit.introspectors import IUA
else:
    from introscope.base import Batch
    from introscope.introspectors import IUA
arrays = {{n: np.load(f"{{folder}}/{{n}}.npy") for n in LAYERS}}
n = len(arrays[LAYERS[0]])

def producer(bs):
    for s in range(0, n, bs):
        yield Batch({{k: v[s:s + bs] for k, v in arrays.items()}})

def best(fn):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return min(times)

box = {{}}
def analyse():
    box["iua"] = IUA.introspect(producer, batch_size=BATCH)
out = {{"introspect_s": best(analyse), "samples": n}}
res = box["iua"].results
out["checksum"] = {{k: [int(np.sum(r.inactive)), int(np.sum(r.unit_inactive_count))]
                   for k, r in res.items()}}
if lib == "introscope":
    def floor():
        for s in range(0, n, BATCH):
            for v in arrays.values():
                np.count_nonzero(v[s:s + BATCH])
    out["count_nonzero_s"] = best(floor)
emit(out)
"""

# argv = library, samples. A fixed pool of 2 batches is cycled so that only the analysis grows.
MEMORY_SCRIPT = f"""
import sys, resource, tracemalloc
import numpy as np
LAYERS = {LAYERS!r}
BATCH = {BATCH}
lib, samples = sys.argv[1], int(sys.argv[2])
if lib == "dnikit":
    from dnikit.base import Batch
    from dnikit.introspectors import IUA
else:
    from introscope.base import Batch
    from introscope.introspectors import IUA
rng = np.random.default_rng(0)
pool = [
    {{k: np.maximum(rng.standard_normal((BATCH, *s), dtype=np.float32) - 0.5, 0) for k, s in LAYERS.items()}}
    for _ in range(2)
]

def producer(bs):
    for i in range(samples // bs):
        yield Batch(pool[i % 2])

def warm(bs):
    yield Batch({{k: v[:2] for k, v in pool[0].items()}})

# What loads once per process (introscope's compiled loop: numba and LLVM) is not memory per
# sample; both libraries count two rows first. maxrss below includes it.
IUA.introspect(warm, batch_size=2)
tracemalloc.start()
iua = IUA.introspect(producer, batch_size=BATCH)
results = iua.results
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
emit({{"samples": samples, "peak_traced_mib": round(peak / 2**20, 1),
      "maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "check": int(sum(int(np.sum(r.inactive)) for r in results.values()))}})
"""


def _resnetish(resnet18: bool = False):  # noqa: ANN202
    """A small ResNet-style CNN for 32x32 inputs, or ResNet-18's layout (stem, 4 stages of 2)."""
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

    if resnet18:
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        layers.append(nn.MaxPool2d(3, 2, 1))
        plan = [(64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
        plan += [(128, 256, 2), (256, 256, 1), (256, 512, 2), (512, 512, 1)]
        width = 512
    else:
        layers = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        plan = [(32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1)]
        width = 128
    layers += [Block(cin, cout, stride) for cin, cout, stride in plan]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def torch_monitor(quick: bool, resnet18: bool = False) -> dict:
    """Forward (eval) and training-step time with the monitor on every ReLU over without it.

    The small ResNet-style CNN (32x32 inputs, batch 64) has little compute per activation byte,
    the worst case for the monitor; ``resnet18`` uses ResNet-18's layout on 3x112x112, batch 16.
    """
    import time

    import torch
    from introscope.introspectors import IUA

    torch.manual_seed(0)
    model = _resnetish(resnet18)
    if resnet18:
        x = torch.randn(4 if quick else 16, 3, 112, 112)
    else:
        x = torch.randn(16 if quick else 64, 3, 32, 32)
    y = torch.randint(0, 10, (len(x),))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    monitor = IUA.monitor(model)  # every ReLU: 13 modules

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    out: dict = {"batch": len(x), "monitored_modules": len(monitor._modules)}
    # Time spent folding outputs, measured directly: robust to a noisy, shared machine.
    in_hooks = [0.0]
    target = monitor.accumulator if hasattr(monitor, "accumulator") else monitor
    verb = "update" if hasattr(monitor, "accumulator") else "_fold"  # before the contract
    fold = getattr(target, verb)

    def timed_fold(*args: object, **kwargs: object) -> None:
        start = time.perf_counter()
        fold(*args, **kwargs)
        in_hooks[0] += time.perf_counter() - start

    setattr(target, verb, timed_fold)
    rounds = 3 if quick else 20
    for label, step, mode in (("forward", forward, "eval"), ("train_step", train_step, "train")):
        getattr(model, mode)()
        step()
        plain, watched, hooks = [], [], []
        for _ in range(rounds):  # interleaved so that load changes hit both alike
            t = time.perf_counter()
            step()
            plain.append(time.perf_counter() - t)
            with monitor:
                in_hooks[0] = 0.0
                t = time.perf_counter()
                step()
                watched.append(time.perf_counter() - t)
                hooks.append(in_hooks[0])
        out[f"{label}_plain_s"] = round(min(plain), 4)
        out[f"{label}_monitor_s"] = round(min(watched), 4)
        out[f"{label}_ratio"] = round(min(watched) / min(plain), 3)
        paired = [w / p for p, w in zip(plain, watched)]
        out[f"{label}_ratio_median"] = round(float(np.median(paired)), 3)
        out[f"{label}_in_hooks_s"] = round(float(np.median(hooks)), 4)
        out[f"{label}_overhead_from_hooks"] = round(1 + float(np.median(hooks)) / min(plain), 3)
    result = monitor.result
    out["samples_seen"] = result.results["2"].num_samples
    out.update(counting_cpu_time(model, x, rounds))
    return out


def counting_cpu_time(model, x, rounds: int) -> dict:  # noqa: ANN001
    """CPU time (``thread_time``: the counting runs on the calling thread; ``process_time`` would
    add torch's idle OpenMP threads spinning) of IUA's counting over the model's ReLU outputs,
    next to a one-thread eval forward, interleaved in one process: robust to other jobs."""
    import time

    import torch
    from introscope.introspectors import IUA

    outputs: list = []
    relus = [m for m in model.modules() if type(m).__name__ == "ReLU"]
    handles = [m.register_forward_hook(lambda _m, _i, o: outputs.append(o.detach())) for m in relus]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain, counting = [], []
        iua = IUA(channel_axis=1)  # kept, as a monitor keeps its states from batch to batch
        for _ in range(rounds):
            t = time.thread_time()
            with torch.no_grad():
                model(x)
            plain.append(time.thread_time() - t)
            t = time.thread_time()
            for i, o in enumerate(outputs):
                iua.update(str(i), o.numpy())
            counting.append(time.thread_time() - t)
    finally:
        torch.set_num_threads(threads)
    fwd, cnt = float(np.median(plain)), float(np.median(counting))
    return {
        "cpu_forward_1thread_s": round(fwd, 4),
        "cpu_counting_s": round(cnt, 4),
        "cpu_counting_over_forward_1thread": round(1 + cnt / fwd, 3),
        "activation_mb": round(sum(o.numel() * o.element_size() for o in outputs) / 1e6, 1),
    }


def run(quick: bool = False) -> dict:
    """The IUA benchmark; ``quick`` uses 256 samples (and 256 -> 2,048 for memory)."""
    samples = 256 if quick else 2048
    repeat = 2 if quick else 5
    dnikit = dnikit_python()
    out: dict = {"layers": {k: list(v) for k, v in LAYERS.items()}, "batch": BATCH}
    out["samples"] = samples
    with tempfile.TemporaryDirectory(prefix="bench_iua_") as tmp:
        folder = pathlib.Path(tmp)
        make_arrays(folder, samples)
        ours = run_script(INTROSCOPE_PYTHON, TIME_SCRIPT, ["introscope", tmp, str(repeat)])
        out["introscope"] = ours
        if dnikit is not None:
            out["dnikit"] = run_script(dnikit, TIME_SCRIPT, ["dnikit", tmp, str(repeat)])
    out["vs_count_nonzero"] = round(ours["introspect_s"] / ours["count_nonzero_s"], 3)
    if "dnikit" in out:
        out["speedup_vs_dnikit"] = round(out["dnikit"]["introspect_s"] / ours["introspect_s"], 2)
        out["same_numbers"] = out["dnikit"]["checksum"] == ours["checksum"]

    memory: dict = {}
    for n in (samples, 8 * samples):
        memory[f"introscope_{n}"] = run_script(
            INTROSCOPE_PYTHON, MEMORY_SCRIPT, ["introscope", str(n)]
        )
        if dnikit is not None:
            memory[f"dnikit_{n}"] = run_script(dnikit, MEMORY_SCRIPT, ["dnikit", str(n)])
    out["memory"] = memory
    out["torch_monitor"] = torch_monitor(quick)
    out["torch_monitor_resnet18"] = torch_monitor(quick, resnet18=True)
    out["summary"] = summary(out)
    return out


def summary(out: dict) -> list[str]:
    ours = out["introscope"]
    n = out["samples"]
    lines = [
        f"{n} samples x 4 layers (64x32x32, 128x16x16, 256x8x8, 512), batches of {BATCH}",
        f"introscope introspect {ours['introspect_s']:.3f} s; count_nonzero floor "
        f"{ours['count_nonzero_s']:.3f} s -> ratio {out['vs_count_nonzero']:.2f} (goal <= 2)",
    ]
    if "dnikit" in out:
        lines.append(
            f"DNIKit 2.0 introspect {out['dnikit']['introspect_s']:.3f} s -> introscope is "
            f"{out['speedup_vs_dnikit']:.1f}x faster (goal >= 5); same numbers: "
            f"{out['same_numbers']}"
        )
    else:
        lines.append("DNIKit 2.0: not available (make dnikit-venv)")
    mem = out["memory"]
    for lib in ("introscope", "dnikit"):
        small, big = mem.get(f"{lib}_{n}"), mem.get(f"{lib}_{8 * n}")
        if small and big:
            lines.append(
                f"{lib} peak traced memory {small['peak_traced_mib']} MiB at {n} samples, "
                f"{big['peak_traced_mib']} MiB at {8 * n} (+"
                f"{big['peak_traced_mib'] - small['peak_traced_mib']:.1f} MiB for x8)"
            )
    for key, what in (
        ("torch_monitor", "a small ResNet-style CNN, 3x32x32"),
        ("torch_monitor_resnet18", "ResNet-18's layout, 3x112x112"),
    ):
        tm = out[key]
        lines.append(
            f"PyTorch monitor on {tm['monitored_modules']} ReLUs of {what} (CPU, batch "
            f"{tm['batch']}): forward x{tm['forward_ratio_median']:.3f} (goal <= 1.10; median of "
            f"paired runs; best/best x{tm['forward_ratio']:.3f}; 1 + time in hooks / forward "
            f"x{tm['forward_overhead_from_hooks']:.3f}), train step "
            f"x{tm['train_step_ratio_median']:.3f} (in hooks "
            f"x{tm['train_step_overhead_from_hooks']:.3f}); counting CPU time "
            f"{1e3 * tm['cpu_counting_s']:.1f} ms for {tm['activation_mb']} MB = "
            f"x{tm['cpu_counting_over_forward_1thread']:.3f} of a 1-thread forward"
        )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    result = run(quick=parser.parse_args().quick)
    print("\n".join(result.pop("summary")))
    print(json.dumps(result, indent=2))
