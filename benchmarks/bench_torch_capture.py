"""Per-batch cost of capturing responses with the torch adapter versus a plain forward pass.

Two CPU models: the bundled digits CNN (batches of 128 8x8 images; tiny, so fixed costs show)
and a small residual CNN (batches of 64 3x32x32 images, 14 conv layers, shared in-place ReLUs).
For each, the best-of-N time of one batch numpy -> torch -> forward -> numpy output, then of the
adapter's ``run_inference`` asking for the output only, every conv response, and every response,
and of the whole ``model(names)`` pipeline stage (Batch in, Batch out).

    .venv/bin/python benchmarks/bench_torch_capture.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from _harness import best_time  # noqa: I001  (benchmarks/ is on sys.path when run.py loads us)


def _resnetish():  # noqa: ANN202
    import torch

    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):  # noqa: ANN001, ANN202
            y = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(y)) + x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 32, 3, padding=1)
            self.layer1 = nn.Sequential(Block(32), Block(32), Block(32))
            self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.layer2 = nn.Sequential(Block(64), Block(64), Block(64))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):  # noqa: ANN001, ANN202
            x = self.layer2(self.down(self.layer1(self.stem(x))))
            return self.fc(self.pool(x).flatten(1))

    torch.manual_seed(0)
    return Net().eval()


def _measure(module, x: np.ndarray, repeat: int) -> dict:  # noqa: ANN001
    import torch
    from introscope.base import Batch, ResponseInfo
    from introscope.torch import load_torch_model_from_memory

    model = load_torch_model_from_memory(module, example_input=x[:2])
    backend = model.backend
    infos = model.response_infos
    conv = [n for n, i in infos.items() if i.layer.kind == ResponseInfo.LayerKind.CONV_2D]
    sets = {"output": ["output"], "conv": conv, "all": list(infos)}

    def plain() -> None:
        with torch.inference_mode():
            module(torch.from_numpy(x)).numpy()

    batch = Batch({"x": x.copy()})  # a Batch freezes its arrays; the plain forward reads x
    stage = model(conv)._get_batch_processor()
    variants = {"plain_forward": plain}
    for label, names in sets.items():
        variants[f"capture_{label}"] = lambda w=frozenset(names): backend.run_inference({"x": x}, w)
    variants["stage_conv"] = lambda: stage(batch)
    for fn in variants.values():  # warm-up
        fn()
    # Interleaved rounds, best of each: the machine is shared and its speed drifts.
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for key, fn in variants.items():
            best[key] = min(best[key], best_time(fn, repeat=1, warmup=0))
    result: dict = {
        "batch_shape": list(x.shape),
        "responses": len(infos),
        "conv_responses": len(conv),
    }
    result.update({f"{k}_ms": v * 1e3 for k, v in best.items()})
    base = result["plain_forward_ms"]
    for key in [k for k in result if k.startswith(("capture_", "stage_"))]:
        result[key.replace("_ms", "_overhead_pct")] = 100.0 * (result[key] - base) / base
    return result


def run(quick: bool = False) -> dict:
    """Run both models; return the figures (milliseconds per batch and overhead in %)."""
    import torch
    from introscope.samples import load_digits_split, train_digits_cnn

    repeat = 5 if quick else 30
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: stable figures on a shared machine
    (_, _), (x_test, _) = load_digits_split()
    rng = np.random.default_rng(0)
    out = {
        "torch": torch.__version__,
        "threads": 1,
        "repeat": repeat,
        "digits_cnn": _measure(train_digits_cnn(), np.ascontiguousarray(x_test[:128]), repeat),
        "resnetish": _measure(
            _resnetish(), rng.standard_normal((64, 3, 32, 32)).astype(np.float32), repeat
        ),
    }
    torch.set_num_threads(threads)
    out["summary"] = [
        f"{name} {tuple(r['batch_shape'])}: plain forward {r['plain_forward_ms']:.2f} ms; "
        f"capture output {r['capture_output_overhead_pct']:+.0f}%, "
        f"{r['conv_responses']} conv responses {r['capture_conv_overhead_pct']:+.0f}%, "
        f"all {r['responses']} responses {r['capture_all_overhead_pct']:+.0f}%, "
        f"pipeline stage (conv) {r['stage_conv_overhead_pct']:+.0f}% (torch {out['torch']}, 1 thread)"
        for name, r in (("digits CNN", out["digits_cnn"]), ("ResNet-style CNN", out["resnetish"]))
    ]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    json.dump(run(parser.parse_args().quick), sys.stdout, indent=2)
    print()
