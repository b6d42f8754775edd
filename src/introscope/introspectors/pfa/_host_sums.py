"""Host (numpy) arithmetic of PFA's shifted sums: staged blocks, BLAS Gram products, guards.

:class:`HostSums` is the part of :class:`._field_sums.FieldSums` that adds a numpy batch to
the sums once the shift is chosen: the batch minus the shift is staged into a reused block
(float32 or float64 products), each full block's column sums and Gram matrix (one BLAS syrk)
are added to the float64 ``total`` and ``outer``; a float32 Gram whose diagonal may have
underflowed or overflowed is redone in float64, a float32 block that drifted from the shift is
re-centred first (:mod:`._recentre`), and large float64 batches are summed about zero and
re-expressed about the shift when the sums are read.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from ._recentre import Drift, Offsets, recentre
from ._sums_math import add_gram64, column_sums, reexpress, staging_rows, symmetric

# float64-product batches of at least this many rows may be summed about zero (_add_raw).
_RAW_ROWS = 256
# A float32 block Gram with a diagonal entry in (0, 2**-100) may hold products that underflowed
# to subnormals (below it, their absolute error b * 2**-150 is no longer negligible next to
# u * diagonal); one above 2**100 is close to overflowing. Such a block is redone in float64.
_F32_DIAG_MIN = 2.0**-100
_F32_DIAG_MAX = 2.0**100

# float32 batches of at least _DIRECT_ROWS rows whose units all lie within a standard deviation
# of zero are multiplied as they are (FieldSums._direct_ok).
_DIRECT_ROWS = 1024

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce
_DOT_DTYPES = (_F32, _F64)


class HostSums:
    """The host arithmetic of :class:`._field_sums.FieldSums` (its base class).

    ``FieldSums`` sets every attribute below (``__init__``, ``_start``); see there.
    """

    __slots__ = (
        "shift",
        "total",
        "outer",
        "_stage",
        "_staged",
        "_gram_buf",
        "_shift_cast",
        "_bound",
        "_bound2",
        "_raw_ok",
        "_direct",
        "_raw",
        "_upper",
        "_drift",
        "_offsets",
        "_scratch",
    )

    shift: Any
    total: Any
    outer: Any
    _stage: np.ndarray | None
    _staged: int
    _gram_buf: np.ndarray | None
    _shift_cast: np.ndarray | None
    _bound: np.float64
    _bound2: np.float64
    _raw_ok: bool
    _direct: bool
    _raw: list[Any] | None
    _upper: np.ndarray | None
    _drift: Drift | None
    _offsets: Offsets
    _scratch: np.ndarray | None

    def add_numpy(self, x: np.ndarray, dtype: np.dtype) -> bool:
        """Stage a (samples, units) batch minus the shift, products in ``dtype`` (host state).

        A staged batch's column sums reach ``total`` with its block, in :meth:`flush`; returns
        False for a batch that holds NaN or Inf: it is not staged and nothing is added (the
        caller raises), so a rejected batch leaves the sums unchanged.
        """
        n, units = x.shape
        if dtype == _F64 and n >= _RAW_ROWS and self._raw_ok:
            return self._add_raw(x)
        if self._direct and n >= _DIRECT_ROWS and dtype == _F32 and x.dtype == _F32:
            # The shift is zero: the batch is its own block (no copy into the staging buffer).
            sums = column_sums(x)
            if math.isfinite(sums.sum()):
                if self._recentred(x, sums):
                    return True
                self._gram(x)
                self.total += sums
                return True
            if not np.isfinite(x).all():
                return False
            return self.add_numpy(x, _F64)  # a float32 sum overflowed
        stage = self._stage
        if stage is None or stage.dtype != dtype or stage.shape[0] < n:
            # Room for one staging block, or for one batch when batches are larger: a batch
            # is never split, and its buffer is reused rather than allocated per batch.
            self.flush()
            # (multiplying directly, only the short batches are staged: a smaller block)
            block_rows = _DIRECT_ROWS if self._direct else staging_rows(units, _F32.itemsize)
            rows = max(block_rows, n)
            stage = self._stage = np.empty((rows, units), dtype)
            self._shift_cast = self.shift.astype(dtype)
            # A float64 scalar: comparing it with a float16 or int extreme promotes the
            # extreme (a Python float would be cast down to the batch's dtype, overflowing).
            room = np.finfo(dtype).max - np.abs(self._shift_cast).max()
            self._bound = np.float64(room) * 0.5
            self._bound2 = np.float64(min(self._bound, 1e150)) ** 2
        if self._staged + n > stage.shape[0]:
            self.flush()
        block = stage[self._staged : self._staged + n]
        # The batch's extremes say at once that it is finite (NaN compares False) and that
        # x - shift cannot overflow; the column sums are taken once per block, in flush().
        # For float32/float64 batches one BLAS dot gives it (sum of squares <= bound**2).
        bound = self._bound
        if (x.dtype in _DOT_DTYPES and x.flags.c_contiguous and np.vdot(x, x) <= self._bound2) or (
            -bound <= _MIN(x, axis=None) and _MAX(x, axis=None) <= bound
        ):
            np.subtract(
                x, cast(np.ndarray, self._shift_cast), out=block, dtype=dtype, casting="unsafe"
            )
        elif not np.isfinite(x).all():
            return False  # not staged: the sums are unchanged
        elif dtype == _F32:
            return self.add_numpy(x, _F64)  # |x| near float32's range: stage it in float64
        else:
            with np.errstate(over="ignore"):
                np.subtract(
                    x, cast(np.ndarray, self._shift_cast), out=block, dtype=dtype, casting="unsafe"
                )
            if not np.isfinite(block).all():
                return False  # x - shift overflows float64
        self._staged += n
        return True

    def _add_raw(self, x: np.ndarray) -> bool:
        """Sum a large float64-product batch about zero, without writing ``x - shift``.

        The Gram matrix of the batch itself (one pass less over the data); the sums about zero
        are re-expressed about the shift when the state is read (:meth:`_fold_raw`).
        """
        column_sums = x.sum(axis=0, dtype=np.float64)
        if not math.isfinite(column_sums.sum()):
            return False
        xb = x if x.dtype == _F64 and x.flags.c_contiguous else np.ascontiguousarray(x, _F64)
        if self._raw is None:
            self._raw = [0, np.zeros(x.shape[1]), None]
        self._raw[2] = add_gram64(self._raw[2], xb)  # the upper triangle
        self._raw[1] += column_sums
        self._raw[0] += x.shape[0]
        return True

    def _fold_raw(self) -> None:
        """Add the sums about zero to the sums about the shift (re-expressed, as merges do)."""
        if self._raw is not None:
            count, total, upper = self._raw
            if count:
                total, outer = reexpress(count, total, symmetric(upper), -self.shift)
                self.total += total
                self.outer += outer
            self._raw = None

    def _fold_upper(self) -> None:
        """Add the float64 blocks' Gram matrices (an upper triangle) to ``outer``."""
        if self._upper is not None:
            self.outer += symmetric(self._upper)
            self._upper = None

    def _gram(self, block: np.ndarray) -> None:
        """Add ``block.T @ block`` to ``outer``.

        numpy's matmul of a matrix with its own transpose is one BLAS syrk plus a copy of the
        triangle (measured faster than scipy's ``ssyrk`` below 1,024 units, and it runs on
        numpy's BLAS, as ``eigh`` does, rather than a second OpenBLAS with its own threads).
        """
        if block.dtype == _F64:
            # Summed apart, as an upper triangle (one dsyrk in place), until the state is read.
            self._upper = add_gram64(self._upper, np.ascontiguousarray(block))
            return
        buf = self._gram_buf
        if buf is None:
            buf = self._gram_buf = np.empty(self.outer.shape, _F32)
        # float32 products that overflow or underflow are redone in float64 below: no warning.
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            gram = np.matmul(block.T, block, out=buf)
        diag = gram.reshape(-1)[:: gram.shape[0] + 1]  # a view
        lo, hi = _MIN(diag), _MAX(diag)
        if _F32_DIAG_MIN <= lo and hi <= _F32_DIAG_MAX:  # NaN compares False
            self.outer += gram  # the common case: every diagonal entry in range
            return
        # A zero diagonal entry is a unit equal to its shift in this block (a dead or constant
        # unit), unless its squares all underflowed to zero: the block's column says which.
        if lo == 0.0 and hi <= _F32_DIAG_MAX:
            tiny = np.flatnonzero(diag < _F32_DIAG_MIN)
            first, last = tiny[0], tiny[-1] + 1
            # One run of columns (dead units are often adjacent) is read through a view: 30 %
            # cheaper than gathering the columns.
            columns = block[:, first:last] if last - first == tiny.size else block[:, tiny]
            if not diag[tiny].any() and not columns.any():
                self.outer += gram
                return
        self._gram(block.astype(np.float64))

    def flush(self) -> None:
        """Add the staged rows' column sums to ``total`` and their Gram matrix to ``outer``."""
        if self._staged:
            assert self._stage is not None
            block = self._stage[: self._staged]
            # Every staged value is finite (add_numpy checked each batch): a non-finite float32
            # run sum is an overflow of the sum alone, redone in float64.
            with np.errstate(over="ignore", invalid="ignore"):
                sums = column_sums(block)
                finite = math.isfinite(sums.sum())
            if not finite:
                sums = block.sum(axis=0, dtype=np.float64)
            self._staged = 0
            if block.dtype == _F32 and self._recentred(block, sums, block):
                return
            self.total += sums
            self._gram(block)

    def _recentred(self, y: np.ndarray, sums: np.ndarray, out: np.ndarray | None = None) -> bool:
        """Add the float32 block ``y`` (column sums ``sums``) re-centred on its mean offset if
        it drifted from the shift (:mod:`._recentre`), written into ``out`` (the staging block)
        or a scratch block (not the caller's array); False: not drifting, nothing added.

        The tolerances come from the first ``MOMENT_ROWS`` rows: the first batch's, or the
        first block's of that many rows where the shift came from fewer.
        """
        drift = self._drift
        if drift is None:
            drift = self._drift = Drift.of_rows(y)
        k = y.shape[0]
        if drift is None or not drift.drifts(sums, k):
            return False
        d32 = drift.block_offset(sums, k)
        if d32 is None:
            return False  # too far to re-centre in float32
        if out is None:
            if self._scratch is None or self._scratch.shape[0] < k:
                self._scratch = np.empty(y.shape, _F32)
            out = self._scratch[:k]
        zsums = recentre(y, d32, out)
        self._gram(out)  # a Gram redone in float64 waits in _upper: the sum is the same
        self._offsets.add(self.total, self.outer, zsums, k, d32)
        return True
