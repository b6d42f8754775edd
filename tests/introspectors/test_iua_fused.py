"""IUA's compiled one-pass counting loop (numba) gives exactly the numpy kernel's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.introspectors import IUA
from introscope.introspectors.iua import _fused, _kernel

needs_numba = pytest.mark.skipif(
    not _fused.fused_available(), reason="numba is not installed (the 'fast' extra)"
)


def _numpy_counts(monkeypatch, flat, atol, channels):
    with monkeypatch.context() as m:
        m.setattr(_kernel, "count_fused", lambda *_: None)
        return _kernel.count_batch(flat, atol, channels)


def _assert_same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a.unit_counts, np.int64), b.unit_counts)
    assert a.unit_counts.dtype == b.unit_counts.dtype  # uint8 up to 255 rows, else int64
    np.testing.assert_array_equal(a.per_sample, b.per_sample)
    assert a.per_sample.dtype == b.per_sample.dtype == np.int64
    assert a.nonfinite == b.nonfinite
    if b.channel_counts is None:
        assert a.channel_counts is None and a.channel_per_sample is None
    else:
        np.testing.assert_array_equal(a.channel_counts, b.channel_counts)
        np.testing.assert_array_equal(a.channel_per_sample, b.channel_per_sample)


@needs_numba
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_loop_gives_numpys_numbers(monkeypatch, seed: int, dtype) -> None:
    rng = np.random.default_rng(seed)
    for pre, nch, post in (
        (1, 1, 1),
        (1, 7, 1),
        (1, 4, 16),
        (1, 3, 1024),
        (2, 3, 5),
        (3, 2, 8),
        (2, 2, 130),
    ):
        for batch in (1, 2, 37, 255, 256, 300, 600):
            x = rng.standard_normal((batch, pre * nch * post)) * 2
            x[rng.random(x.shape) < 0.5] = 0.0
            if seed % 2:
                x = np.abs(x)  # ReLU outputs
            x[rng.random(x.shape) < 0.02] = 5e-9  # below atol: inactive
            x[rng.random(x.shape) < 0.02] = -0.0
            x[rng.random(x.shape) < 0.02] = -3e-9
            x[rng.random(x.shape) < 0.02] = 1.5e-8  # above atol (in float32 too)
            if seed % 3 == 0:
                x[rng.random(x.shape) < 0.01] = np.nan
                x[rng.random(x.shape) < 0.01] = -np.inf
                x[0, 0] = np.inf
            x[:, : post * min(nch, 2)] = 0.0  # a dead channel or two
            flat = np.ascontiguousarray(x.astype(dtype))
            for atol in (0.0, 1e-8, 0.75):
                for channels in (None, (pre, nch, post)):
                    got = _fused.count_fused(flat, atol, channels)
                    assert got is not None
                    _assert_same(
                        _kernel.BatchCounts(*got), _numpy_counts(monkeypatch, flat, atol, channels)
                    )


@needs_numba
def test_count_batch_uses_the_fused_loop_only_where_it_applies(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((10, 12)), 0)
    calls = []
    real = _kernel.count_fused

    def spy(flat, atol, channels):
        out = real(flat, atol, channels)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_kernel, "count_fused", spy)
    for arr in (
        x.astype(np.float32),
        x,  # float64
        x.astype(np.float16),
        x.astype(">f4"),  # byte-swapped
        np.asfortranarray(x)[:, ::2],  # not C-contiguous
        (x > 0.5).astype(np.int8),
    ):
        got = _kernel.count_batch(arr, 1e-8, None)
        _assert_same(got, _numpy_counts(monkeypatch, arr, 1e-8, None))
    assert calls == [True, True, False, False, False, False]


def test_turned_off_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("INTROSCOPE_NUMBA", "0")
    monkeypatch.setattr(_fused, "_compiled", None)
    assert not _fused.fused_available()
    x = np.zeros((3, 4), np.float32)
    assert _fused.count_fused(x, 0.0, None) is None
    assert _kernel.count_batch(x, 0.0, None).per_sample.tolist() == [4, 4, 4]


def test_a_compiler_failure_falls_back_to_numpy_with_one_warning(monkeypatch) -> None:
    def broken(*_):
        raise RuntimeError("no LLVM target here")

    monkeypatch.setattr(_fused, "_compiled", broken)
    x = np.zeros((3, 4), np.float32)
    with pytest.warns(RuntimeWarning, match="no LLVM target here.*INTROSCOPE_NUMBA=0"):
        assert _fused.count_fused(x, 0.0, None) is None
    assert _fused._compiled is False  # not tried again
    assert _kernel.count_batch(x, 0.0, None).per_sample.tolist() == [4, 4, 4]


@needs_numba
def test_iua_results_equal_with_and_without_the_fused_loop(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    conv = np.maximum(rng.standard_normal((700, 8, 4, 4)) - 0.3, 0).astype(np.float32)
    conv[:, 2] = 0.0
    fc = np.maximum(rng.standard_normal((700, 33)), 0)

    def producer(batch_size: int):
        from introscope.base import Batch

        for i in range(0, 700, batch_size):
            yield Batch({"conv": conv[i : i + batch_size], "fc": fc[i : i + batch_size]})

    fused = IUA.introspect(producer, batch_size=300)
    monkeypatch.setattr(_kernel, "count_fused", lambda *_: None)
    plain = IUA.introspect(producer, batch_size=300)
    for name in ("conv", "fc"):
        a, b = fused.results[name], plain.results[name]
        assert a == b
        np.testing.assert_array_equal(a.inactive_array, b.inactive_array)
        np.testing.assert_array_equal(a.unit_inactive_count_array, b.unit_inactive_count_array)


@needs_numba
def test_numba_disable_jit_leaves_counting_to_numpy(monkeypatch) -> None:
    """NUMBA_DISABLE_JIT=1 makes njit return the Python loop: numpy counts instead."""
    import numba

    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    monkeypatch.setattr(_fused, "_compiled", None)
    assert not _fused.fused_available()


@needs_numba
def test_an_atol_beyond_float32_is_left_to_numpy(monkeypatch) -> None:
    x = np.array([[np.inf, -np.inf, 1.0, 0.0]], np.float32)
    assert _fused.count_fused(x, 1e300, None) is None
    got = _kernel.count_batch(x, 1e300, None)
    _assert_same(got, _numpy_counts(monkeypatch, x, 1e300, None))


@needs_numba
def test_long_channels_and_huge_rows_keep_no_large_scratch(monkeypatch) -> None:
    monkeypatch.setattr(_fused, "_scratch", __import__("threading").local())
    x = np.zeros((2, 4 * 256), np.float32)
    _fused.count_fused(x, 0.0, (1, 4, 256))  # counted channel by channel: no mask row
    assert getattr(_fused._scratch, "row", np.empty(0)).size == 0
    monkeypatch.setattr(_fused, "_KEEP_ROW_BYTES", 100)
    _fused.count_fused(np.zeros((1, 1000), np.float32), 0.0, None)
    assert getattr(_fused._scratch, "row", np.empty(0)).size == 0
    _fused.count_fused(np.zeros((1, 50), np.float32), 0.0, None)
    assert _fused._scratch.row.size == 50
