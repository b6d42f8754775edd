"""Counting inactive values of one batch of one response, in cache-sized chunks of samples.

Against zero, ``numpy.isclose(x, 0, rtol, atol)`` is ``|x - 0| <= atol + rtol * 0``, i.e.
``|x| <= atol`` computed in ``x``'s floating dtype (integers and bools are compared as float64,
as ``isclose`` does). NaN and Inf are never close to zero, so they count as active; the caller
decides what to do with the number of non-finite values reported here.

float32 and float64 batches are counted by ``_fused``'s compiled loop when numba is installed
(the same numbers in one pass); the numpy code here counts the rest, and everything without numba.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._fused import count_fused

__all__ = ["BatchCounts", "count_batch", "work_dtype"]

# Rows of a batch are processed in chunks of about this many bytes so that |x| and the mask stay
# in cache between the two passes that read them (about 2x faster than whole-batch temporaries).
_CHUNK_BYTES = 2 << 20
# Below this many units per sample one vectorised row count beats a Python loop over rows.
_LOOP_ROWS_FROM = 2048
# Per-unit counts are summed in uint8 (fast, vectorised) and flushed before they could overflow.
_U8_MAX_ROWS = 255


# Row counts of wide masks add the mask as uint64 words, _WORD_BLOCK words at a time: each of
# a word's 8 bytes is 0 or 1, so each byte of the sum counts its lane (at most _WORD_BLOCK < 256,
# no carry into the next byte); the bytes of the block sums are then added up.
_WORD_BLOCK = 128

_scratch = threading.local()

# Batches of at most this many bytes (and _U8_MAX_ROWS rows) are counted in a few whole-array
# operations: the chunked path's fixed cost (~15 us a call) is most of a small batch's time
# (a monitor on a small model, or a batch of one at inference).
_SMALL_BYTES = 32 << 10

# dtype -> (unsigned integer dtype of its width, bits of +Inf); native byte order only.
_UNSIGNED_VIEW: dict[str, tuple[np.dtype[np.unsignedinteger[Any]], np.unsignedinteger[Any]]] = {
    "f2": (np.dtype(np.uint16), np.uint16(0x7C00)),
    "f4": (np.dtype(np.uint32), np.uint32(0x7F800000)),
    "f8": (np.dtype(np.uint64), np.uint64(0x7FF0000000000000)),
}


def _buffers(rows: int, units: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread scratch (|x| chunk, mask chunk, uint8 row), reused from call to call.

    Fresh multi-MiB arrays come from ``mmap`` and page-fault on every first touch, which cost
    more than the counting itself on large responses; about ``_CHUNK_BYTES`` stay allocated.
    """
    need = rows * units
    if need * dtype.itemsize > 4 * _CHUNK_BYTES:  # one huge row: not worth keeping
        return (
            np.empty((rows, units), dtype),
            np.empty((rows, units), bool),
            np.empty(units, np.uint8),
        )
    cached = getattr(_scratch, "bufs", None)
    if (
        cached is None
        or cached[0].size < need * dtype.itemsize
        or cached[1].size < need
        or cached[2].size < units
    ):
        size = max(need * dtype.itemsize, 0 if cached is None else cached[0].size)
        cached = (
            np.empty(size, np.uint8),
            np.empty(max(need, 0 if cached is None else cached[1].size), bool),
            np.empty(max(units, 0 if cached is None else cached[2].size), np.uint8),
        )
        _scratch.bufs = cached
    raw, mask, row = cached
    absval = raw[: need * dtype.itemsize].view(dtype).reshape(rows, units)
    return absval, mask[:need].reshape(rows, units), row[:units]


