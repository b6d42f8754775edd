"""The rows a strategy is fitted on: one growing array, and the look-up of rows seen again.

Strategies that need all of the data (StandardPCA, t-SNE, UMAP, PaCMAP) stream each batch into
one preallocated array that doubles when full (never a list of batches). The one-shot ones
(t-SNE, PaCMAP) and UMAP then recognise their fitted rows when data is piped through them: by
position first (the same producer, in the same order, with any batch size; a row matches when
every feature is within ``POSITION_RTOL`` of that fitted row's largest magnitude, because a
model's outputs differ in the last bits with the batch size), then by exact content (a sorted
byte-key index, built on first need), so a shuffled pass over the fitted data is recognised
too.
"""

from __future__ import annotations

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from ._checks import at

__all__ = ["FittedRows"]

_INITIAL_ROWS = 1024
#: A row at the same position as a fitted row matches it when every feature differs by at most
#: this times that fitted row's largest magnitude (float data; integers match exactly).
POSITION_RTOL = 1e-4


class FittedRows:
    """Rows appended batch by batch into one array; after ``finish``, a look-up of rows."""

    def __init__(self, who: str) -> None:
        self._who = who
        self._data: np.ndarray | None = None
        self._count = 0
        self._order: np.ndarray | None = None
        self._keys: np.ndarray | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def data(self) -> np.ndarray:
        """The (rows, features) array of the rows appended so far (a view, no copy)."""
        if self._data is None:
            raise IntroscopeError(f"{self._who}: no data was fitted; there is nothing to fit")
        return self._data[: self._count]

    def append(self, batch: np.ndarray, where: str = "") -> None:
        """Copy a checked (rows, features) batch to the end of the array."""
        n, d = batch.shape
        if self._data is None:
            self._data = np.empty((max(n, _INITIAL_ROWS), d), dtype=batch.dtype)
        elif d != self._data.shape[1]:
            raise IntroscopeValueError(
                f"{self._who}: batch has {d} features{at(where)} but earlier batches had "
                f"{self._data.shape[1]}; every batch of a field must have the same width"
            )
        dtype = np.result_type(self._data.dtype, batch.dtype)
        needed = self._count + n
        if needed > self._data.shape[0] or dtype != self._data.dtype:
            grown = np.empty((max(needed, 2 * self._data.shape[0]), d), dtype=dtype)
            grown[: self._count] = self._data[: self._count]
            self._data = grown
        block = self._data[self._count : needed]
        block[...] = batch
        if block.dtype.kind == "f":
            # -0.0 + 0.0 is +0.0: equal values get equal bytes, which the look-up compares.
            block += 0.0
        self._count = needed
        self._order = self._keys = None

    def finish(self) -> np.ndarray:
        """Trim the array to the rows appended and return it."""
        data = self.data
        if self._data is not None and self._data.shape[0] != self._count:
            self._data = np.ascontiguousarray(data).copy()
        return self.data

    def locate(self, batch: np.ndarray, start: int | None = None) -> np.ndarray:
        """Index among the fitted rows of each row of ``batch``, or -1 where it was not fitted.

        ``start``: where this batch would begin if it is the fitted data in fitting order; such
        rows are matched by position (so duplicated rows keep their own index).
        """
        data = self.data
        n = batch.shape[0]
        found = np.full(n, -1, dtype=np.int64)
        if batch.ndim != 2 or batch.shape[1] != data.shape[1] or n == 0:
            return found
        if start is not None and 0 <= start < data.shape[0]:
            m = min(n, data.shape[0] - start)
            fitted = data[start : start + m]
            if data.dtype.kind in "fc" and batch.dtype.kind in "fc":
                # Within POSITION_RTOL of the fitted row's own largest magnitude (a model's
                # rounding is relative to the values it computes; another row's outlier must
                # not widen the match).
                with np.errstate(invalid="ignore", over="ignore"):
                    tol = POSITION_RTOL * np.max(np.abs(fitted), axis=1, keepdims=True)
                    same = np.all(np.abs(batch[:m] - fitted) <= tol, axis=1)
            else:
                same = np.all(batch[:m] == fitted, axis=1)
            found[:m][same] = start + np.flatnonzero(same)
        missing = np.flatnonzero(found < 0)
        if missing.size == 0:
            return found
        rows = batch[missing]
        cast = rows.astype(data.dtype)
        if cast.dtype.kind == "f":
            cast += 0.0
        exact = np.all(cast == rows, axis=1)
        if not exact.any():
            return found
        missing, cast = missing[exact], cast[exact]
        if self._keys is None:
            keys = _byte_keys(data)
            self._order = np.argsort(keys, kind="stable")
            self._keys = keys[self._order]
        assert self._order is not None
        wanted = _byte_keys(np.ascontiguousarray(cast))
        pos = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        hit = self._keys[pos] == wanted
        found[missing[hit]] = self._order[pos[hit]]
        return found


def _byte_keys(rows: np.ndarray) -> np.ndarray:
    """One opaque bytes value per row (rows must be C-contiguous): equal rows, equal keys."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
