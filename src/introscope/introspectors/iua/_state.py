"""The mergeable state of IUA for one response: O(units) counters plus one integer per sample."""

from __future__ import annotations

import math

import numpy as np

from introscope.exceptions import IntroscopeError

from ._kernel import BatchCounts

__all__ = ["Tally", "FieldState"]


class _Growable:
    """An append-only 1-d integer array with amortised doubling (never a Python list)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: np.dtype, capacity: int = 256) -> None:
        self._buf = np.empty(max(1, capacity), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return self._buf.nbytes

    def extend(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = values
        self._n = need

    def view(self) -> np.ndarray:
        out = self._buf[: self._n]
        out.flags.writeable = False
        return out


class Tally:
    """Inactive counts over a set of units: per unit (int64) and per sample (smallest uint)."""

    __slots__ = ("shape", "counts", "per_sample")

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        size = math.prod(shape)
        self.counts = np.zeros(size, dtype=np.int64)
        # A per-sample count never exceeds the number of units: store it in the smallest uint.
        self.per_sample = _Growable(np.min_scalar_type(size))

    @property
    def n_samples(self) -> int:
        return len(self.per_sample)

    def add(self, counts: np.ndarray, per_sample: np.ndarray) -> None:
        self.counts += counts
        self.per_sample.extend(per_sample)

    def copy(self) -> Tally:
        out = Tally(self.shape)
        out.counts = self.counts.copy()
        out.per_sample = _Growable(self.per_sample.view().dtype, len(self))
        out.per_sample.extend(self.per_sample.view())
        return out

    def merged(self, other: Tally) -> Tally:
        out = Tally(self.shape)
        out.counts = self.counts + other.counts
        out.per_sample = _Growable(self.per_sample.view().dtype, len(self) + len(other))
        out.per_sample.extend(self.per_sample.view())
        out.per_sample.extend(other.per_sample.view())
        return out

    def __len__(self) -> int:
        return self.n_samples


class FieldState:
    """State of one response: its unit tally, optional channel tally, and non-finite count."""

    __slots__ = (
        "name",
        "unit_shape",
        "dtype_kind",
        "channel_axis",
        "units",
        "channels",
        "nonfinite",
    )

    def __init__(
        self, name: str, unit_shape: tuple[int, ...], dtype_kind: str, channel_axis: int | None
    ) -> None:
        self.name = name
        self.unit_shape = unit_shape
        self.dtype_kind = dtype_kind
        self.channel_axis = channel_axis  # an axis of unit_shape (batch axis excluded), or None
        self.units = Tally(unit_shape)
        self.channels = Tally((unit_shape[channel_axis],)) if channel_axis is not None else None
        self.nonfinite = 0

    @property
    def n_samples(self) -> int:
        return self.units.n_samples

    def channel_split(self) -> tuple[int, int, int] | None:
        """(units before, channels, units after) the channel axis, for reshaping a flat row."""
        if self.channel_axis is None:
            return None
        ax = self.channel_axis
        return (
            math.prod(self.unit_shape[:ax]),
            self.unit_shape[ax],
            math.prod(self.unit_shape[ax + 1 :]),
        )

    def add(self, counts: BatchCounts) -> None:
        self.units.add(counts.unit_counts, counts.per_sample)
        if self.channels is not None:
            assert counts.channel_counts is not None and counts.channel_per_sample is not None
            self.channels.add(counts.channel_counts, counts.channel_per_sample)
        self.nonfinite += counts.nonfinite

    def copy(self) -> FieldState:
        out = FieldState(self.name, self.unit_shape, self.dtype_kind, self.channel_axis)
        out.units = self.units.copy()
        out.channels = self.channels.copy() if self.channels is not None else None
        out.nonfinite = self.nonfinite
        return out

    def merged(self, other: FieldState) -> FieldState:
        if other.unit_shape != self.unit_shape:
            raise IntroscopeError(
                f"cannot merge IUA states: response {self.name!r} has units of shape "
                f"{self.unit_shape} in one and {other.unit_shape} in the other"
            )
        if other.channel_axis != self.channel_axis:
            raise IntroscopeError(
                f"cannot merge IUA states: response {self.name!r} has channel axis "
                f"{self.channel_axis} in one and {other.channel_axis} in the other"
            )
        out = FieldState(self.name, self.unit_shape, self.dtype_kind, self.channel_axis)
        out.units = self.units.merged(other.units)
        if self.channels is not None and other.channels is not None:
            out.channels = self.channels.merged(other.channels)
        out.nonfinite = self.nonfinite + other.nonfinite
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by this state (what grows with the data is the per-sample arrays)."""
        total = self.units.counts.nbytes + self.units.per_sample.nbytes
        if self.channels is not None:
            total += self.channels.counts.nbytes + self.channels.per_sample.nbytes
        return total
