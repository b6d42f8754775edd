"""The scikit-learn digits data (1,797 8x8 images, bundled, no download) and a tiny CNN for it.

``load_digits_dataset()`` is a :class:`TrainTestSplitProducer`; ``load_digits_cnn()`` trains
(in a few seconds on one CPU thread, deterministically for a seed) or loads from the user cache
a small CNN reaching >= 95 % test accuracy, and wraps it as an introscope ``Model``.
``load_digits_cnn(dying_relu=True)`` is the same network trained with a learning rate fifteen
times too high: accuracy stays above 90 % but many ReLU units never fire.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from introscope._atomic import atomic_open
from introscope.base import TrainTestSplitProducer
from introscope.exceptions import IntroscopeError
from introscope.typing import PathOrStr, TrainTestSplitType

if TYPE_CHECKING:
    import torch
    from introscope.torch import TorchModel

__all__ = [
    "DIGITS_CNN_RECIPES",
    "build_digits_cnn",
    "digits_cache_dir",
    "digits_cnn_accuracy",
    "load_digits_cnn",
    "load_digits_dataset",
    "load_digits_split",
    "train_digits_cnn",
]

_LOG = logging.getLogger("introscope.samples.digits")

#: Training settings of the two bundled variants (Adam, cross-entropy, batches of 32).
DIGITS_CNN_RECIPES: dict[str, dict[str, float]] = {
    "healthy": {"lr": 2e-3, "epochs": 8},
    "dying_relu": {"lr": 3e-2, "epochs": 8},
}
# Bump when the architecture or the training loop changes, so stale cache files are not read.
_RECIPE_VERSION = 1


def load_digits_split(*, test_size: float = 0.25, seed: int = 0) -> TrainTestSplitType:
    """``((x_train, y_train), (x_test, y_test))``: float32 images in [0, 1] of shape (8, 8).

    The split is stratified by label and fixed by ``seed``.

    Examples:
        >>> from introscope.samples import load_digits_split
        >>> (x_train, y_train), (x_test, y_test) = load_digits_split()
        >>> x_train.shape, x_test.shape, x_train.dtype, float(x_train.max())
        ((1347, 8, 8), (450, 8, 8), dtype('float32'), 1.0)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return (x_train, y_train), (x_test, y_test)


def load_digits_dataset(
    *,
    attach_metadata: bool = True,
    max_samples: int = -1,
    test_size: float = 0.25,
    seed: int = 0,
) -> TrainTestSplitProducer:
    """The digits as a ``TrainTestSplitProducer`` (field ``"samples"``, shape (8, 8)).

    Labels are in ``Batch.StdKeys.LABELS["label"]``, train/test in ``["dataset"]``; use
    ``.subset(datasets="test")`` for the held-out images.

    Examples:
        >>> from introscope.base import Batch, peek_first_batch
        >>> from introscope.samples import load_digits_dataset
        >>> digits = load_digits_dataset()
        >>> batch = peek_first_batch(digits.subset(datasets="test"), batch_size=3)
        >>> batch.fields["samples"].shape
        (3, 8, 8)
        >>> sorted(batch.metadata[Batch.StdKeys.LABELS])
        ['dataset', 'label']
    """
    return TrainTestSplitProducer(
        load_digits_split(test_size=test_size, seed=seed),
        attach_metadata=attach_metadata,
        max_samples=max_samples,
    )


def build_digits_cnn() -> torch.nn.Module:
    """A new, untrained digits CNN (a ``torch.nn.Module``; usable as a ``model_constructor``).

    Examples:
        >>> from introscope.samples import build_digits_cnn
        >>> module = build_digits_cnn()
        >>> type(module).__name__, sum(p.numel() for p in module.parameters())
        ('DigitsCNN', 38282)
    """
    from . import _cnn

    return _cnn.DigitsCNN()


