"""IUA results saved and loaded without pickle, and IUA on the accumulator contract."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch, multi_introspect
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA, PFA


def _producer(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


@pytest.fixture(autouse=True)
def numpy_kernel(monkeypatch) -> None:
    """This file's kernel tests check the numpy paths; test_iua_fused.py checks numba's loop
    against them (everything else counts with whichever is installed)."""
    from introscope.introspectors.iua import _kernel

    monkeypatch.setattr(_kernel, "count_fused", lambda *_: None)


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    conv = np.maximum(rng.standard_normal((60, 4, 3, 3)) - 0.4, 0).astype(np.float32)
    conv[:, 1] = 0.0  # a dead channel
    return {"conv": conv, "fc": np.maximum(rng.standard_normal((60, 9)), 0)}


def test_save_load_round_trip_is_exact(tmp_path, arrays) -> None:
    iua = IUA.introspect(_producer(arrays), batch_size=16, channel_axis={"conv": 1})
    path = tmp_path / "iua.npz"
    iua.save(path)
    back = IUA.load(path)
    assert back.results.keys() == iua.results.keys()
    for name, res in iua.results.items():
        assert back.results[name] == res
        np.testing.assert_array_equal(back.results[name].inactive, res.inactive)
    assert back.channel_results["conv"] == iua.channel_results["conv"]
    assert back.channel_results["conv"].dead_units() == 1
    assert (back.rtol, back.atol) == (iua.rtol, iua.atol)
    assert back.summary() == iua.summary()
    # A loaded analysis keeps accumulating, with the same field set and channel axes.
    more = {k: v[:10] for k, v in arrays.items()}
    back.update_batch(Batch(more))
    again = IUA.introspect(
        _producer({k: np.concatenate([v, v[:10]]) for k, v in arrays.items()}),
        batch_size=16,
        channel_axis={"conv": 1},
    )
    assert back.results["conv"] == again.results["conv"]
    assert back.channel_results["conv"] == again.channel_results["conv"]
    with pytest.raises(IntroscopeError, match="earlier batches had"):
        back.update_batch(Batch({"fc": arrays["fc"][:2]}))
    with np.load(path, allow_pickle=False) as raw:  # a plain npz, readable without pickle
        assert "__introscope__" in raw.files


def test_state_dict_of_a_merge_equals_one_pass(arrays) -> None:
    halves = [IUA.accumulator(), IUA.accumulator()]
    for i, acc in enumerate(halves):
        acc.update_batch(Batch({k: v[i * 30 : (i + 1) * 30] for k, v in arrays.items()}))
    shipped = [IUA.from_state_dict(dict(h.state_dict())) for h in halves]
    merged = shipped[0].merge(shipped[1]).finalize()
    whole = IUA.introspect(_producer(arrays), batch_size=30)
    for name, res in whole.results.items():
        assert merged.results[name] == res
    assert merged.nbytes == sum(s.nbytes for s in merged.states.values())
    assert IUA.state_type.capabilities.exact and "samples" in IUA.state_type.capabilities.grows_with


def test_nonfinite_counts_survive_save(tmp_path, arrays) -> None:
    bad = dict(arrays)
    bad["fc"] = arrays["fc"].copy()
    bad["fc"][[2, 40], 3] = np.nan
    with pytest.warns(
        RuntimeWarning, match=r"counted as active \(see IUA.Result.nonfinite\): 'fc': 2"
    ):
        iua = IUA.introspect(_producer(bad), batch_size=16, nonfinite="warn")
    iua.save(tmp_path / "x.npz")
    back = IUA.load(tmp_path / "x.npz")
    assert back.results["fc"].nonfinite == 2 and back.nonfinite_counts == {"fc": 2}


def test_multi_introspect_with_accumulator_instances(arrays) -> None:
    iua, pfa = multi_introspect(
        IUA.accumulator(atol=0.1), PFA.accumulator(), producer=_producer({"fc": arrays["fc"]})
    )
    alone = IUA.introspect(_producer({"fc": arrays["fc"]}), atol=0.1)
    assert iua.results["fc"] == alone.results["fc"]
    assert list(pfa.covariances) == ["fc"]


@pytest.mark.parametrize("chunk", [64, 1 << 21])  # many chunks per batch, or one
def test_kernel_paths_agree_with_isclose(monkeypatch, chunk: int) -> None:
    """Non-negative chunks skip |x|; chunks with negatives, -0.0, NaN or +-Inf take it."""
    from introscope.introspectors.iua import _kernel

    monkeypatch.setattr(_kernel, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(_kernel, "_SMALL_BYTES", 0)  # the chunked path (small: below)
    rng = np.random.default_rng(2)
    x = np.maximum(rng.standard_normal((40, 6, 5)), 0).astype(np.float32)
    x[3, 0, 0] = -0.0
    x[5, 1, 1] = np.inf  # in a non-negative chunk
    x[20, 2, 2] = np.nan
    x[30] *= -1  # negatives (and -0.0) in this chunk
    x[31, 0, 0] = -np.inf
    x[32, 0, 1] = 5e-9  # below atol: inactive
    flat = x.reshape(40, -1)
    got = _kernel.count_batch(flat, 1e-8, (1, 6, 5))
    inactive = np.isclose(flat, 0, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(got.unit_counts, inactive.sum(axis=0))
    np.testing.assert_array_equal(got.per_sample, inactive.sum(axis=1))
    dead = inactive.reshape(40, 6, 5).all(axis=2)
    np.testing.assert_array_equal(got.channel_counts, dead.sum(axis=0))
    np.testing.assert_array_equal(got.channel_per_sample, dead.sum(axis=1))
    assert got.nonfinite == 3
    # The scratch buffers are reused: a second, smaller call gives its own numbers.
    small = _kernel.count_batch(flat[:7], 1e-8, None)
    np.testing.assert_array_equal(small.per_sample, inactive[:7].sum(axis=1))


@pytest.mark.parametrize("chunk", [4096, 1 << 21])
@pytest.mark.parametrize(
    "pre, post",
    # post 1 (channels last); not a word multiple; 1, 2, 8, 12 words (column folds); 13 and
    # 128 words (one reduction per channel); 256 words (too many for byte lanes)
    [
        (1, 1),
        (3, 1),
        (1, 5),
        (1, 8),
        (1, 16),
        (1, 64),
        (1, 96),
        (1, 104),
        (1, 1024),
        (1, 2048),
        (2, 16),
        (3, 5),
    ],
)
def test_kernel_channel_paths_agree_with_isclose(
    monkeypatch, chunk: int, pre: int, post: int
) -> None:
    """Every way the kernel finds all-inactive channels gives isclose's answer."""
    from introscope.introspectors.iua import _kernel

    monkeypatch.setattr(_kernel, "_CHUNK_BYTES", chunk)
    monkeypatch.setattr(_kernel, "_SMALL_BYTES", 0)  # the chunked path (small: below)
    rng = np.random.default_rng(post * 7 + pre)
    batch, nch = 37, 6
    x = np.maximum(rng.standard_normal((batch, pre, nch, post)), 0).astype(np.float32)
    x[:, :, 1] = 0.0  # channel 1 dead in every sample
    x[::3, :, 4] = 0.0  # channel 4 dead in every third sample
    x[5, :, 2] = 3e-9  # below atol: dead
    x[7, 0, 3, 0] = 0.0  # one position only: not dead
    x[9, :, 0] = 0.0
    x[9, -1, 0, -1] = 1.0  # all but the last position: not dead
    if pre == 1 and post >= 8:
        x[11, 0, 5, :8] = 0.0  # one whole word inactive, the rest active
    flat = x.reshape(batch, -1)
    got = _kernel.count_batch(flat, 1e-8, (pre, nch, post))
    inactive = np.isclose(flat, 0, rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(got.unit_counts, inactive.sum(axis=0))
    np.testing.assert_array_equal(got.per_sample, inactive.sum(axis=1))
    dead = inactive.reshape(batch, pre, nch, post).all(axis=(1, 3))
    np.testing.assert_array_equal(got.channel_counts, dead.sum(axis=0))
    np.testing.assert_array_equal(got.channel_per_sample, dead.sum(axis=1))
    assert got.nonfinite == 0


def test_kernel_scratch_grows_for_any_dtype_and_shape_sequence() -> None:
    from introscope.introspectors.iua import _kernel

    rng = np.random.default_rng(4)
    for dtype, shape in [
        (np.float64, (8, 20)),
        (np.float16, (8, 20)),  # more rows per chunk for the same bytes
        (np.float32, (300, 7)),
        (np.int8, (5, 3000)),
        (np.float64, (3, 70_000)),
    ]:
        x = (rng.standard_normal(shape) * 2).astype(dtype)
        got = _kernel.count_batch(x, 1e-8)
        inactive = np.isclose(x.astype(np.float64), 0, rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(got.per_sample, inactive.sum(axis=1), err_msg=str(dtype))
        np.testing.assert_array_equal(got.unit_counts, inactive.sum(axis=0), err_msg=str(dtype))


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", ">f4", ">f8"])
def test_kernel_fast_path_is_exact_for_every_float_width_and_byte_order(monkeypatch, dtype) -> None:
    from introscope.introspectors.iua import _kernel

    monkeypatch.setattr(_kernel, "_SMALL_BYTES", 0)  # the chunked path (small: below)
    rng = np.random.default_rng(6)
    x = np.maximum(rng.standard_normal((12, 50)), 0)
    x[1, 3] = 1e-9  # inactive (below atol; 0 in float16)
    x[2, 4] = np.inf
    x[4, 5] = -np.nan  # sign bit set
    x[6, 6] = np.nan
    x[8, 7] = -0.0
    x[9, 8] = -1e-9  # negative but inactive
    x[10, 9] = np.finfo(np.dtype(dtype)).tiny / 4  # subnormal: inactive
    x = x.astype(dtype)
    for chunk_rows in (1, 3, 12):
        got = _kernel.count_batch(x, 1e-8) if chunk_rows == 12 else None
        if got is None:
            old = _kernel._CHUNK_BYTES
            _kernel._CHUNK_BYTES = chunk_rows * 50 * x.dtype.itemsize
            try:
                got = _kernel.count_batch(x, 1e-8)
            finally:
                _kernel._CHUNK_BYTES = old
        inactive = np.abs(x.astype(np.float64)) <= 1e-8
        np.testing.assert_array_equal(got.per_sample, inactive.sum(axis=1))
        np.testing.assert_array_equal(got.unit_counts, inactive.sum(axis=0))
        assert got.nonfinite == 3


@pytest.mark.parametrize("seed", range(6))
def test_kernel_small_batch_path_gives_the_chunked_paths_numbers(monkeypatch, seed) -> None:
    """Batches under _SMALL_BYTES take a few whole-array operations: the same numbers and
    dtypes as the chunked path, for every dtype, layout and special value."""
    from introscope.introspectors.iua import _kernel

    rng = np.random.default_rng(seed)
    cases = []
    for dtype in ("<f4", ">f4", "<f8", "<f2", "<c8", "i1", "u2", "?"):
        for pre, nch, post in ((1, 3, 1), (1, 4, 8), (1, 2, 16), (2, 3, 5), (1, 5, 7)):
            batch = int(rng.integers(1, 40))
            x = rng.standard_normal((batch, pre * nch * post)) * 2
            x[rng.random(x.shape) < 0.4] = 0.0
            if seed % 2:
                x = np.abs(x)  # the non-negative (ReLU) fast path
            if np.dtype(dtype).kind in "fc":
                x[0, 0] = 5e-9  # below atol
                if seed % 3 == 0:
                    x[-1, -1] = np.nan
                    x[0, -1] = -np.inf
            cases.append((x.astype(dtype), (pre, nch, post)))
    for x, channels in cases:
        small = _kernel.count_batch(x, 1e-8, channels)
        monkeypatch.setattr(_kernel, "_SMALL_BYTES", 0)
        chunked = _kernel.count_batch(x, 1e-8, channels)
        monkeypatch.setattr(_kernel, "_SMALL_BYTES", 32 << 10)
        for field in ("unit_counts", "per_sample", "channel_counts", "channel_per_sample"):
            a, b = getattr(small, field), getattr(chunked, field)
            assert a.dtype == b.dtype, (x.dtype, channels, field)
            np.testing.assert_array_equal(a, b, err_msg=f"{x.dtype} {channels} {field}")
        assert small.nonfinite == chunked.nonfinite
        work = x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)
        np.testing.assert_array_equal(small.per_sample, (np.abs(work) <= 1e-8).sum(axis=1))


def test_wide_rows_are_counted_by_words_exactly() -> None:
    from introscope.introspectors.iua import _kernel

    rng = np.random.default_rng(8)
    for units in (1024, 3072, 32768):
        x = np.maximum(rng.standard_normal((9, units)), 0).astype(np.float32)
        x[0] = 0.0  # every unit inactive: each byte lane reaches its maximum
        x[1] = 1.0  # none inactive
        got = _kernel.count_batch(x, 1e-8)
        inactive = x <= 1e-8
        np.testing.assert_array_equal(got.per_sample, inactive.sum(axis=1))
        np.testing.assert_array_equal(got.unit_counts, inactive.sum(axis=0))


def test_pending_uint16_counts_flush_exactly_past_65535_samples() -> None:
    """Small batches' per-unit counts are summed in uint16 first; past 65,535 samples (and
    whenever read) they move to int64 without loss."""
    from introscope.introspectors.iua._state import Tally

    rng = np.random.default_rng(5)
    tally = Tally((3,))
    total = np.zeros(3, dtype=np.int64)
    for i in range(300):  # 300 x 255 = 76,500 samples
        counts = rng.integers(0, 256, size=3).astype(np.uint8)
        counts[0] = 255  # unit 0 inactive in every sample
        tally.add(counts, np.zeros(255, dtype=np.int64))
        total += counts
        if i == 150:
            np.testing.assert_array_equal(tally.counts, total)  # a read mid-way flushes
    tally.add(np.array([1, 2, 3], dtype=np.int64), np.zeros(4, dtype=np.int64))  # int64 batch
    total += [1, 2, 3]
    np.testing.assert_array_equal(tally.counts, total)
    assert tally.counts[0] == 300 * 255 + 1 and tally.n_samples == 300 * 255 + 4
    merged = tally.merged(tally)
    np.testing.assert_array_equal(merged.counts, 2 * total)
