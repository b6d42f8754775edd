"""Per-block re-centring of float32 Gram products whose block mean drifted from the shift.

A float32 block ``y = x - s`` (staged, or the batch itself about a zero shift) has its Gram
matrix formed in float32: entry ``(i, j)`` carries a rounding error of about
``k * 2**-24 * sqrt(Q_i Q_j)``, ``Q`` the block's mean square about ``s``: its variance plus
the square of its mean offset ``d = sum(y) / k``. The shift comes from the first rows, so on
rows sorted by class a later block's ``d**2`` can be many times its variance, and the
covariance loses that factor of precision.

Such a block is re-centred: ``z = y - d32``, ``d32`` the offset rounded to a short float32
value (:meth:`Drift.block_offset`: few significant bits, as the shift has, so that repeated
values such as ReLU zeros stay short), its Gram matrix ``G`` and column sums ``t`` formed as
before (the same overflow, underflow and dead-unit checks), and the sums of ``z + d32`` added
in float64 as sums about ``s``::

    total += t + k d          outer += G + t d^T + d t^T + k d d^T      (d = d32 as float64)

(:class:`Offsets`: the rank-2 terms of up to ``_FOLD`` blocks reach ``outer`` in one float64
product ``M = U^T D``, added as ``M + M^T``, exactly symmetric). ``z`` is ``y - d32`` rounded
to float32, off by at most ``2**-24 |z|``: take ``z + d32`` as the block's data (it differs
from ``y`` by that rounding, no more than the rounding of a staged ``x - s``). Its sums are
then exact but for the float32 errors of ``G`` and ``t``, which now scale with the block's own
spread, and the float64 rounding of the correction terms. A drifting block's covariance is
thus as accurate as that of a block centred on the shift.

The test (:meth:`Drift.drifts`) compares the block's column sums with ``k`` times a per-unit
tolerance from the mean offset ``m`` (from the shift) and spread ``std`` of the stream's first
``MOMENT_ROWS`` rows: a unit drifts when ``d**2 > m**2 + DRIFT * std**2``, i.e. when the
block's mean square about the shift exceeds that of the first rows by more than ``DRIFT``
variances (a unit of zero spread, whose ``m`` is 0, drifts when ``d != 0``). Measured on 64
units in blocks of 4,096 rows, re-centring improves the covariance 1.04x / 1.14x / 1.43x /
2.4x / 3.2x / 5.7x at ``d**2 / std**2`` = 0.25 / 0.5 / 1 / 2 / 4 / 100: ``DRIFT = 1``
re-centres where the gain passes ~1.5x. Counting ``m`` keeps shuffled data off this path:
about zero (``FieldSums._direct_ok``) the first rows' own ``m**2`` may reach ``std**2``, and a
shuffled block's offset differs from ``m`` by ~``std / sqrt(k)``. Moments of fewer rows are
too noisy (of 32 ReLU rows, as the default batches of 32 give the shift, they put 22-26 % of
shuffled 1,024-unit streams on this path; of 256 rows, none of 200): then the tolerances wait
for the first block of ``MOMENT_ROWS`` rows.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np

from ._sums_math import MOMENT_ROWS, column_sums, first_batch_moments

# Re-centre where a unit's mean square about the shift grew by DRIFT first-rows variances.
DRIFT = 1.0
# Offsets of a unit with no first-batch spread are rounded to this many significant bits.
_ZERO_SPREAD_BITS = 8
# Offsets this large are not re-centred (such products are redone in float64 anyway).
_MAX_OFFSET = 2.0**60
# The rank-2 terms of this many re-centred blocks are added to outer in one product.
_FOLD = 32
_F32 = np.dtype(np.float32)


class Drift:
    """A field's per-unit drift tolerance and rounding quantum, from its first spreads."""

    __slots__ = ("stds", "tolerance", "_quantum", "_rows", "_bound")

    def __init__(self, stds: np.ndarray, offsets: np.ndarray) -> None:
        self.stds = stds
        # |sum| > k * tolerance  <=>  d**2 > m**2 + DRIFT * std**2 (no division: std may be 0).
        self.tolerance = np.hypot(offsets, stds * math.sqrt(DRIFT))
        self._quantum: np.ndarray | None = None  # when a block first drifts
        self._rows, self._bound = 0, self.tolerance  # k * tolerance for the last k

    @property
    def quantum(self) -> np.ndarray:
        """The power of two q with std / 2 < q <= std, as choose_shift rounds (0: no spread)."""
        if self._quantum is None:
            varies = self.stds > 0
            with np.errstate(divide="ignore"):
                q = np.exp2(np.floor(np.log2(np.where(varies, self.stds, 1.0))))
            self._quantum = np.where(varies, q, 0.0)
        return self._quantum

    @classmethod
    def of_rows(cls, y: np.ndarray) -> Drift | None:
        """From the first ``MOMENT_ROWS`` rows of ``y`` (about the shift); None: fewer rows."""
        if y.shape[0] < MOMENT_ROWS:
            return None
        means, stds = first_batch_moments(y[:MOMENT_ROWS])
        return cls(stds, means)

    @classmethod
    def of_sums(cls, count: int, total: np.ndarray, outer: np.ndarray) -> Drift | None:
        """From the data summed so far (a state rebuilt or merged into); None: too few rows."""
        if count < MOMENT_ROWS:
            return None
        mean = total / count
        var = np.diagonal(outer) / count - mean * mean
        return cls(np.sqrt(np.maximum(var, 0.0)), mean)

    def drifts(self, sums: np.ndarray, rows: int) -> bool:
        """Whether a block of ``rows`` rows with these float64 column sums has drifted.

        Three numpy calls on units-length vectors (~0.8 us; ``count_nonzero`` is cheaper than
        ``any``): blocks mostly have one size."""
        if rows != self._rows:
            self._rows, self._bound = rows, rows * self.tolerance
        return bool(np.count_nonzero(np.abs(sums) > self._bound))

    def block_offset(self, sums: np.ndarray, rows: int) -> np.ndarray | None:
        """The block's mean offset rounded to a short float32 value (None: keep the block).

        Rounded as the shift is (to a multiple of the quantum), so that repeated values (ReLU
        zeros) stay short after the subtraction; a unit with no first-batch spread keeps
        ``_ZERO_SPREAD_BITS`` bits of its offset.
        """
        d = sums / rows
        q = self.quantum
        if not q.all():
            with np.errstate(divide="ignore"):
                bits = np.floor(np.log2(np.where(d != 0, np.abs(d), 1.0)))
            q = np.where(q > 0, q, np.exp2(bits - _ZERO_SPREAD_BITS))
        d32 = (np.round(d / q) * q).astype(_F32)
        if not np.abs(d32).max() < _MAX_OFFSET:  # NaN compares False
            return None
        return cast(np.ndarray, d32)


