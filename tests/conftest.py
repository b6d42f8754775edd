"""Test-wide settings: headless plotting, Keras on its torch backend, reproducible seeds."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("INTROSCOPE_PROGRESS", "0")

import importlib.util  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# tests/ is on sys.path, so tests/tensorflow (tests/torch, tests/onnx) would import as an empty
# namespace package when the framework is not installed: Keras would then believe TensorFlow is
# there, and importorskip would not skip. Make such imports fail as they do outside the tests.
for _name in ("tensorflow", "torch", "onnx", "onnxruntime", "keras", "ray"):
    _spec = importlib.util.find_spec(_name)
    if _spec is not None and _spec.origin in (None, "namespace"):
        sys.modules[_name] = None  # type: ignore[assignment]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
