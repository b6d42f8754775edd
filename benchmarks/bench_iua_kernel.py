"""IUA's counting kernel: numba's one-pass loop against the numpy path, on a sweep of shapes.

Both count the same batches in one process, alternating (a noisy machine hits both alike); the
ratio is the numpy path's median time over the loop's. Every point also checks that both give
identical counts. Shapes: ReLU outputs (half zeros) of conv layers (channels x H x W, channel
view on) and dense layers (units), batches of 1 to 256, float32 and float64, and one signed
(not ReLU) case, which takes the numpy path's |x| pass.

    .venv/bin/python benchmarks/bench_iua_kernel.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

# (label, unit shape, channel view?)
SHAPES = [
    ("conv 16x32x32", (16, 32, 32), True),
    ("conv 64x56x56", (64, 56, 56), True),
    ("conv 128x8x8", (128, 8, 8), True),
    ("conv 512x4x4", (512, 4, 4), True),
    ("conv 64x7x7", (64, 7, 7), True),
    ("dense 512", (512,), False),
    ("dense 4096", (4096,), False),
]
BATCHES = (1, 16, 64, 256)


def _median_us(fn, repeat: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def run(quick: bool = False) -> dict:
    from introscope.introspectors.iua import _fused, _kernel

    if not _fused.fused_available():
        return {"skipped": "numba is not installed (pip install 'introscope[fast]')"}
    rng = np.random.default_rng(0)
    shapes = SHAPES[:3] + SHAPES[5:6] if quick else SHAPES
    batches = (1, 64) if quick else BATCHES
    points = []
    real = _kernel.count_fused

    def numpy_path(*_: object) -> None:
        return None

    for label, shape, channel_view in shapes:
        for batch in batches:
            for dtype in (np.float32, np.float64):
                for signed in (False, True) if (batch == 64 and dtype == np.float32) else (False,):
                    x = rng.standard_normal((batch, *shape)).astype(dtype)
                    if not signed:
                        np.maximum(x, 0, out=x)
                    flat = x.reshape(batch, -1)
                    channels = (1, shape[0], int(np.prod(shape[1:]))) if channel_view else None
                    nbytes = flat.nbytes
                    repeat = max(5, min(400, int(2e8 / max(nbytes, 1) ** 1.0)))
                    if quick:
                        repeat = min(repeat, 20)
                    fused_t, numpy_t = [], []
                    for _ in range(3):  # alternate the two paths
                        _kernel.count_fused = real
                        fused_t.append(
                            _median_us(
                                lambda f=flat, c=channels: _kernel.count_batch(f, 1e-8, c), repeat
                            )
                        )
                        a = _kernel.count_batch(flat, 1e-8, channels)
                        _kernel.count_fused = numpy_path  # type: ignore[assignment]
                        numpy_t.append(
                            _median_us(
                                lambda f=flat, c=channels: _kernel.count_batch(f, 1e-8, c), repeat
                            )
                        )
                        b = _kernel.count_batch(flat, 1e-8, channels)
                    _kernel.count_fused = real
                    same = (
                        np.array_equal(a.unit_counts, b.unit_counts)
                        and np.array_equal(a.per_sample, b.per_sample)
                        and (
                            a.channel_counts is None
                            or np.array_equal(a.channel_counts, b.channel_counts)
                        )
                    )
                    points.append(
                        {
                            "shape": label,
                            "batch": batch,
                            "dtype": np.dtype(dtype).name,
                            "data": "signed" if signed else "relu",
                            "mb": round(nbytes / 1e6, 3),
                            "numpy_us": round(min(numpy_t), 1),
                            "fused_us": round(min(fused_t), 1),
                            "speedup": round(min(numpy_t) / min(fused_t), 2),
                            "same_numbers": bool(same),
                        }
                    )
    speedups = [p["speedup"] for p in points]
    out: dict = {"points": points}
    out["summary"] = [
        f"IUA kernel, numba one-pass loop vs numpy path, {len(points)} points "
        f"(shapes x batches {list(batches)} x float32/float64): speedup min "
        f"{min(speedups):.2f}, median {float(np.median(speedups)):.2f}, max {max(speedups):.2f}; "
        f"identical counts at every point: {all(p['same_numbers'] for p in points)}"
    ]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    result = run(quick=parser.parse_args().quick)
    print("\n".join(result.pop("summary", [])))
    for p in result.get("points", []):
        print(
            f"{p['shape']:>14} b{p['batch']:<4} {p['dtype']:<8} {p['data']:<6} "
            f"{p['mb']:>8} MB  numpy {p['numpy_us']:>9} us  numba {p['fused_us']:>9} us  "
            f"x{p['speedup']:<5} same={p['same_numbers']}"
        )
    if "skipped" in result:
        print(json.dumps(result))
