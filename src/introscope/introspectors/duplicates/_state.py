"""The streaming state of Duplicates for one response: every sample's vector, in one buffer.

Duplicate search needs all the data, so this state is O(samples x features): one growing array
in the responses' dtype (capacity doubles; never a list of batches). ``merged`` concatenates
two states of disjoint data (indices of the second follow the first) and is associative.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import numpy as np

from introscope.introspectors._state_contract import Capabilities, State, StateError, host_array

__all__ = ["ResponseBuffer", "check_responses"]


def check_responses(array: Any) -> np.ndarray:
    """Return ``array`` as a numeric (n, d) array, or raise a ``StateError`` saying why."""
    arr = host_array(array)
    if arr.dtype.kind not in "biuf":
        raise StateError(
            f"has dtype {arr.dtype}; Duplicates needs real numeric responses (float, int or bool)"
        )
    if arr.ndim != 2:
        raise StateError(
            f"has shape {arr.shape}; Duplicates needs one vector per element, shape (batch, "
            f"features). Reduce the other axes first with introscope.processors.Pooler (e.g. "
            f"global average over spatial axes) or Flattener"
        )
    if arr.shape[1] == 0:
        raise StateError(
            f"has shape {arr.shape}: 0 features per element; Duplicates needs at least one "
            f"(check the response name or the processing before it)"
        )
    return arr


class ResponseBuffer(State):
    """All vectors of one response seen so far: ``update`` appends a batch of shape (n, d).

    Capacity doubles as needed; the unused tail is never written, so the operating system does
    not back it with memory.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        mergeable=True, exact=True, passes=1, grows_with=("samples", "units")
    )

    __slots__ = ("_buf", "_n")

    def __init__(self, dim: int, dtype: np.dtype, capacity: int = 1024) -> None:
        self._buf = np.empty((max(1, capacity), dim), dtype=dtype)
        self._n = 0

    @property
    def dim(self) -> int:
        return int(self._buf.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return cast(np.dtype, self._buf.dtype)

    @property
    def nbytes(self) -> int:
        return int(self._n * self._buf.shape[1] * self._buf.itemsize)

    def __len__(self) -> int:
        return self._n

    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        """Append one batch (shape (n, dim)); finite values are checked by the accumulator."""
        arr = check_responses(array)
        if arr.shape[1] != self.dim:
            raise StateError(
                f"has {arr.shape[1]} features, but earlier batches had {self.dim}; every batch "
                f"must have the same width"
            )
        need = self._n + len(arr)
        # A batch of a wider dtype (floats after ints) promotes the buffer, as merging does:
        # casting it down would truncate values and invent duplicates.
        dtype = np.result_type(self._buf.dtype, arr.dtype)
        if need > len(self._buf) or dtype != self._buf.dtype:
            rows = max(need, 2 * len(self._buf)) if need > len(self._buf) else len(self._buf)
            grown = np.empty((rows, self.dim), dtype=dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = arr
        self._n = need
        return 0

    def view(self) -> np.ndarray:
        """The vectors gathered so far (read-only view, no copy)."""
        out = self._buf[: self._n]
        out.flags.writeable = False
        return out

    def result(self, **options: Any) -> np.ndarray:
        """The gathered vectors; the duplicate search needs every response at once and is run
        by the accumulator's ``finalize``."""
        return self.view()

    def merged(self, other: ResponseBuffer) -> ResponseBuffer:
        """A new buffer with this one's samples followed by ``other``'s."""
        if other.dim != self.dim:
            raise StateError(f"has {self.dim} features in one state and {other.dim} in the other")
        dtype = np.result_type(self.dtype, other.dtype)
        out = ResponseBuffer(self.dim, dtype, len(self) + len(other))
        out._buf[: len(self)] = self.view()
        out._buf[len(self) : len(self) + len(other)] = other.view()
        out._n = len(self) + len(other)
        return out

    def state_dict(self) -> dict[str, Any]:
        """numpy arrays only (no pickle)."""
        return {"vectors": np.array(self.view())}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> ResponseBuffer:
        vectors = np.asarray(state["vectors"])
        if vectors.ndim != 2:
            raise StateError(f"vectors must be 2-D, got shape {vectors.shape}")
        out = cls(vectors.shape[1], vectors.dtype, len(vectors))
        out._buf[: len(vectors)] = vectors
        out._n = len(vectors)
        return out
