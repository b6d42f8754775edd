"""PFA sums: float32 blocks whose mean drifted from the shift are re-centred on their own mean.

Rows sorted by class put later blocks far from the first batch's shift; their float32 Gram
products then lose (offset / spread)**2 of precision unless re-centred (``_recentre``).
"""

from __future__ import annotations

import numpy as np
import pytest

from introscope.introspectors.pfa import PFACovarianceState, _host_sums, _recentre
from introscope.introspectors.pfa._sums_math import staging_rows


def _stream(
    x: np.ndarray, batch: int, state: PFACovarianceState | None = None
) -> PFACovarianceState:
    state = PFACovarianceState() if state is None else state
    for i in range(0, len(x), batch):
        state.update("f", x[i : i + batch])
    return state


def _rel(cov: np.ndarray, x: np.ndarray) -> float:
    """Max abs error against float64 np.cov of the same data, relative to the largest entry."""
    ref = np.cov(x.astype(np.float64), rowvar=False)
    return float(np.abs(cov - ref).max() / np.abs(ref).max())


@pytest.fixture
def spy(monkeypatch) -> list[int]:
    """Counts the re-centred blocks."""
    calls: list[int] = []
    recentre = _host_sums.recentre

    def counted(*args):  # noqa: ANN002, ANN202
        calls.append(1)
        return recentre(*args)

    monkeypatch.setattr(_host_sums, "recentre", counted)
    return calls


def _integer_groups(units: int, rows: int, groups: int, offset: int) -> np.ndarray:
    """Small integers about per-group, per-unit integer offsets, sorted by group (float32)."""
    rng = np.random.default_rng(3)
    parts = [np.zeros(units)] + [
        rng.integers(-offset, offset, size=units) for _ in range(groups - 1)
    ]
    x = np.concatenate([rng.integers(-8, 9, size=(rows, units)) + p for p in parts])
    return x.astype(np.float32)


def test_sorted_integer_groups_are_summed_exactly(spy) -> None:
    # 64 units: staging blocks of 4,096 rows, one group each. Re-centred on the group's
    # (integer) mean, every float32 product and sum is an integer below 2**24: exact. About
    # the first group's shift they reach 1e6 * 8,192 (old code: 7.8e-7 here, 1.8e-6 merged).
    units = 64
    rows = staging_rows(units, 4)
    x = _integer_groups(units, rows, 4, 1000)
    state = _stream(x, 512)
    assert _rel(state.covariance("f"), x) < 1e-13  # (the last block is added when read)
    assert len(spy) == 3  # the three later groups

    # Merged states (the first two groups, the last two) equal one pass over all of them, to
    # float64 rounding.
    half = 2 * rows
    merged = _stream(x[:half], 512).merged(_stream(x[half:], 512))
    np.testing.assert_allclose(
        merged.covariance("f"),
        state.covariance("f"),
        rtol=0,
        atol=1e-13 * np.abs(state.covariance("f")).max(),
    )

    # The state dict holds the re-centred sums as any other; a rebuilt state reads the same.
    restored = PFACovarianceState.from_state_dict(state.state_dict())
    np.testing.assert_array_equal(restored.covariance("f"), state.covariance("f"))


def test_sorted_integer_batches_on_the_path_about_zero(spy) -> None:
    # Batches of 1,024 rows about zero, without a staging copy (the first batch is within one
    # std of zero), later ones 1,000 away: each re-centred into a scratch block, exact (old
    # code: 6.7e-7).
    x = _integer_groups(64, 2048, 3, 1000)
    keep = x.copy()
    state = _stream(x, 1024)
    assert state.states["f"]._direct
    assert len(spy) == 4
    np.testing.assert_array_equal(x, keep)  # the caller's batches are not changed
    assert _rel(state.covariance("f"), x) < 1e-13


def _two_groups(offset: float, n: int = 20_000, units: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((units, units)) / np.sqrt(units)
    z = rng.standard_normal((n, units)) * np.geomspace(1, 0.01, units) @ mix
    z[n // 2 :] += offset
    return z.astype(np.float32)


def test_sorted_float32_classes_staged(spy) -> None:
    # 20,000 x 32, the second half 1,000 away, batches of 500 (staging blocks of 8,192 rows):
    # 1.4e-7 here (the block that holds both halves dominates), 5.2e-7 with the old code.
    x = _two_groups(1000.0)
    state = _stream(x, 500)
    assert _rel(state.covariance("f"), x) < 2.5e-7
    assert len(spy) == 2


def test_drifting_relu_batches_about_zero(spy) -> None:
    # 64 ReLU units, batches of 1,024 about zero, rows after the first 2,048 raised by 5:
    # 5.5e-8 here, 2.0e-6 with the old code.
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((64, 64)) / 8
    x = np.maximum(rng.standard_normal((20_480, 64)) @ mix, 0)
    x[2048:] += 5.0
    x = x.astype(np.float32)
    state = _stream(x, 1024)
    assert state.states["f"]._direct and len(spy) == 18
    assert _rel(state.covariance("f"), x) < 2e-7


@pytest.mark.parametrize("batch", [1024, 256])
def test_drifting_block_with_dead_late_and_tiny_units(spy, batch) -> None:
    rng = np.random.default_rng(7)
    x = np.abs(rng.standard_normal((8192, 8))) + 0.1
    x[4096:] += 10.0  # every live unit drifts in the second half
    x[:, 0] = 0.0  # dead throughout: its re-centred column stays exactly zero
    x[:4096, 1] = 0.0  # dead in the first rows (no spread), alive later: counts as drifting
    x[:, 2] = 1e-20 * (rng.standard_normal(8192) + 5.0 * (np.arange(8192) >= 4096))
    x = x.astype(np.float32)
    cov = _stream(x, batch).covariance("f")
    assert spy  # re-centred
    assert not cov[0].any() and not cov[:, 0].any()
    ref = np.cov(x.astype(np.float64), rowvar=False)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    live = slice(1, None)
    # Unit 2's float32 squares underflow: its block is redone in float64, entry by entry right.
    err = np.abs(cov - ref)[live, live] / scale[live, live]
    assert err.max() < 1e-6


def test_drift_after_a_state_dict_round_trip(spy) -> None:
    # The tolerances of a rebuilt state come from its sums; drifting blocks still re-centre
    # (1.1e-7; old code 5.1e-7).
    x = _two_groups(1000.0)
    first = _stream(x[:9000], 500)
    resumed = _stream(x[9000:], 500, PFACovarianceState.from_state_dict(first.state_dict()))
    assert spy
    assert _rel(resumed.covariance("f"), x) < 2.5e-7


@pytest.mark.parametrize(
    ("units", "batch", "n"), [(64, 1024, 10_240), (96, 500, 12_000), (256, 32, 4_096)]
)
def test_data_that_does_not_drift_takes_the_unchanged_path(
    monkeypatch, spy, units, batch, n
) -> None:
    rng = np.random.default_rng(units)
    mix = rng.standard_normal((units, units)) / np.sqrt(units)
    x = np.maximum(rng.standard_normal((n, units)) @ mix + 0.2, 0).astype(np.float32)
    x[:, :3] = 0.0  # dead units
    cov = _stream(x, batch).covariance("f")
    assert not spy
    # The expectation from the path without the drift test at all.
    monkeypatch.setattr(_recentre.Drift, "drifts", lambda self, sums, rows: False)
    np.testing.assert_array_equal(cov, _stream(x, batch).covariance("f"))
