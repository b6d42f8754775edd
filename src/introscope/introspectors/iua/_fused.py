"""IUA's counting in one pass over a batch, compiled with numba when it is installed.

numpy needs four passes over a batch for what IUA counts (a finiteness check, the comparison,
the per-unit sum, the per-sample and per-channel sums of the mask); this loop reads each value
once and keeps the per-unit counters and one row of mask in cache. It gives exactly the numbers
of :func:`._kernel.count_batch`'s numpy path (``|x| <= atol`` in ``x``'s dtype, NaN and +-Inf
active and counted as non-finite), 1.5-2.5x faster on ReLU outputs (``benchmarks/README.md``).

Only native-order, C-contiguous float32 and float64 batches take it; numba is optional (the
``fast`` extra). Without numba, with ``INTROSCOPE_NUMBA=0`` in the environment, or when numba
cannot compile here, :func:`count_fused` returns None and the numpy path counts. The compiled
code is cached on disk by numba (about 0.5 s to compile once, 0.2 s to load afterwards); loading
numba and LLVM takes about 120 MB of memory, once per process.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np

__all__ = ["count_fused", "fused_available"]

# Channels of at least this many positions are counted channel by channel in the main loop (one
# pass); shorter ones from the row's mask afterwards (the inner loop is too short to vectorise).
_CHANNEL_MAJOR_FROM = 128

_lock = threading.Lock()
_compiled: Any = None  # the numba dispatcher; False once known to be unavailable
_scratch = threading.local()


def _count_rows(
    x: Any,
    thr: Any,
    inf: Any,
    pre: int,
    nch: int,
    post: int,
    channels: bool,
    unit_acc: Any,
    unit_total: Any,
    mrow: Any,
    per_sample: Any,
    ch_counts: Any,
    ch_per_sample: Any,
    dead: Any,
) -> int:  # pragma: no cover - compiled by numba (its Python form is not run)
    """The loop numba compiles: counts of ``x`` (batch, units) into the given arrays.

    Per-unit counts are summed in uint8 ``unit_acc`` (vectorises with the float compare) and,
    for batches over 255 rows, moved into the int64 ``unit_total`` every 255 rows. ``thr`` and
    ``inf`` have ``x``'s dtype; ``not |v| < inf`` is true exactly for NaN and +-Inf.
    """
    batch, units = x.shape
    nonfinite = 0
    pending = 0
    by_channel = channels and post >= _CHANNEL_MAJOR_FROM
    for b in range(batch):
        if pending == 255:
            for u in range(units):
                unit_total[u] += unit_acc[u]
                unit_acc[u] = 0
            pending = 0
        pending += 1
        row = x[b]
        flag = np.uint8(0)  # any NaN or Inf in the row
        total: Any = 0  # (local annotations are for mypy; numba ignores them)
        if by_channel:
            # Long channels (large feature maps): each channel's count in the same pass.
            for c in range(nch):
                dead[c] = True
            for i in range(pre):
                for c in range(nch):
                    base = (i * nch + c) * post
                    cnt: Any = np.int32(0)
                    for p in range(post):
                        a = abs(row[base + p])
                        m = a <= thr
                        unit_acc[base + p] += np.uint8(m)
                        cnt += np.int32(m)
                        flag |= np.uint8(not (a < inf))
                    total += cnt
                    if cnt != post:
                        dead[c] = False
        else:
            # The row's mask, kept for the per-sample and per-channel sums below.
            for u in range(units):
                a = abs(row[u])
                m = np.uint8(a <= thr)
                mrow[u] = m
                unit_acc[u] += m
                flag |= np.uint8(not (a < inf))
            if not channels:
                for u in range(units):
                    total += mrow[u]
            elif pre == 1 and post == 1:  # the units are the channels
                for c in range(units):
                    total += mrow[c]
                    ch_counts[c] += mrow[c]
                ch_per_sample[b] = total
            else:
                for c in range(nch):
                    dead[c] = True
                for i in range(pre):
                    for c in range(nch):
                        base = (i * nch + c) * post
                        cnt = 0
                        for p in range(post):
                            cnt += mrow[base + p]
                        total += cnt
                        if cnt != post:
                            dead[c] = False
        if channels and not (pre == 1 and post == 1):  # (that case is counted above)
            nd = 0
            for c in range(nch):
                if dead[c]:
                    ch_counts[c] += 1
                    nd += 1
            ch_per_sample[b] = nd
        if flag:
            for u in range(units):
                if not abs(row[u]) < inf:
                    nonfinite += 1
        per_sample[b] = total
    if unit_total.shape[0]:
        for u in range(units):
            unit_total[u] += unit_acc[u]
    return nonfinite


def _disabled() -> bool:
    return os.environ.get("INTROSCOPE_NUMBA", "").strip().lower() in ("0", "false", "no", "off")


def _load() -> Any:
    """The compiled loop, or None (numba missing, unusable here, or turned off)."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                _compiled = _compile() or False
    return _compiled or None


