"""Small producers for tests and examples: fixed arrays, random images, gated-addition sequences."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from introscope.base import Batch
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeValueError

__all__ = ["StubProducer", "StubImageDataset", "StubGatedAdditionDataset"]


def _positive_int(value: Any, argument: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise IntroscopeValueError(f"{argument} must be an int >= {minimum}, got {value!r}")
    return int(value)


class StubProducer:
    """Producer that re-batches fixed arrays (and optional metadata) to any batch size.

    Args:
        data: field name -> array; all arrays share dimension 0.
        metadata: metadata key -> per-element values, as set on a ``Batch.Builder``.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.samples import StubProducer
        >>> labels = {Batch.StdKeys.LABELS: {"digit": [0, 1, 0, 1, 0]}}
        >>> producer = StubProducer({"x": np.arange(5)}, labels)
        >>> [batch.fields["x"].tolist() for batch in producer(batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self, data: Mapping[str, np.ndarray], metadata: Mapping[Any, Any] | None = None
    ) -> None:
        builder = Batch.Builder(dict(data))
        for key, value in (metadata or {}).items():
            builder.metadata[key] = value
        self._batch = builder.make_batch()
        self.metadata = metadata

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        n = self._batch.batch_size
        if n <= batch_size:
            yield self._batch
            return
        for start in range(0, n, batch_size):
            yield self._batch.elements[start : start + batch_size]

    def __repr__(self) -> str:
        return f"StubProducer({self._batch!r})"


class StubImageDataset:
    """Producer of ``dataset_size`` random images (standard normal, float64) in ``NHWC`` field
    ``"images"``.

    The images depend only on ``seed``, not on the batch size, and repeat on every call.

    Examples:
        >>> from introscope.samples import StubImageDataset
        >>> images = StubImageDataset(3, image_width=4, image_height=2, channel_count=1)
        >>> [batch.fields["images"].shape for batch in images(batch_size=2)]
        [(2, 2, 4, 1), (1, 2, 4, 1)]
    """

    def __init__(
        self,
        dataset_size: int,
        image_width: int = 640,
        image_height: int = 480,
        channel_count: int = 3,
        *,
        seed: int = 0,
    ) -> None:
        self.dataset_size = _positive_int(dataset_size, "dataset_size", minimum=0)
        self.image_width = _positive_int(image_width, "image_width")
        self.image_height = _positive_int(image_height, "image_height")
        self.channel_count = _positive_int(channel_count, "channel_count")
        self.seed = seed

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        # One stream drawn in order, so a batch's images do not depend on batch_size.
        rng = np.random.default_rng(self.seed)
        shape = (self.image_height, self.image_width, self.channel_count)
        for start in range(0, self.dataset_size, batch_size):
            count = min(batch_size, self.dataset_size - start)
            yield Batch({"images": rng.standard_normal((count, *shape))})


class StubGatedAdditionDataset:
    """Producer for the gated-addition task: ``x`` (N, T, 2) float32, ``target`` (N,) float32,
    ``sequence_length`` (N,) int.

    ``x[..., 0]`` is uniform in [-1, 1]; ``x[..., 1]`` marks two positions (within each
    sequence's length) with 1; ``target = 0.5 + (sum of the two marked values) / 4``.
    Seeded like DNIKit (the numbers equal DNIKit's for the same batch size).

    Examples:
        >>> from introscope.base import peek_first_batch
        >>> from introscope.samples import StubGatedAdditionDataset
        >>> data = StubGatedAdditionDataset(4, minimum_sequence_length=5, maximum_sequence_length=8)
        >>> batch = peek_first_batch(data, batch_size=4)
        >>> {name: array.shape for name, array in batch.fields.items()}
        {'x': (4, 8, 2), 'target': (4,), 'sequence_length': (4,)}
        >>> batch.fields["sequence_length"]
        array([5, 5, 7, 6])
    """

    _SEED = 751994

    def __init__(
        self,
        dataset_size: int,
        minimum_sequence_length: int = 100,
        maximum_sequence_length: int = 100,
    ) -> None:
        self.dataset_size = _positive_int(dataset_size, "dataset_size", minimum=0)
        self.minimum_sequence_length = _positive_int(
            minimum_sequence_length, "minimum_sequence_length", minimum=2
        )
        self.maximum_sequence_length = _positive_int(
            maximum_sequence_length, "maximum_sequence_length", minimum=2
        )
        if self.minimum_sequence_length > self.maximum_sequence_length:
            raise IntroscopeValueError(
                f"minimum_sequence_length ({minimum_sequence_length}) must be <= "
                f"maximum_sequence_length ({maximum_sequence_length})"
            )

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        rs = np.random.RandomState(self._SEED)
        t_min, t_max = self.minimum_sequence_length, self.maximum_sequence_length
        for start in range(0, self.dataset_size, batch_size):
            count = min(batch_size, self.dataset_size - start)
            lengths = rs.randint(t_min, t_max + 1, count)
            values = rs.uniform(-1.0, 1.0, (count, t_max))
            markers = np.zeros((count, t_max))
            for i in range(count):
                markers[i, rs.choice(lengths[i], 2, replace=False)] = 1
            target = 0.5 + (values * markers).sum(axis=1) / 4.0
            x = np.stack((values, markers), axis=2)
            yield Batch(
                {
                    "x": x.astype(np.float32),
                    "target": target.astype(np.float32),
                    "sequence_length": lengths,
                }
            )
