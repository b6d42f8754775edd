"""The streaming state of Duplicates for one response: every sample's vector, in one buffer.

Duplicate search needs all the data, so this state is O(samples x features): one growing array
in the responses' dtype (capacity doubles; never a list of batches). ``merged`` concatenates
two states of disjoint data (indices of the second follow the first) and is associative.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

__all__ = ["ResponseBuffer", "check_responses"]


def check_responses(field: str, array: Any, where: str) -> np.ndarray:
    """Return ``array`` as a numeric (n, d) array, or raise naming ``field`` and what to do."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise IntroscopeValueError(
            f"Duplicates: response {field!r} ({where}) has dtype {arr.dtype}; Duplicates needs "
            f"real numeric responses (float, int or bool)"
        )
    if arr.ndim != 2:
        raise IntroscopeValueError(
            f"Duplicates: response {field!r} ({where}) has shape {arr.shape}; Duplicates needs "
            f"one vector per element, shape (batch, features). Reduce the other axes first with "
            f"introscope.processors.Pooler (e.g. global average over spatial axes) or Flattener"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise IntroscopeValueError(
            f"Duplicates: response {field!r} ({where}) has {bad} NaN or Inf values (first in "
            f"row {int(rows[0])} of that batch); distances to them are undefined. Fix the model "
            f"or data, or drop those elements before Duplicates"
        )
    return arr


class ResponseBuffer:
    """All vectors of one response seen so far: ``update`` appends a batch of shape (n, d).

    Capacity doubles as needed; the unused tail is never written, so the operating system does
    not back it with memory.
    """

    __slots__ = ("field", "_buf", "_n")

    def __init__(self, field: str, dim: int, dtype: np.dtype, capacity: int = 1024) -> None:
        self.field = field
        self._buf = np.empty((max(1, capacity), dim), dtype=dtype)
        self._n = 0

    @property
    def dim(self) -> int:
        return int(self._buf.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self._buf.dtype

    @property
    def nbytes(self) -> int:
        return int(self._buf.nbytes)

    def __len__(self) -> int:
        return self._n

    def update(self, array: np.ndarray, where: str = "update()") -> None:
        """Append one checked batch (shape (n, dim)); its dtype must match the first batch's."""
        arr = check_responses(self.field, array, where)
        if arr.shape[1] != self.dim:
            raise IntroscopeError(
                f"Duplicates: response {self.field!r} ({where}) has {arr.shape[1]} features, but "
                f"earlier batches had {self.dim}; every batch must have the same width"
            )
        need = self._n + len(arr)
        if need > len(self._buf):
            grown = np.empty((max(need, 2 * len(self._buf)), self.dim), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = arr
        self._n = need

    def view(self) -> np.ndarray:
        """The vectors gathered so far (read-only view, no copy)."""
        out = self._buf[: self._n]
        out.flags.writeable = False
        return out

    def merged(self, other: ResponseBuffer) -> ResponseBuffer:
        """A new buffer with this one's samples followed by ``other``'s."""
        if other.dim != self.dim:
            raise IntroscopeError(
                f"cannot merge Duplicates states: response {self.field!r} has {self.dim} features "
                f"in one and {other.dim} in the other"
            )
        dtype = np.result_type(self.dtype, other.dtype)
        out = ResponseBuffer(self.field, self.dim, dtype, len(self) + len(other))
        out._buf[: len(self)] = self.view()
        out._buf[len(self) : len(self) + len(other)] = other.view()
        out._n = len(self) + len(other)
        return out

    def state_dict(self) -> dict[str, Any]:
        """numpy arrays and JSON scalars only (no pickle)."""
        return {"field": self.field, "vectors": np.array(self.view())}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ResponseBuffer:
        vectors = np.asarray(state["vectors"])
        if vectors.ndim != 2:
            raise IntroscopeValueError(
                f"Duplicates state of {state.get('field')!r}: vectors must be 2-D, "
                f"got shape {vectors.shape}"
            )
        out = cls(str(state["field"]), vectors.shape[1], vectors.dtype, len(vectors))
        out._buf[: len(vectors)] = vectors
        out._n = len(vectors)
        return out