def recentre(y: np.ndarray, d32: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``z = y - d32`` into ``out`` (may be ``y``) and return its float64 column sums."""
    np.subtract(y, d32, out=out)
    with np.errstate(over="ignore", invalid="ignore"):
        sums = column_sums(out)
        finite = math.isfinite(sums.sum())
    # A float32 run sum that overflowed is redone in float64 (as FieldSums.flush does).
    return sums if finite else cast(np.ndarray, out.sum(axis=0, dtype=np.float64))


class Offsets:
    """The offset terms of re-centred blocks, added to a state's sums (:mod:`._recentre`)."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []  # (t + k d / 2, d) per block

    def add(
        self, total: np.ndarray, outer: np.ndarray, sums: np.ndarray, k: int, d32: np.ndarray
    ) -> None:
        """Turn ``total`` and ``outer``, to which the block ``z``'s Gram matrix (but not yet its
        column sums ``sums``) was added, into the sums of ``z + d32`` (``outer`` lazily)."""
        d = d32.astype(np.float64)
        total += sums + k * d
        # (t + k d / 2) d^T + d (t + k d / 2)^T = t d^T + d t^T + k d d^T
        self.rows.append((sums + (0.5 * k) * d, d))
        if len(self.rows) >= _FOLD:
            self.fold(outer)

    def fold(self, outer: np.ndarray) -> None:
        """Add the pending rank-2 terms to ``outer`` (exactly symmetric: ``M + M^T``)."""
        if self.rows:
            u = np.array([r[0] for r in self.rows])
            d = np.array([r[1] for r in self.rows])
            m = u.T @ d
            outer += m + m.T
            self.rows = []
