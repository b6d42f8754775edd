"""PFA covariance state: float32 products about a shift, float64 fallbacks, shifted merges."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from introscope.base import Batch
from introscope.introspectors import PFA
from introscope.introspectors.pfa import PFACovarianceState
from introscope.introspectors.pfa._sums_math import choose_shift, staging_rows

U32 = 2.0**-24  # float32 unit roundoff


def _stream(state: PFACovarianceState, x: np.ndarray, batch: int = 256) -> PFACovarianceState:
    for i in range(0, len(x), batch):
        state.update("f", x[i : i + batch])
    return state


def _bound(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Error bound of the float32 path per entry: (b + 4) u sqrt(Q_ii Q_jj) (module docstring)."""
    z = x.astype(np.float64) - shift
    q = np.einsum("ij,ij->j", z, z) / (len(x) - 1)
    b = staging_rows(x.shape[1], 4)
    # + a float64 allowance for the final (S - T T^T / n) / (n - 1).
    return (b + 4) * U32 * np.sqrt(np.outer(q, q)) + 1e-12 * np.sqrt(np.outer(q, q))


def _correlated(rng, n: int, units: int, mean: float, std: float) -> np.ndarray:
    mix = rng.standard_normal((units, units)) / np.sqrt(units)
    return (mean + std * rng.standard_normal((n, units)) @ mix).astype(np.float32)


def test_float32_path_close_to_float64_cov_with_large_mean(rng) -> None:
    x = _correlated(rng, 20_000, 8, mean=1e3, std=1.0)
    state = _stream(PFACovarianceState(), x)
    sums = state.states["f"]
    assert sums._stage is not None and sums._stage.dtype == np.float32  # float32 products
    ref = np.cov(x.astype(np.float64), rowvar=False)
    err = np.abs(state.covariance("f") - ref)
    bound = _bound(x, sums.shift_numpy())
    assert np.all(err <= bound)
    # In practice the rounding is far below the worst case (random signs): ~sqrt(b) u.
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.max(err / scale) < 1e-5
    # The same products without the shift (float32 per batch, float64 accumulation, as DNIKit
    # does) lose the variance in the cancellation of E[xx^T] - mu mu^T.
    gram, total = np.zeros((8, 8)), np.zeros(8)
    for i in range(0, len(x), 256):
        xb = x[i : i + 256]
        gram += xb.T @ xb  # float32 product
        total += xb.sum(axis=0)
    n = len(x)
    naive = gram / (n - 1) - np.outer(total / n, total / (n - 1))
    naive_err = np.max(np.abs(naive - ref) / scale)
    assert naive_err > 1e-2  # wrong at the percent level
    assert naive_err > 1000 * np.max(err / scale)


def test_precision_float64_and_dtype_routing(rng) -> None:
    x = _correlated(rng, 3000, 6, mean=-40.0, std=3.0)
    ref = np.cov(x.astype(np.float64), rowvar=False)
    exact = _stream(PFACovarianceState(precision="float64"), x)
    assert exact.states["f"]._stage.dtype == np.float64
    np.testing.assert_allclose(exact.covariance("f"), ref, rtol=1e-10, atol=1e-12)
    for dtype, staged in [
        (np.float16, np.float32),
        (np.int16, np.float32),
        (np.int32, np.float64),  # float32 would round large int32 values
        (np.float64, np.float64),
    ]:
        state = _stream(PFACovarianceState(), x.astype(dtype))
        assert state.states["f"]._stage.dtype == staged, dtype
        want = np.cov(x.astype(dtype).astype(np.float64), rowvar=False)
        assert np.all(np.abs(state.covariance("f") - want) <= _bound(x, state.states["f"].shift))
    with pytest.raises(ValueError, match="precision must be one of"):
        PFACovarianceState(precision="float16")


def test_constant_units_have_exactly_zero_variance(rng) -> None:
    x = rng.standard_normal((700, 5)).astype(np.float32)
    x[:, 1] = np.float32(0.1)
    x[:, 3] = 0.0
    cov = _stream(PFACovarianceState(), x, batch=100).covariance("f")
    assert np.all(cov[[1, 3], :] == 0.0) and np.all(cov[:, [1, 3]] == 0.0)