def digits_cache_dir() -> pathlib.Path:
    """Where trained digits weights are cached.

    ``$INTROSCOPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/introscope``, else ``~/.cache/introscope``.
    """
    env = os.environ.get("INTROSCOPE_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "introscope"


def _variant(dying_relu: bool) -> str:
    return "dying_relu" if dying_relu else "healthy"


def _cache_file(cache: bool | PathOrStr, variant: str, seed: int) -> pathlib.Path | None:
    if cache is False or cache is None:
        return None
    directory = digits_cache_dir() if cache is True else pathlib.Path(cache)
    return directory / f"digits_cnn-{variant}-seed{seed}-v{_RECIPE_VERSION}.npz"


def _read_cache(path: pathlib.Path) -> torch.nn.Module | None:
    from . import _cnn

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return _cnn.arrays_to_model(arrays)
    except Exception as exc:  # a damaged or foreign file: retrain and replace it
        _LOG.warning("ignoring unreadable cached weights %s (%s); retraining", path, exc)
        return None


def _write_cache(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            np.savez(f, **cast("dict[str, Any]", arrays))  # every entry is an array
    except OSError as exc:
        _LOG.warning("could not cache digits CNN weights in %s: %s", path, exc)


def train_digits_cnn(
    *, dying_relu: bool = False, seed: int = 0, cache: bool | PathOrStr = True
) -> torch.nn.Module:
    """The trained digits CNN as a ``torch.nn.Module`` in eval mode.

    Args:
        dying_relu: train with the too-high learning rate of ``DIGITS_CNN_RECIPES["dying_relu"]``.
        seed: fixes the initial weights and the batch order.
        cache: ``True`` reads/writes weights in ``digits_cache_dir()`` (``.npz``, written
            atomically, loaded without pickle); a path uses that directory; ``False`` always
            trains.

    Examples:
        The first call trains for a few seconds (on one CPU thread) and caches the weights;
        later calls load them:

        >>> from introscope.samples import digits_cnn_accuracy, train_digits_cnn
        >>> module = train_digits_cnn()
        >>> module.training, digits_cnn_accuracy(module) > 0.95
        (False, True)
    """
    from . import _cnn

    variant = _variant(dying_relu)
    path = _cache_file(cache, variant, seed)
    if path is not None and path.is_file():
        model = _read_cache(path)
        if model is not None:
            return model
    recipe = DIGITS_CNN_RECIPES[variant]
    (x_train, y_train), _ = load_digits_split()
    _LOG.info("training the %s digits CNN (seed %d)", variant, seed)
    model = _cnn.train(x_train, y_train, lr=recipe["lr"], epochs=int(recipe["epochs"]), seed=seed)
    if path is not None:
        _write_cache(path, _cnn.state_to_arrays(model))
    return model


def digits_cnn_accuracy(module: Any, *, dataset: str = "test") -> float:
    """Accuracy of a digits CNN on the ``"train"`` or ``"test"`` part of the split.

    Examples:
        >>> from introscope.samples import build_digits_cnn, digits_cnn_accuracy, train_digits_cnn
        >>> digits_cnn_accuracy(train_digits_cnn(), dataset="train") > 0.95
        True
        >>> digits_cnn_accuracy(build_digits_cnn().eval()) < 0.5  # untrained: about chance
        True
    """
    from . import _cnn

    if dataset not in ("train", "test"):
        raise IntroscopeError(f"dataset must be 'train' or 'test', got {dataset!r}")
    (x_train, y_train), (x_test, y_test) = load_digits_split()
    x, y = (x_train, y_train) if dataset == "train" else (x_test, y_test)
    return _cnn.accuracy(module, x, y)


def load_digits_cnn(
    *,
    dying_relu: bool = False,
    seed: int = 0,
    cache: bool | PathOrStr = True,
    device: Any = None,
) -> TorchModel:
    """The trained digits CNN as an introscope ``Model`` (see ``train_digits_cnn``).

    Responses: ``conv1``, ``relu1``, ``conv2``, ``relu2``, ``pool``, ``flatten``, ``fc1``,
    ``relu3``, ``fc2`` and ``output``; the input is ``x`` of shape (8, 8).

    Examples:
        >>> from introscope.samples import load_digits_cnn
        >>> model = load_digits_cnn()
        >>> list(model.input_layers), list(model.response_infos)[:4]
        (['x'], ['conv1', 'relu1', 'conv2', 'relu2'])
    """
    from introscope.torch import load_torch_model_from_memory

    module = train_digits_cnn(dying_relu=dying_relu, seed=seed, cache=cache)
    example = np.zeros((2, 8, 8), dtype=np.float32)
    return load_torch_model_from_memory(module, example_input=example, device=device)
