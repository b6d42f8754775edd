"""Array kernels of PFA's shifted sums (:mod:`._field_sums`): shift, moments, Gram, covariance.

Free functions on numpy arrays (and two torch helpers), apart from the state class that uses
them: the choice of the per-unit shift from a first batch, float32 column sums by BLAS, float64
Gram updates by one ``dsyrk`` into an upper triangle, the re-expression of sums about another
shift (merges), and the covariance of the sums.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from .._state_contract import StateError

_STAGING_BYTES = 4 << 20
# Input dtypes that float32 holds exactly (bool, int8, uint8, int16, uint16, float16, float32):
# with precision="auto" their products are formed in float32.
_FLOAT32_EXACT = "?bBhHef"
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)

# float32 blocks' column sums: float32 BLAS sums over at most this many rows each (a matrix-vector
# product, ~8x cheaper than a float64-accumulating reduction), added up in float64.
_SUM_ROWS = 1024
_ONES32 = np.ones(_SUM_ROWS, dtype=_F32)
# The shift is chosen from at most this many leading rows of the first batch.
MOMENT_ROWS = 256

_DSYRK: Any = None


def add_gram64(upper: np.ndarray | None, block: np.ndarray) -> np.ndarray:
    """``upper + block.T @ block`` for a C-contiguous float64 (rows, units) block, in place.

    ``upper`` is a Fortran-ordered (units, units) float64 matrix (None: zeros) whose upper
    triangle alone is kept (:func:`symmetric`). One BLAS ``dsyrk`` with ``beta=1`` adds the
    product in place: 10-12 % faster than numpy's ``block.T @ block`` (a syrk, then a copy of
    the triangle) plus ``+=`` at 64-512 units. (For float32, scipy's ``ssyrk`` is slower than
    numpy's product: see ``HostSums._gram`` in ``_host_sums``.)
    """
    global _DSYRK
    if _DSYRK is None:
        from scipy.linalg.blas import dsyrk

        _DSYRK = dsyrk
    if upper is None:
        upper = np.zeros((block.shape[1],) * 2, order="F")
    # block.T is Fortran-contiguous: no copy; A A^T of it is block.T @ block.
    return cast(np.ndarray, _DSYRK(1.0, block.T, beta=1.0, c=upper, trans=0, overwrite_c=1))


def symmetric(upper: np.ndarray) -> np.ndarray:
    """The full symmetric (C-ordered) matrix of an upper triangle."""
    out = np.triu(upper)
    out += np.triu(upper, 1).T
    return out


def column_sums(block: np.ndarray) -> np.ndarray:
    """float64 column sums of a (rows, units) block; NaN or Inf in the block makes one non-finite.

    float32 blocks are summed by BLAS in float32 over runs of at most ``_SUM_ROWS`` rows (the
    rows are shifted near their mean, so a run's rounding error is ~1e-6 of one row's spread;
    the covariance is insensitive to it to first order) and the runs are added in float64. A
    float32 overflow shows as Inf, and the caller redoes such a batch in float64.
    """
    if block.dtype != _F32:
        return cast(np.ndarray, block.sum(axis=0, dtype=np.float64))
    n = block.shape[0]
    if n <= _SUM_ROWS:
        return cast(np.ndarray, np.matmul(_ONES32[:n], block).astype(np.float64))
    full = n - n % _SUM_ROWS
    runs = np.matmul(_ONES32, block[:full].reshape(-1, _SUM_ROWS, block.shape[1]))
    out = runs.sum(axis=0, dtype=np.float64)
    if full < n:
        out += np.matmul(_ONES32[: n - full], block[full:])
    return cast(np.ndarray, out)


def first_batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 column means and (population) standard deviations of a (rows, units) batch.

    Two passes over a float64 copy, the sums by BLAS (``np.mean``/``np.std`` along axis 0
    cost ~2x as much at few units: their float64 reductions run once per row). The
    means and deviations agree with numpy's to ~1e-15 relative; they only pick the shift, so
    the caller passes at most ``MOMENT_ROWS`` leading rows of its first batch (a quarter of
    the cost at 1,024 rows; the default batch of 32 rows is used whole).
    """
    n = x.shape[0]
    x64 = np.array(x, dtype=np.float64, order="C")
    ones = np.ones(n)
    means = (ones @ x64) / n
    np.subtract(x64, means, out=x64)
    np.multiply(x64, x64, out=x64)
    stds = np.sqrt((ones @ x64) / n)
    return means, stds


def staging_rows(units: int, itemsize: int) -> int:
    """Rows of a staging block (256 to 8192 rows): one syrk per block.

    About 4 MiB of float32, or as much as the state's own float64 ``outer`` matrix where that
    is larger (above ~724 units): a syrk of 1,024 rows costs ~25 % more per row than one of
    8,192 at 1,024 units (2,048 rows instead of 1,024 there: 6 % faster ``introspect`` at
    1,024 units in batches of 32), while the staging memory stays within the state's size.
    float64 blocks have as many rows (twice the bytes): fewer, larger Gram updates.
    """
    budget = max(_STAGING_BYTES, 8 * units * units)
    return min(max(budget // (itemsize * units), 256), 8192)


def product_dtype(dtype: np.dtype, precision: str) -> np.dtype:
    """The dtype in which the products of a batch of ``dtype`` are formed."""
    return _F32 if precision == "auto" and dtype.char in _FLOAT32_EXACT else _F64


def choose_shift(means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Per-unit shift from a first batch's float64 column means and standard deviations.

    The mean rounded to a multiple of the power of two ``q`` with ``std / 2 < q <= std``: at
    most ``q / 2 <= std / 2`` from the mean (so nothing cancels), and with few significant bits
    (a ReLU unit's shift is 0 or a power of two), so repeated values such as ReLU zeros or
    saturation levels stay short after the subtraction. float32 sums of many copies of one
    full-precision value are biased: on the benchmark's ReLU layer, float32 products about
    the plain float32 mean were 40x less accurate (2e-6 relative) than about this shift
    (5e-8). Where ``std`` is 0 the shift is the mean itself (a constant unit then contributes
    exact zeros). The result is float32-representable (0 where float32 overflows), as
    float64.
    """
    varies = stds > 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        q = np.exp2(np.floor(np.log2(np.where(varies, stds, 1.0))))
        shift = np.where(varies, np.round(means / q) * q, means).astype(np.float32)
    shift[~np.isfinite(shift)] = 0.0
    return shift.astype(np.float64)


def reexpress(
    count: int, total: np.ndarray, outer: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sums about shift ``s`` re-expressed about ``s - d``: T + n d, S + T d^T + d T^T + n d d^T."""
    td = np.outer(total, d)
    # Exactly symmetric (td + td.T is), as the state's outer sum is.
    return total + count * d, outer + (td + td.T) + count * np.outer(d, d)


def to_like(array: np.ndarray, like: Any) -> Any:
    """``array`` as a float64 tensor on ``like``'s device."""
    import torch

    return torch.as_tensor(array, dtype=torch.float64, device=like.device)


def covariance_of(count: int, _shift: Any, total: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """The covariance from the sums about a shift (which cancels): (S - T T^T / n) / (n - 1).

    ``outer`` is a fresh array and is changed in place (these matrices are a pass's memory peak).
    """
    if count == 0:
        raise StateError("has no samples")
    mean = total / count
    if count <= 1:
        outer /= count
        outer -= np.outer(mean, mean)
    else:
        outer /= count - 1
        outer -= np.outer(mean, total / (count - 1))
    return outer


def torch_int_types() -> tuple[Any, ...]:
    import torch

    return (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)