@pytest.mark.parametrize(
    ("scale", "mean"),
    # squares: all underflow to 0, subnormal, overflow float32; a small spread about a mean
    [(1e-25, 0.0), (1e-21, 0.0), (1e30, 0.0), (3e-21, 1e-18)],
)
@pytest.mark.parametrize("batch", [64, 1200])  # staged, and multiplied directly about zero
def test_float32_underflow_and_overflow_fall_back_to_float64(rng, scale, mean, batch) -> None:
    x = (mean + scale * rng.standard_normal((2400, 4))).astype(np.float32)
    got = _stream(PFACovarianceState(), x, batch=batch).covariance("f")
    ref = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.max(np.diag(ref)))
    assert np.all(np.isfinite(got)) and np.all(np.diag(got) > 0)


@pytest.mark.parametrize(
    ("dead", "tiny"),
    # dead units as one run of columns or apart; a unit whose float32 squares all underflow
    # to 0 among them (inside the run, or apart) or none
    [((2, 3, 4), ()), ((0, 3), ()), ((2, 4), (3,)), ((0, 5), (3,))],
)
@pytest.mark.parametrize("batch", [64, 1200])  # staged, and multiplied directly about zero
def test_zero_gram_diagonal_is_a_dead_unit_only_if_its_column_is_zero(
    rng, dead, tiny, batch
) -> None:
    x = rng.standard_normal((2400, 6)).astype(np.float32)
    x[:, list(dead)] = 0.0
    for j in tiny:
        x[:, j] = (1e-30 * rng.standard_normal(2400)).astype(np.float32)  # squares: 0 in float32
    got = _stream(PFACovarianceState(), x, batch=batch).covariance("f")
    ref = np.cov(x.astype(np.float64), rowvar=False)
    assert np.all(got[list(dead)] == 0.0) and np.all(got[:, list(dead)] == 0.0)
    live = [j for j in range(6) if j not in dead]
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))[np.ix_(live, live)]
    assert np.all(np.abs(got - ref)[np.ix_(live, live)] <= 1e-6 * scale)


def test_float32_subtraction_overflow_goes_to_float64() -> None:
    x = np.full((20, 2), -3e38, dtype=np.float32)
    x[10:, 0] = 3e38  # x - shift = 6e38 overflows float32 but is a finite float64
    state = PFACovarianceState()
    state.update("f", x[:10])
    state.update("f", x[10:])
    np.testing.assert_allclose(state.covariance("f"), np.cov(x.astype(np.float64), rowvar=False))


def test_merge_of_differently_shifted_states_equals_one_pass(rng) -> None:
    # A drifting stream: the second half's mean is far from the first's, so the two states'
    # shifts (their first batches' means) differ by ~500 standard deviations.
    x = _correlated(rng, 6000, 7, mean=0.0, std=1.0)
    x[3000:] += np.float32(500.0)
    for precision, rtol in [("float64", 1e-9), ("auto", None)]:
        whole = _stream(PFACovarianceState(precision=precision), x)
        a = _stream(PFACovarianceState(precision=precision), x[:3000])
        b = _stream(PFACovarianceState(precision=precision), x[3000:])
        shift_a, shift_b = a.states["f"].shift_numpy(), b.states["f"].shift_numpy()
        assert np.all(np.abs(shift_b - shift_a) > 400)
        merged = a.merge(b)
        assert merged.count("f") == 6000
        np.testing.assert_array_equal(merged.states["f"].shift_numpy(), shift_a)
        ref = np.cov(x.astype(np.float64), rowvar=False)
        if rtol is not None:
            np.testing.assert_allclose(merged.covariance("f"), whole.covariance("f"), rtol=rtol)
            np.testing.assert_allclose(merged.covariance("f"), ref, rtol=rtol)
        else:
            assert np.all(np.abs(merged.covariance("f") - ref) <= _bound(x, shift_a))
            assert np.all(np.abs(whole.covariance("f") - ref) <= _bound(x, shift_a))
        # Merging into an empty state adopts the other's shift.
        empty = PFACovarianceState().merge(b)
        np.testing.assert_array_equal(empty.states["f"].shift_numpy(), shift_b)
        np.testing.assert_array_equal(empty.covariance("f"), b.covariance("f"))


def test_state_dict_carries_shift_and_keeps_accumulating(rng) -> None:
    x = _correlated(rng, 4000, 5, mean=1e3, std=2.0)
    first = _stream(PFACovarianceState(), x[:2500])
    saved = first.state_dict()
    assert saved["precision"] == "auto"
    np.testing.assert_array_equal(saved["shift_0"], first.states["f"].shift_numpy())
    restored = PFACovarianceState.from_state_dict(dict(saved))
    np.testing.assert_array_equal(restored.covariance("f"), first.covariance("f"))
    _stream(restored, x[2500:])
    ref = np.cov(x.astype(np.float64), rowvar=False)
    assert np.all(np.abs(restored.covariance("f") - ref) <= _bound(x, saved["shift_0"]))
    # A dict without shift keys holds sums about zero.
    x64 = x.astype(np.float64)
    old = {
        "fields": np.array(["f"]),
        "count_0": np.array(len(x)),
        "sum_0": x64.sum(axis=0),
        "outer_0": x64.T @ x64,
    }
    np.testing.assert_allclose(
        PFACovarianceState.from_state_dict(old).covariance("f"), ref, rtol=1e-6
    )


