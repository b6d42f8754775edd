"""Image stages: introscope's OpenCV path, its numpy fallback and DNIKit 2.0, on the same images.

64 uint8 images of 224x224x3 (quick: 16 of 112x112x3), one batch: resize to half size, rotate
30 degrees, Gaussian blur sigma 1.5, gamma 0.7. Each stage is timed as the batch processor a
pipeline runs (best of several calls; rounds alternate introscope and DNIKit because the machine
is shared). DNIKit runs from ``.venv-dnikit/bin/python`` in a subprocess on the same ``.npy``; its
outputs come back as ``.npy`` to check that the OpenCV path gives the same numbers.

    .venv/bin/python benchmarks/run.py image [--quick]
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _harness import best_time, dnikit_python, run_script  # noqa: E402

_STAGES = """
stages = {
    "resize": ImageResizer(pixel_format=ImageFormat.HWC, size=(%(half)d, %(half)d)),
    "rotate": ImageRotationProcessor(30.0),
    "blur": ImageGaussianBlurProcessor(1.5),
    "gamma": ImageGammaContrastProcessor(0.7),
}
"""

_DNIKIT = r"""
import sys, time
import numpy as np
from dnikit.base import Batch, ImageFormat
from dnikit.processors import (ImageGammaContrastProcessor, ImageGaussianBlurProcessor,
                               ImageResizer, ImageRotationProcessor)
images = np.load(sys.argv[1])
batch = Batch({"x": images})
%(stages)s
out = {}
for name, stage in stages.items():
    process = stage._get_batch_processor()
    result = process(batch).fields["x"]
    np.save(sys.argv[2] + "/" + name + ".npy", result)
    times = []
    for _ in range(%(repeat)d):
        t = time.perf_counter(); process(batch); times.append(time.perf_counter() - t)
    out[name] = min(times)
emit(out)
"""


def _introscope_times(images: np.ndarray, half: int, repeat: int) -> dict:
    import introscope.processors._image as image_module
    from introscope.base import Batch, ImageFormat
    from introscope.processors import (
        ImageGammaContrastProcessor,
        ImageGaussianBlurProcessor,
        ImageResizer,
        ImageRotationProcessor,
    )

    namespace = {
        "ImageResizer": ImageResizer,
        "ImageRotationProcessor": ImageRotationProcessor,
        "ImageGaussianBlurProcessor": ImageGaussianBlurProcessor,
        "ImageGammaContrastProcessor": ImageGammaContrastProcessor,
        "ImageFormat": ImageFormat,
    }
    exec(_STAGES % {"half": half}, namespace)
    batch = Batch({"x": images})
    times: dict = {}
    outputs: dict = {}
    saved = image_module.BACKEND
    try:
        for backend in ("opencv", "numpy"):
            image_module.BACKEND = backend
            for name, stage in namespace["stages"].items():
                process = stage._get_batch_processor()
                outputs[backend, name] = process(batch).fields["x"]
                times[backend, name] = best_time(lambda p=process: p(batch), repeat=repeat)
    finally:
        image_module.BACKEND = saved
    return {"times": times, "outputs": outputs}


def run(quick: bool = False) -> dict:
    """Time the four image stages on both introscope paths and under DNIKit 2.0."""
    from introscope.processors import _image_cv

    n, side = (16, 112) if quick else (64, 224)
    repeat, rounds = (2, 1) if quick else (5, 3)
    half = side // 2
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    names = ["resize", "rotate", "blur", "gamma"]
    python = dnikit_python()
    if _image_cv.load() is None:
        raise RuntimeError("OpenCV (cv2) is not installed in .venv: pip install -e '.[image]'")
    best: dict = {}
    outputs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "images.npy"
        np.save(path, images)
        for _ in range(rounds):
            mine = _introscope_times(images, half, repeat)
            outputs = mine["outputs"]
            for key, value in mine["times"].items():
                best[key] = min(best.get(key, np.inf), value)
            if python is not None:
                script = _DNIKIT % {"stages": _STAGES % {"half": half}, "repeat": repeat}
                theirs = run_script(python, script, [str(path), tmp])
                for name in names:
                    best["dnikit", name] = min(best.get(("dnikit", name), np.inf), theirs[name])
        reference = {name: np.load(pathlib.Path(tmp) / f"{name}.npy") for name in names if python}

    result: dict = {"images": [n, side, side, 3], "dtype": "uint8", "stages": {}}
    summary = [f"image stages on {n} uint8 images {side}x{side}x3 (best of {repeat}x{rounds}):"]
    for name in names:
        cv_s, np_s = best["opencv", name], best["numpy", name]
        row: dict = {"opencv_ms": round(cv_s * 1e3, 2), "numpy_ms": round(np_s * 1e3, 2)}
        diff = np.abs(outputs["opencv", name].astype(int) - outputs["numpy", name])
        row["numpy_vs_opencv_max_levels"] = int(diff.max())
        line = f"  {name:6s} opencv {cv_s * 1e3:7.1f} ms  numpy {np_s * 1e3:7.1f} ms"
        if python is not None:
            dn_s = best["dnikit", name]
            same = bool(np.array_equal(outputs["opencv", name], reference[name]))
            row.update(
                dnikit_ms=round(dn_s * 1e3, 2),
                dnikit_over_opencv=round(dn_s / cv_s, 2),
                dnikit_over_numpy=round(dn_s / np_s, 2),
                opencv_equals_dnikit=same,
            )
            line += (
                f"  DNIKit {dn_s * 1e3:7.1f} ms  speed-up opencv {dn_s / cv_s:5.2f}x"
                f" numpy {dn_s / np_s:5.2f}x  same numbers: {same}"
            )
        line += f"  (numpy within {row['numpy_vs_opencv_max_levels']} level)"
        result["stages"][name] = row
        summary.append(line)
    if python is None:
        summary.append("  DNIKit 2.0 (.venv-dnikit) not found: no comparison")
    result["summary"] = summary
    return result


if __name__ == "__main__":
    print("\n".join(run(quick="--quick" in sys.argv)["summary"]))
