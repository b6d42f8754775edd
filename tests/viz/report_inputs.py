"""Inputs for the report tests: an ONNX export of the digits CNN, a PNG folder with sub-folder
labels (one of them a script-injection attempt), and a Parquet table of embeddings."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np

#: A label that would run script if the report wrote it as HTML.
XSS_LABEL = "<img src=x onerror=alert(1)>"
PER_LABEL = 12


def export_digits_onnx(path: pathlib.Path) -> pathlib.Path:
    """The trained (cached) healthy digits CNN exported to ONNX with a dynamic batch axis."""
    import torch
    from introscope.samples import train_digits_cnn

    net = train_digits_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, 1, 8, 8),),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "N"}},
            dynamo=False,
        )
    return path


def write_png_folder(root: pathlib.Path, per_label: int = PER_LABEL) -> dict:
    """Held-out digits as 8x8 PNGs in one folder per label, plus the XSS label folder holding
    copies of a few '7's (exact duplicates of files in ``7/``). Returns what was written."""
    from PIL import Image

    from introscope.samples import load_digits_split

    _, (x, y) = load_digits_split()
    written: dict[str, list[str]] = {}
    images: dict[str, np.ndarray] = {}
    for digit in range(10):
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(y == digit)[:per_label]):
            pixels = np.rint(x[i] * 255).astype(np.uint8)
            rel = f"{digit}/img{k:03d}.png"
            Image.fromarray(pixels).save(root / rel)
            written.setdefault(str(digit), []).append(rel)
            images[rel] = pixels
    evil = root / XSS_LABEL
    evil.mkdir()
    for k in range(3):
        rel = f"{XSS_LABEL}/copy{k}.png"
        Image.fromarray(images[f"7/img{k:03d}.png"]).save(root / rel)
        written.setdefault(XSS_LABEL, []).append(rel)
        images[rel] = images[f"7/img{k:03d}.png"]
    return {"labels": written, "images": images}


def write_embeddings_parquet(path: pathlib.Path, n_per: int = 60, dim: int = 16) -> dict:
    """Three Gaussian clusters of embeddings (ids, labels, a list column), two exact copies."""
    import pandas as pd

    rng = np.random.default_rng(3)
    centers = rng.normal(scale=6.0, size=(3, dim))
    vectors = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centers])
    vectors[5] = vectors[4]  # an exact duplicate pair
    labels = np.repeat(["cat", "dog", XSS_LABEL], n_per)
    ids = [f"photo_{i:04d}.jpg" for i in range(len(vectors))]
    frame = pd.DataFrame(
        {"id": ids, "label": labels, "embedding": list(vectors.astype(np.float32))}
    )
    frame.to_parquet(path)
    return {"ids": ids, "labels": list(labels), "vectors": vectors}