def _row_counts_by_words(mask: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = count_nonzero(mask[i])`` for a C-contiguous bool mask whose rows are a whole
    number of ``_WORD_BLOCK`` uint64 words (2.5x faster than one ``count_nonzero`` per row)."""
    k = mask.shape[0]
    words = mask.view(np.uint64).reshape(k, -1, _WORD_BLOCK)
    lanes = np.add.reduce(words, axis=2)  # (k, blocks) uint64, every byte <= _WORD_BLOCK
    np.add.reduce(lanes.view(np.uint8).reshape(k, -1), axis=1, dtype=np.int64, out=out)


# Channels of at most this many uint64 words of mask are reduced by and-ing word columns (one
# long strided pass per word); longer ones by one reduction per channel.
_FOLD_WORDS_UP_TO = 12
# Every byte 1: the uint64 word of 8 True bools.
_ALL_TRUE = np.uint64(0x0101010101010101)


def _channel_word_counts(
    mask: np.ndarray, nch: int, post: int, per_sample: np.ndarray
) -> np.ndarray:
    """``(k, C)`` bool all-inactive channels of a C-contiguous ``(k, C * post)`` mask whose
    ``post`` is a multiple of 8; writes each row's number of True values to ``per_sample``.

    The channel's mask words are summed in runs of at most 255: byte ``b`` of a run's sum
    counts the words whose lane ``b`` is True (no carry), so the run is all-True when its sum
    is ``len(run) * _ALL_TRUE``, and the bytes of a row's sums add up to its True values.
    """
    k = mask.shape[0]
    words = mask.reshape(k * nch, post).view(np.uint64)
    nw = words.shape[1]
    if nw <= _FOLD_WORDS_UP_TO:
        acc = words[:, 0].copy()
        for j in range(1, nw):
            np.add(acc, words[:, j], out=acc)
        runs = [(acc, nw)]
    else:
        runs = [
            (np.add.reduce(words[:, j : j + 255], axis=1), min(255, nw - j))
            for j in range(0, nw, 255)
        ]
    dead = None
    for i, (acc, length) in enumerate(runs):
        full = np.equal(acc, np.uint64(length) * _ALL_TRUE)
        dead = full if dead is None else np.logical_and(dead, full, out=dead)
        counts = np.add.reduce(acc.view(np.uint8).reshape(k, -1), axis=1, dtype=np.int64)
        if i == 0:
            per_sample[...] = counts
        else:
            per_sample += counts
    assert dead is not None
    return dead.reshape(k, nch)


def _channels_all_inactive(mask: np.ndarray, channels: tuple[int, int, int]) -> np.ndarray:
    """``(k, C)`` bool: every unit of channel ``c`` inactive in row ``i`` of the C-contiguous
    ``(k, pre * C * post)`` mask (``channels = (pre, C, post)``).

    numpy reduces a short last axis one row at a time (~20 ns per row): for 8x8 or 4x4
    feature maps that costs 4-15x the comparison itself. Masks whose spatial size is a
    multiple of 8 are read as uint64 words instead (8 units per word, a word is all-True when
    it equals ``_ALL_TRUE``), and up to ``_FOLD_WORDS_UP_TO`` words per channel are and-ed as
    whole columns, each one long vectorised pass.
    """
    k = mask.shape[0]
    pre, nch, post = channels
    rows = k * pre * nch
    if post == 1:
        per_row = mask.reshape(k, pre, nch)
    elif post % 8 == 0 and mask.flags.c_contiguous:
        words = mask.reshape(rows, post).view(np.uint64)
        nw = words.shape[1]
        if nw <= _FOLD_WORDS_UP_TO:
            acc = words[:, 0].copy()
            for j in range(1, nw):
                np.bitwise_and(acc, words[:, j], out=acc)
        else:
            acc = np.bitwise_and.reduce(words, axis=1)
        per_row = np.equal(acc, _ALL_TRUE).reshape(k, pre, nch)
    else:
        per_row = np.logical_and.reduce(mask.reshape(rows, post), axis=1).reshape(k, pre, nch)
    return per_row[:, 0] if pre == 1 else np.logical_and.reduce(per_row, axis=1)


@dataclass
class BatchCounts:
    """What one batch adds to the state of one response."""

    unit_counts: np.ndarray  # (units,) uint8 or int64: samples of the batch with the unit inactive
    per_sample: np.ndarray  # int64 (batch,): inactive units of each sample
    nonfinite: int  # NaN or +-Inf values in the batch
    channel_counts: np.ndarray | None = None  # int64 (channels,)
    channel_per_sample: np.ndarray | None = None  # int64 (batch,): inactive channels per sample


def work_dtype(dtype: np.dtype) -> np.dtype | None:
    """The real floating dtype ``|x|`` is compared in, or None when ``dtype`` is not numeric."""
    if dtype.kind == "f":
        return dtype
    if dtype.kind == "c":
        return np.empty(0, dtype).real.dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    return None


def _count_small(
    flat: np.ndarray, atol: float, channels: tuple[int, int, int] | None, wdt: np.dtype
) -> BatchCounts:
    """``count_batch`` of a small batch (at most ``_U8_MAX_ROWS`` rows): the same numbers."""
    bits = _UNSIGNED_VIEW.get(flat.dtype.str[1:]) if flat.dtype.isnative else None
    nonfinite = 0
    if bits is not None and np.maximum.reduce(flat.view(bits[0]), axis=None) < bits[1]:
        mask = np.less_equal(flat, atol)  # finite and >= 0: compared as it is
    else:
        a = np.abs(flat) if flat.dtype.kind in "fc" else np.abs(flat.astype(wdt))
        mask = np.less_equal(a, atol)
        if flat.dtype.kind in "fc" and not np.isfinite(np.maximum.reduce(a, axis=None)):
            nonfinite = int(a.size - np.count_nonzero(np.isfinite(a)))
    unit_counts = np.add.reduce(mask, axis=0, dtype=np.uint8)
    per_sample = np.add.reduce(mask, axis=1, dtype=np.int64)
    if channels is None:
        return BatchCounts(unit_counts, per_sample, nonfinite)
    dead = _channels_all_inactive(mask, channels)
    return BatchCounts(
        unit_counts,
        per_sample,
        nonfinite,
        np.add.reduce(dead, axis=0, dtype=np.int64),
        np.add.reduce(dead, axis=1, dtype=np.int64),
    )


def count_batch(
    flat: np.ndarray,
    atol: float,
    channels: tuple[int, int, int] | None = None,
) -> BatchCounts:
    """Count inactive values of ``flat`` (batch, units); ``channels`` is (pre, C, post) of units.

    A channel is inactive for a sample when every unit of that channel (all positions) is.
    """
    batch, units = flat.shape
    wdt = work_dtype(flat.dtype)
    assert wdt is not None, "caller checks the dtype"
    if batch and units:
        # The compiled one-pass loop when numba is installed (faster at every size measured).
        fused = count_fused(flat, atol, channels)
        if fused is not None:
            return BatchCounts(*fused)
    if 0 < batch <= _U8_MAX_ROWS and 0 < batch * units * wdt.itemsize <= _SMALL_BYTES:
        return _count_small(flat, atol, channels, wdt)
    direct_abs = flat.dtype.kind in "fc"
    rows = int(max(1, min(batch, _U8_MAX_ROWS, _CHUNK_BYTES // max(1, units * wdt.itemsize))))
    absval, mask, tmp8 = _buffers(rows, units, wdt)
    acc8 = np.zeros(units, dtype=np.uint8)
    acc_rows = 0
    # int64 per-unit counts only for batches of more rows than uint8 counts: otherwise the
    # uint8 sums are returned as they are (no int64 temporary, one pass fewer).
    unit_counts: np.ndarray | None = None
    per_sample = np.empty(batch, dtype=np.int64)
    nonfinite = 0
    ch_counts = ch_per_sample = None
    if channels is not None:
        ch_counts = np.zeros(channels[1], dtype=np.int64)
        ch_per_sample = np.empty(batch, dtype=np.int64)
    # IEEE floats seen as unsigned integers of the same width: the finite non-negative values
    # (sign bit clear, exponent not all ones) are exactly those below the bits of +Inf, so one
    # integer maximum tells whether a chunk is all finite and >= 0 (ReLU outputs).
    native = flat.dtype.isnative and units > 0
    bits = _UNSIGNED_VIEW.get(flat.dtype.str[1:]) if native else None
    check_finite = flat.dtype.kind in "fc" and units > 0
    # Channels-first responses whose spatial size is a whole number of uint64 words.
    channel_words = channels is not None and channels[0] == 1 and channels[2] % 8 == 0

    for start in range(0, batch, rows):
        stop = min(batch, start + rows)
        k = stop - start
        src = flat[start:stop]
        m = mask[:k]
        # A chunk of finite values >= 0 (ReLU outputs) needs no |x| pass: it is compared as
        # it is. A chunk with a negative value (-0.0 included), NaN or Inf takes the |x| path,
        # which counts the non-finite values.
        if bits is not None and np.maximum.reduce(src.view(bits[0]), axis=None) < bits[1]:
            np.less_equal(src, atol, out=m)
        else:
            a = absval[:k]
            if direct_abs:
                np.abs(src, out=a)
            else:
                a[...] = src
                np.abs(a, out=a)
            np.less_equal(a, atol, out=m)
            # Finite values compare below +Inf; NaN propagates through maximum.reduce.
            if check_finite and not np.isfinite(np.maximum.reduce(a, axis=None)):
                nonfinite += int(k * units - np.count_nonzero(np.isfinite(a)))

        dead = None
        if channel_words:
            # One pass over the mask's words gives both the channel test and the row counts.
            _, nch, post = channels  # type: ignore[misc]
            dead = _channel_word_counts(m, nch, post, per_sample[start:stop])
        elif units >= _LOOP_ROWS_FROM and units % (8 * _WORD_BLOCK) == 0:
            _row_counts_by_words(m, per_sample[start:stop])
        elif units >= _LOOP_ROWS_FROM:
            for i in range(k):
                per_sample[start + i] = np.count_nonzero(m[i])
        else:
            np.add.reduce(m, axis=1, dtype=np.int64, out=per_sample[start:stop])

        if acc_rows + k > _U8_MAX_ROWS:
            if unit_counts is None:
                unit_counts = np.zeros(units, dtype=np.int64)
            unit_counts += acc8
            acc8[...] = 0
            acc_rows = 0
        m8 = m.view(np.uint8)
        if k == 1:
            np.add(acc8, m8[0], out=acc8)
        else:
            np.add.reduce(m8, axis=0, dtype=np.uint8, out=tmp8)
            np.add(acc8, tmp8, out=acc8)
        acc_rows += k

        if channels is not None:
            if dead is None:
                dead = _channels_all_inactive(m, channels)
            assert ch_per_sample is not None  # set with ch_counts when channels is given
            np.add.reduce(dead, axis=1, dtype=np.int64, out=ch_per_sample[start:stop])
            ch_counts += np.add.reduce(dead, axis=0, dtype=np.int64)

    if unit_counts is None:
        unit_counts = acc8
    else:
        unit_counts += acc8
    return BatchCounts(unit_counts, per_sample, nonfinite, ch_counts, ch_per_sample)