def test_introspect_precision_option(rng) -> None:
    x = _correlated(rng, 500, 6, mean=5.0, std=1.0)

    def producer(batch_size: int):
        for i in range(0, len(x), batch_size):
            yield Batch({"f": x[i : i + batch_size]})

    exact = PFA.introspect(producer, batch_size=64, precision="float64").covariances["f"]
    fast = PFA.introspect(producer, batch_size=64).covariances["f"]
    ref = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(exact.covariances, ref, rtol=1e-10, atol=1e-13)
    shift = choose_shift(x[:64].mean(axis=0, dtype=float), x[:64].std(axis=0, dtype=float))
    assert np.all(np.abs(fast.covariances - ref) <= _bound(x, shift))
    with pytest.raises(ValueError, match="precision"):
        PFA.introspect(producer, precision="half")


def test_shift_is_short_and_near_the_mean() -> None:
    means = np.array([0.4, 1000.3, 0.1, -7.26, 5.0])
    stds = np.array([0.6, 1.0, 0.0, 0.1, 40.0])
    shift = choose_shift(means, stds)
    # Multiples of q, the power of two in (std / 2, std]: 0.5, 1, 1/16, 32.
    np.testing.assert_array_equal(shift, [0.5, 1000.0, np.float32(0.1), -7.25, 0.0])
    assert shift[2] == np.float32(0.1)  # constant in the first batch: the mean itself
    assert np.all(np.abs(shift - means)[stds > 0] <= stds[stds > 0] / 2)
    assert np.all(shift.astype(np.float32) == shift)


def test_float32_path_on_relu_responses_is_as_accurate_as_float32_allows(rng) -> None:
    # ReLU responses: half exact zeros. About a short shift (here a power of two) they stay
    # short; about the plain float32 mean they become one repeated full-precision value whose
    # float32 sums are biased (about 2e-6 relative error on this data instead of ~5e-8).
    z = rng.standard_normal((30_000, 16)) @ rng.standard_normal((16, 64))
    x = np.maximum(z + 0.3 * rng.standard_normal((30_000, 64)), 0).astype(np.float32)
    ref = np.cov(x.astype(np.float64), rowvar=False)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    state = _stream(PFACovarianceState(), x)
    shift = state.states["f"].shift_numpy()
    assert np.all(np.exp2(np.round(np.log2(shift))) == shift)
    assert np.max(np.abs(state.covariance("f") - ref) / scale) < 3e-7


def test_batches_near_zero_are_multiplied_directly_about_zero(rng) -> None:
    """float32 batches of >= 1,024 rows whose units lie within a standard deviation of zero skip
    the staging copy; the covariance stays within the bound of its (smaller) blocks."""
    from introscope.introspectors.pfa import _host_sums

    relu = np.maximum(_correlated(rng, 6000, 12, mean=0.3, std=1.0), 0)
    relu[:, 3] = 0.0  # a dead unit (constant 0) is allowed
    state = _stream(PFACovarianceState(), relu, batch=1500)
    sums = state.states["f"]
    assert sums._direct and not np.any(sums.shift_numpy())
    assert sums._stage is None  # nothing was staged
    ref = np.cov(relu.astype(np.float64), rowvar=False)
    q = np.einsum("ij,ij->j", relu.astype(np.float64), relu) / (len(relu) - 1)
    bound = (1500 + 4) * U32 * np.sqrt(np.outer(q, q)) + 1e-12
    assert np.all(np.abs(state.covariance("f") - ref) <= bound)
    assert np.all(state.covariance("f")[3] == 0.0)
    # The same data in small batches, or with units far from zero, or a constant unit away
    # from zero, keeps the staged path about the short shift.
    assert not _stream(PFACovarianceState(), relu, batch=256).states["f"]._direct
    far = _correlated(rng, 3000, 4, mean=10.0, std=1.0)
    assert not _stream(PFACovarianceState(), far, batch=1500).states["f"]._direct
    constant = relu[:3000].copy()
    constant[:, 0] = 2.0
    got = _stream(PFACovarianceState(), constant, batch=1500)
    assert not got.states["f"]._direct and np.all(got.covariance("f")[0] == 0.0)
    assert _host_sums._DIRECT_ROWS <= 1500


