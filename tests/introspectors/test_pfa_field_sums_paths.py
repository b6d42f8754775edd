"""PFA sums: the float64 path about zero for large batches agrees with the staged shifted path."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.exceptions import IntroscopeValueError
from introscope.introspectors.pfa import PFACovarianceState
from introscope.introspectors.pfa._host_sums import _RAW_ROWS


def _stream(x: np.ndarray, batch: int, **kwargs) -> PFACovarianceState:
    state = PFACovarianceState(**kwargs)
    for i in range(0, len(x), batch):
        state.update("f", x[i : i + batch])
    return state


@pytest.fixture
def relu64() -> np.ndarray:
    rng = np.random.default_rng(11)
    x = np.maximum(rng.standard_normal((3000, 12)) @ rng.standard_normal((12, 12)), 0)
    x[:, 0] = 0.0  # a dead unit: shift 0, still the path about zero
    return x


def test_large_float64_batches_go_about_zero_and_match_np_cov(relu64) -> None:
    state = _stream(relu64, _RAW_ROWS)
    sums = state.states["f"]
    # Every full batch about zero; the last, shorter one staged about the shift.
    assert sums._raw is not None and sums._raw[0] == len(relu64) // _RAW_ROWS * _RAW_ROWS
    assert np.any(sums.shift_numpy() != 0)  # ... although the shift is not zero
    ref = np.cov(relu64, rowvar=False)
    np.testing.assert_allclose(state.covariance("f"), ref, rtol=1e-12, atol=1e-13)
    # The staged path (small batches) gives the same covariance to float64 rounding.
    small = _stream(relu64, 50)
    assert small.states["f"]._raw is None
    np.testing.assert_allclose(state.covariance("f"), small.covariance("f"), rtol=1e-12, atol=1e-13)


def test_mixed_batch_sizes_merges_and_state_dict(relu64) -> None:
    a = PFACovarianceState()
    for lo, hi in [(0, 40), (40, 40 + _RAW_ROWS), (40 + _RAW_ROWS, 1500)]:
        a.update("f", relu64[lo:hi])
    b = _stream(relu64[1500:], 700)
    merged = a.merged(b)
    ref = np.cov(relu64, rowvar=False)
    np.testing.assert_allclose(merged.covariance("f"), ref, rtol=1e-12, atol=1e-13)
    restored = PFACovarianceState.from_state_dict(merged.state_dict())
    np.testing.assert_array_equal(restored.covariance("f"), merged.covariance("f"))
    # Reading the state folds the sums about zero in; accumulating afterwards still works.
    a.update("f", relu64[1500:])
    np.testing.assert_allclose(a.covariance("f"), ref, rtol=1e-12, atol=1e-13)


def test_large_mean_keeps_the_shifted_path() -> None:
    rng = np.random.default_rng(5)
    x = 1e6 + rng.standard_normal((2000, 4))
    state = _stream(x, 1000)
    assert state.states["f"]._raw is None  # mean far from zero: products about the shift
    np.testing.assert_allclose(state.covariance("f"), np.cov(x, rowvar=False), rtol=1e-9)


def test_nan_in_a_large_float64_batch_raises_and_changes_nothing(relu64) -> None:
    state = _stream(relu64[:1000], 500)
    before = state.covariance("f").copy()
    bad = relu64[1000 : 1000 + _RAW_ROWS].copy()
    bad[3, 5] = np.nan
    with pytest.raises(IntroscopeValueError, match="NaN or Inf"):
        state.update("f", bad)
    assert state.count("f") == 1000
    np.testing.assert_array_equal(state.covariance("f"), before)
