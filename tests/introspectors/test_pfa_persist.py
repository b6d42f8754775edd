"""PFA results and states saved and loaded without pickle (the same verbs as IUA)."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA, PFA
from introscope.introspectors.pfa import PFACovarianceState


def _producer(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    low = rng.standard_normal((200, 3)) @ rng.standard_normal((3, 8))
    return {
        "low": low.astype(np.float32),
        "relu": np.maximum(rng.standard_normal((200, 6)), 0),
        "wide": rng.standard_normal((200, 300)),  # fewer samples than units: fails
    }


def test_result_save_load_round_trip(tmp_path, arrays) -> None:
    with pytest.warns(UserWarning, match="'wide'"):
        pfa = PFA.introspect(_producer(arrays), batch_size=64)
    pfa.save(tmp_path / "pfa.npz")
    back = PFA.load(tmp_path / "pfa.npz")
    assert list(back.failed_responses) == ["wide"]
    assert back.covariances.keys() == pfa.covariances.keys()
    for name, res in pfa.covariances.items():
        got = back.covariances[name]
        np.testing.assert_array_equal(got.covariances, res.covariances)
        np.testing.assert_array_equal(got.eigenvalues, res.eigenvalues)
        np.testing.assert_array_equal(got.eigenvectors, res.eigenvectors)
        np.testing.assert_array_equal(got.inactive_units, res.inactive_units)
        assert got.original_output_count == res.original_output_count
    for strategy in (PFA.Strategy.KL(), PFA.Strategy.Energy(0.9), PFA.Strategy.Size(0.5)):
        assert back.get_recipe(strategy=strategy) == pfa.get_recipe(strategy=strategy)


def test_state_save_load_keeps_accumulating(tmp_path, arrays) -> None:
    fields = {k: v for k, v in arrays.items() if k != "wide"}
    first = PFA.accumulator(epsilon_inactive=1e-3)
    first.update_batch(Batch({k: v[:120] for k, v in fields.items()}))
    first.save(tmp_path / "state.npz")
    back = PFACovarianceState.load(tmp_path / "state.npz")
    assert back.epsilon_inactive == 1e-3 and back.count("low") == 120
    back.update_batch(Batch({k: v[120:] for k, v in fields.items()}))
    whole = PFA.introspect(_producer(fields), batch_size=120, epsilon_inactive=1e-3)
    got = back.finalize()
    for name, res in whole.covariances.items():
        # float64 "relu" to rounding; float32 "low" is multiplied in float32 per staged block.
        # (errors scale with the variances, so small off-diagonal entries get an absolute bound)
        tol = 1e-12 if name == "relu" else 1e-6
        scale = float(np.max(np.diag(res.covariances)))
        np.testing.assert_allclose(
            got.covariances[name].covariances, res.covariances, rtol=tol, atol=tol * scale
        )
    # PFA.load also reads a saved state (and finishes it).
    from_state = PFA.load(tmp_path / "state.npz")
    assert from_state.covariances.keys() == {"low", "relu"}
    with pytest.raises(IntroscopeError, match="not a 'IUA'"):
        IUA.load(tmp_path / "state.npz")


def test_pure_merge_and_in_place_absorb(arrays) -> None:
    from introscope.introspectors._accumulator import merge_all

    a, b = PFA.accumulator(), PFA.accumulator()
    a.update("relu", arrays["relu"][:100])
    b.update("relu", arrays["relu"][100:])
    pure = a.merged(b)
    assert a.count("relu") == 100 and pure.count("relu") == 200
    also_pure = a.merge(b)  # as every accumulator's merge: the inputs stay as they were
    assert also_pure is not a and a.count("relu") == 100 and also_pure.count("relu") == 200
    # merge_all merges pure too: calling it twice gives the same count (it once doubled).
    parts = [a, b, a.spawn()]
    parts[2].update("relu", arrays["relu"][:50])
    assert merge_all(parts).count("relu") == merge_all(parts).count("relu") == 250
    assert a.absorb(b) is a and a.count("relu") == 200
    np.testing.assert_array_equal(a.covariance("relu"), pure.covariance("relu"))
    np.testing.assert_allclose(
        pure.covariance("relu"), np.cov(arrays["relu"], rowvar=False), rtol=1e-10
    )


def test_changing_field_sets_are_an_error(arrays) -> None:
    def producer(batch_size: int):
        yield Batch({"relu": arrays["relu"][:10]})
        yield Batch({"relu": arrays["relu"][10:20], "low": arrays["low"][10:20]})

    with pytest.raises(IntroscopeError, match=r"PFA: batch 1 has fields \['low', 'relu'\]"):
        PFA.introspect(producer)


def test_merging_states_with_different_settings_is_refused(arrays) -> None:
    from introscope.exceptions import IntroscopeValueError

    a, b = PFA.accumulator(epsilon_inactive=1e-8), PFA.accumulator(epsilon_inactive=1e-3)
    a.update("relu", arrays["relu"][:100])
    b.update("relu", arrays["relu"][100:])
    with pytest.raises(IntroscopeValueError, match="different settings"):
        a.merge(b)
    with pytest.raises(IntroscopeValueError, match="different settings"):
        a.absorb(b)
    assert a.count("relu") == 100  # refused before anything changed
    c = PFA.accumulator(precision="float64")  # sums merge whatever formed their products
    c.update("relu", arrays["relu"][100:])
    assert a.merge(c).count("relu") == 200
    raising, warning = IUA(), IUA(nonfinite="warn")
    raising.update("r", arrays["relu"][:10])
    warning.update("r", arrays["relu"][10:20])
    with pytest.raises(IntroscopeValueError, match="nonfinite"):
        raising.merge(warning)