def _compile() -> Any:
    if _disabled():
        return None
    try:
        import numba
    except Exception:  # noqa: BLE001 - absent, or a numba built for another numpy
        return None
    if getattr(getattr(numba, "config", None), "DISABLE_JIT", False):
        return None  # NUMBA_DISABLE_JIT=1: njit returns the Python loop (hundreds of x slower)
    try:
        kernel = numba.njit(cache=True, nogil=True, boundscheck=False)(_count_rows)
    except Exception:  # noqa: BLE001 - no writable cache location: compile for this process
        kernel = numba.njit(nogil=True, boundscheck=False)(_count_rows)
    return None if kernel is _count_rows else kernel


def fused_available() -> bool:
    """Whether batches are counted by the compiled loop (numba installed and not turned off)."""
    return _load() is not None


# A mask row longer than this is allocated per call rather than kept by the thread.
_KEEP_ROW_BYTES = 8 << 20


def _mask_row(units: int) -> np.ndarray:
    """The thread's row of mask bytes (a fresh one above ``_KEEP_ROW_BYTES``)."""
    if units > _KEEP_ROW_BYTES:
        return np.empty(units, np.uint8)
    row = getattr(_scratch, "row", None)
    if row is None or row.size < units:
        row = _scratch.row = np.empty(units, np.uint8)
    return row[:units]


Counts = tuple[np.ndarray, np.ndarray, int, "np.ndarray | None", "np.ndarray | None"]


def count_fused(
    flat: np.ndarray, atol: float, channels: tuple[int, int, int] | None
) -> Counts | None:
    """What ``_kernel.count_batch(flat, atol, channels)`` counts, by the compiled loop, as
    ``(unit_counts, per_sample, nonfinite, channel_counts, channel_per_sample)`` (the channel
    arrays None without ``channels``); None when it does not apply (numba unavailable, or not a
    native C-contiguous float32/float64 batch)."""
    global _compiled
    dt = flat.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8) or not dt.isnative:
        return None
    if flat.ndim != 2 or not flat.flags.c_contiguous:
        return None
    kernel = _load()
    if kernel is None:
        return None
    batch, units = flat.shape
    # As numpy 2 compares float32 data with a Python float: in the data's dtype. An atol beyond
    # the dtype's range (numpy 1 compares that in float64) is left to numpy.
    with np.errstate(over="ignore"):
        thr = dt.type(atol)
    if not np.isfinite(thr):
        return None
    unit_acc = np.zeros(units, np.uint8)
    unit_total = np.zeros(units if batch > 255 else 0, np.int64)
    per_sample = np.empty(batch, np.int64)
    if channels is None:
        pre, nch, post = 1, 0, units
    else:
        pre, nch, post = channels
    ch_counts = np.zeros(nch, np.int64)
    ch_per_sample = np.zeros(batch if channels is not None else 0, np.int64)
    dead = np.empty(nch, np.bool_)
    try:
        nonfinite = kernel(
            flat,
            thr,
            dt.type(np.inf),
            pre,
            nch,
            post,
            channels is not None,
            unit_acc,
            unit_total,
            _mask_row(0 if channels is not None and post >= _CHANNEL_MAJOR_FROM else units),
            per_sample,
            ch_counts,
            ch_per_sample,
            dead,
        )
    except Exception as exc:  # noqa: BLE001 - a compiler failure here: numpy counts instead
        with _lock:
            _compiled = False
        warnings.warn(
            f"IUA: numba could not compile the fused counting loop ({type(exc).__name__}: "
            f"{exc}); counting with numpy from now on (same numbers, slower). Set "
            f"INTROSCOPE_NUMBA=0 to skip numba.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    counts = unit_acc if batch <= 255 else unit_total
    if channels is None:
        return counts, per_sample, int(nonfinite), None, None
    return counts, per_sample, int(nonfinite), ch_counts, ch_per_sample