def test_direct_batch_with_nan_is_rejected_whole(rng) -> None:
    x = np.maximum(_correlated(rng, 3300, 6, mean=0.0, std=1.0), 0)
    state = _stream(PFACovarianceState(), x[:2200], batch=1100)
    assert state.states["f"]._direct
    before = state.covariance("f").copy()
    bad = x[2200:].copy()  # 1,100 rows: the direct path
    bad[10, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        state.update("f", bad)
    np.testing.assert_array_equal(state.covariance("f"), before)
    assert state.count("f") == 2200


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (np.float16, 300.0),  # squares overflow float16
        (np.float32, 1e20),  # the sum of squares overflows float32: the min/max check decides
        (np.float32, 1e37),  # x - shift could overflow float32: staged in float64
        (np.float64, 1e150),
        (np.int32, 1e6),
        (np.uint8, 100.0),
    ],
)
def test_small_batches_of_any_magnitude_are_staged_without_warnings(rng, dtype, scale) -> None:
    z = (
        np.abs(rng.standard_normal((900, 5)))
        if dtype == np.uint8
        else rng.standard_normal((900, 5))
    )
    x = (scale * z).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = _stream(PFACovarianceState(), x, batch=32)
        got = state.covariance("f")
    ref = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * np.max(np.abs(ref)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_small_batch_raises_and_changes_nothing(rng, bad, dtype) -> None:
    x = rng.standard_normal((96, 4)).astype(dtype)
    state = _stream(PFACovarianceState(), x, batch=32)
    before = state.covariance("f").copy()
    y = rng.standard_normal((32, 4)).astype(dtype)
    y[7, 2] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="NaN or Inf"):
            state.update("f", y)
    assert state.count("f") == 96
    np.testing.assert_array_equal(state.covariance("f"), before)
    # The next good batch is counted as usual.
    state.update("f", y[:6])
    ref = np.cov(np.concatenate([x, y[:6]]).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(
        state.covariance("f"), ref, rtol=1e-3 if dtype == np.float16 else 1e-5
    )


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_small_first_batches_choose_the_shift_from_enough_rows(rng, batch) -> None:
    # One row has no spread: a shift at a full-precision data value made float32 products
    # 40x less accurate. Small first batches are held until 32 rows choose the shift.
    mix = rng.standard_normal((64, 64))
    x = np.maximum(rng.standard_normal((4000, 64)) @ mix * 0.3 + 0.2, 0).astype(np.float32)
    exact = np.cov(x.astype(np.float64), rowvar=False)
    scale = np.abs(exact).max()
    small = _stream(PFACovarianceState(), x, batch).covariance("f")
    large = _stream(PFACovarianceState(), x, 256).covariance("f")
    assert np.abs(small - exact).max() / scale < 1e-6
    assert np.abs(small - exact).max() <= 2 * np.abs(large - exact).max() + 1e-12 * scale


def test_held_first_rows_check_finiteness_merge_and_save(rng) -> None:
    x = rng.standard_normal((40, 3)).astype(np.float32)
    state = PFACovarianceState()
    state.update("f", x[:4])  # held: fewer rows than choose a shift
    bad = x[4:6].copy()
    bad[1, 2] = np.nan
    with pytest.raises(Exception, match="NaN|non-finite|Inf"):
        state.update("f", bad)
    state.reset()
    for i in range(0, 10, 2):
        state.update("f", x[i : i + 2])  # 10 rows, all held
    other = _stream(PFACovarianceState(), x[10:], 7)
    merged = state.merge(other)
    want = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(merged.covariance("f"), want, rtol=1e-5, atol=1e-6)
    again = PFACovarianceState.from_state_dict(state.state_dict())
    np.testing.assert_allclose(
        again.covariance("f"), np.cov(x[:10].astype(np.float64), rowvar=False), rtol=1e-5, atol=1e-6
    )


def test_a_rejected_batch_after_held_ones_changes_nothing(rng) -> None:
    a, bad, c = (rng.standard_normal((n, 3)).astype(np.float32) for n in (10, 30, 30))
    bad[5, 1] = np.nan
    state = PFACovarianceState()
    state.update("f", a)  # held: fewer rows than choose the shift
    with pytest.raises(Exception, match="NaN|non-finite|Inf"):
        state.update("f", bad)
    state.update("f", c)
    assert state.count("f") == 40
    want = np.cov(np.concatenate([a, c]).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(state.covariance("f"), want, rtol=1e-5, atol=1e-6)
