"""``TrainTestSplitProducer``: batches from a ``((x_train, y_train), (x_test, y_test))`` split."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone, TrainTestSplitType

from ._batch import Batch
from ._producer import check_batch_size

__all__ = ["TrainTestSplitProducer"]

_DATASETS = ("train", "test")


def _squeeze_items(array: np.ndarray) -> np.ndarray:
    """Drop size-1 dimensions except dimension 0 (so a 1-sample split keeps its batch axis)."""
    axes = tuple(i for i in range(1, array.ndim) if array.shape[i] == 1)
    return np.squeeze(array, axis=axes) if axes else array


def _check_split(split: Any) -> None:
    ok = (
        isinstance(split, tuple)
        and len(split) == 2
        and all(isinstance(pair, tuple) and len(pair) == 2 for pair in split)
        and all(isinstance(a, np.ndarray) for pair in split for a in pair)
    )
    if not ok:
        raise TypeError(
            "split_dataset must be ((x_train, y_train), (x_test, y_test)) with numpy arrays, "
            f"got {type(split).__name__}"
        )
    (x_train, y_train), (x_test, y_test) = split
    if x_train.size == 0 and x_test.size == 0:
        raise IntroscopeError(
            "TrainTestSplitProducer: x_train and x_test are both empty; at most one may be "
            "(did subset() filter out every sample?)"
        )
    if x_train.size and x_test.size and x_train.shape[1:] != x_test.shape[1:]:
        raise IntroscopeError(
            f"TrainTestSplitProducer: x_train items have shape {x_train.shape[1:]} but x_test "
            f"items have shape {x_test.shape[1:]}; they must match"
        )
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise IntroscopeError(
                f"TrainTestSplitProducer: x_{name} has {x.shape[0]} samples but y_{name} has "
                f"{y.shape[0]}; they must have the same length"
            )


class TrainTestSplitProducer:
    """Producer over a train/test split such as ``keras.datasets.mnist.load_data()``.

    Batches have field ``"samples"`` (size-1 dimensions after the first squeezed away); with
    ``attach_metadata`` they carry ``Batch.StdKeys.IDENTIFIER`` (index of the sample, train
    first then test) and ``Batch.StdKeys.LABELS`` with ``"label"`` (the y value) and
    ``"dataset"`` (0 for train, 1 for test).

    Args:
        split_dataset: ``((x_train, y_train), (x_test, y_test))``; one of the x arrays may be empty.
        attach_metadata: attach the identifiers and labels.
        max_samples: produce at most this many samples (-1: all).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, TrainTestSplitProducer
        >>> x_train, y_train = np.zeros((3, 2, 2)), np.array([0, 1, 2])
        >>> x_test, y_test = np.ones((2, 2, 2)), np.array([1, 0])
        >>> producer = TrainTestSplitProducer(((x_train, y_train), (x_test, y_test)))
        >>> batch = next(iter(producer(batch_size=5)))
        >>> batch.fields["samples"].shape
        (5, 2, 2)
        >>> labels = batch.metadata[Batch.StdKeys.LABELS]
        >>> [int(v) for v in labels["label"]], [int(v) for v in labels["dataset"]]
        ([0, 1, 2, 1, 0], [0, 0, 0, 1, 1])
    """

    def __init__(
        self,
        split_dataset: TrainTestSplitType,
        attach_metadata: bool = True,
        max_samples: int = -1,
    ) -> None:
        _check_split(split_dataset)
        if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)):
            raise TypeError(f"max_samples must be an int, got {max_samples!r}")
        self.split_dataset = split_dataset
        self.attach_metadata = bool(attach_metadata)
        (x_train, y_train), (x_test, y_test) = split_dataset
        parts = [(x, y, k) for k, (x, y) in enumerate(split_dataset) if x.size]
        if len(parts) == 1:
            x, y, k = parts[0]
            self._samples = _squeeze_items(x)
            self._labels = _squeeze_items(y)
            self._dataset_ids = np.full(len(x), k)
        else:
            self._samples = _squeeze_items(np.concatenate((x_train, x_test)))
            self._labels = _squeeze_items(np.concatenate((y_train, y_test)))
            self._dataset_ids = np.concatenate(
                (np.zeros(len(x_train), dtype=int), np.ones(len(x_test), dtype=int))
            )
        n = len(self._samples)
        self.max_samples = n if max_samples < 0 or max_samples > n else int(max_samples)
        self._permutation: np.ndarray | None = None

    def shuffle(self, seed: int | np.random.Generator | None = None) -> None:
        """Produce the samples in a random order from now on (``subset`` does not inherit it).

        Args:
            seed: an int or Generator for a reproducible order; None uses ``numpy.random``'s
                global state like DNIKit (so ``np.random.seed`` makes it reproducible).
        """
        n = len(self._samples)
        if seed is None:
            self._permutation = np.random.permutation(n)
        else:
            self._permutation = np.random.default_rng(seed).permutation(n)

    def subset(
        self,
        labels: OneManyOrNone[Hashable] = None,
        datasets: OneManyOrNone[str] = None,
        max_samples: int | None = None,
    ) -> TrainTestSplitProducer:
        """A new producer over only the samples with the given labels and/or datasets.

        Args:
            labels: label value(s) of ``y`` to keep; None keeps all.
            datasets: ``"train"`` and/or ``"test"``; None keeps both.
            max_samples: limit of the new producer; None keeps this one's.
        """
        label_set = _resolve_hashables(labels, "labels")
        dataset_set = _resolve_hashables(datasets, "datasets")
        if dataset_set is not None:
            unknown = dataset_set - set(_DATASETS)
            if unknown:
                raise IntroscopeValueError(
                    f"subset(datasets=...) accepts 'train' and 'test', got {sorted(map(str, unknown))}"
                )
        (x_train, y_train), (x_test, y_test) = self.split_dataset
        if dataset_set is not None:
            if "train" not in dataset_set:
                x_train, y_train = np.empty((0,)), np.empty((0,))
            if "test" not in dataset_set:
                x_test, y_test = np.empty((0,)), np.empty((0,))
        if label_set is not None:
            train_keep = _label_mask(y_train, label_set)
            test_keep = _label_mask(y_test, label_set)
            x_train, y_train = x_train[train_keep], y_train[train_keep]
            x_test, y_test = x_test[test_keep], y_test[test_keep]
        return type(self)(
            ((x_train, y_train), (x_test, y_test)),
            attach_metadata=self.attach_metadata,
            max_samples=self.max_samples if max_samples is None else max_samples,
        )

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        for start in range(0, self.max_samples, batch_size):
            stop = min(start + batch_size, self.max_samples)
            if self._permutation is None:
                index: Any = np.arange(start, stop)
            else:
                index = self._permutation[start:stop]
            builder = Batch.Builder({"samples": self._samples[index]})
            if self.attach_metadata:
                builder.metadata[Batch.StdKeys.IDENTIFIER] = index.tolist()
                builder.metadata[Batch.StdKeys.LABELS] = {
                    "label": list(self._labels[index]),
                    "dataset": list(self._dataset_ids[index]),
                }
            yield builder.make_batch()

    def __repr__(self) -> str:
        return (
            f"TrainTestSplitProducer({len(self._samples)} samples, "
            f"max_samples={self.max_samples}, shuffled={self._permutation is not None})"
        )


def _resolve_hashables(value: Any, argument: str) -> frozenset[Hashable] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        values = frozenset([_plain(value)])
    else:
        values = frozenset(_plain(v) for v in value)
    if not values:
        raise IntroscopeValueError(f"subset({argument}=...) is empty; pass None to keep everything")
    return values


def _label_mask(y: np.ndarray, labels: frozenset[Hashable]) -> np.ndarray:
    if y.size == 0:
        return np.zeros(len(y), dtype=bool)
    flat = _squeeze_items(y)
    if flat.ndim != 1:
        raise IntroscopeError(
            f"subset(labels=...) needs one label per sample, but y has shape {y.shape}"
        )
    return np.fromiter((v in labels for v in flat.tolist()), dtype=bool, count=len(flat))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it equals (so set membership matches ``tolist()``)."""
    return value.item() if isinstance(value, np.generic) else value
