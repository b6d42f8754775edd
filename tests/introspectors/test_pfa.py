"""PFA on hand-built covariances and small streams: strategies, unit selection, state, views."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError
from introscope.introspectors import (
    PFA,
    PFACovariancesResult,
    PFAEnergyDiagnostics,
    PFAKLDiagnostics,
)
from introscope.introspectors.pfa import PFACovarianceState, PFAPruningPlan


def _cov(matrix, eps: float = 1e-8) -> PFACovariancesResult:
    return PFACovariancesResult.make_covariance_result(
        covariances=np.asarray(matrix, dtype=float), epsilon_inactive=eps
    )


def _pfa(**layers) -> PFA:
    return PFA([], {name: _cov(m) for name, m in layers.items()})


def _producer(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


# --- covariance result -------------------------------------------------------------------


def test_eigen_descending_clipped_and_columns() -> None:
    cov = _cov([[2.0, 1.0], [1.0, 2.0]])
    np.testing.assert_allclose(cov.eigenvalues, [3.0, 1.0])
    # Columns are eigenvectors, in eigenvalue order.
    np.testing.assert_allclose(cov.covariances @ cov.eigenvectors, cov.eigenvectors * [3.0, 1.0])
    # A PSD matrix whose smallest eigenvalue rounds below zero is clipped to exactly zero.
    v = np.array([1.0, 1e-9, 3.0])
    assert np.all(_cov(np.outer(v, v)).eigenvalues >= 0.0)


def test_inactive_units_relative_to_largest_variance() -> None:
    cov = _cov(np.diag([1.0, 1e-10, 0.5, 0.0]))
    assert cov.inactive_units.tolist() == [1, 3]
    assert _cov(np.diag([1.0, 1e-10]), eps=1e-12).inactive_units.tolist() == []


# --- strategies ----------------------------------------------------------------------------


def test_kl_flat_spectrum_keeps_all() -> None:
    recipe = _pfa(a=np.eye(8)).get_recipe()["a"]
    assert recipe.recommended_output_count == 8
    assert recipe.maximally_correlated_units == []
    assert recipe.diagnostics.kl_divergence == pytest.approx(0.0, abs=1e-12)
    assert recipe.diagnostics.units_ratio == pytest.approx(1.0)


def test_kl_rank_one_keeps_one_and_removes_in_index_order() -> None:
    v = np.ones(5)
    recipe = _pfa(a=np.outer(v, v)).get_recipe()["a"]
    diag = recipe.diagnostics
    assert isinstance(diag, PFAKLDiagnostics)
    assert diag.kl_divergence == pytest.approx(math.log(5), rel=1e-9)
    assert recipe.recommended_output_count == 1
    # Every correlation is 1: all ties, resolved towards the lowest index.
    assert recipe.maximally_correlated_units == [0, 1, 2, 3]
    assert recipe.units_to_keep == [4]


def test_kl_value_on_known_spectrum() -> None:
    values = np.array([4.0, 3.0, 2.0, 1.0])
    p = values / values.sum() + np.finfo(float).eps
    p /= p.sum()
    expected = float(np.sum(p * np.log(p * 4)))
    recipe = _pfa(a=np.diag(values)).get_recipe()["a"]
    assert recipe.diagnostics.kl_divergence == pytest.approx(expected, rel=1e-12)
    ratio = 1 - expected / math.log(4)
    assert recipe.diagnostics.units_ratio == pytest.approx(ratio, rel=1e-12)
    assert recipe.recommended_output_count == math.ceil(4 * ratio)


def test_kl_custom_interpolation_and_one_unit_layer() -> None:
    half = PFA.Strategy.KL(lambda kl, max_kl: 0.5)
    assert _pfa(a=np.eye(6)).get_recipe(strategy=half)["a"].recommended_output_count == 3
    # One unit: DNIKit divides 0 by log(1) = 0; introscope keeps the unit.
    one = _pfa(a=[[2.0]]).get_recipe()["a"]
    assert one.recommended_output_count == 1
    assert one.maximally_correlated_units == []


def test_energy_threshold_count_and_diagnostic() -> None:
    pfa = _pfa(a=np.diag([4.0, 3.0, 2.0, 1.0]))
    r = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.7))["a"]
    assert (r.recommended_output_count, r.diagnostics) == (2, PFAEnergyDiagnostics(7.0))
    r = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.75))["a"]
    assert (r.recommended_output_count, r.diagnostics.total_kept_energy) == (3, 9.0)
    # min_kept_count raises the count; the diagnostic keeps the energy at the threshold.
    r = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.7, min_kept_count=4))["a"]
    assert (r.recommended_output_count, r.diagnostics.total_kept_energy) == (4, 7.0)
    r = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.0))["a"]
    assert r.recommended_output_count == 1
    with pytest.raises(ValueError, match="energy_threshold"):
        PFA.Strategy.Energy(1.5)


def test_size_shared_threshold() -> None:
    pfa = _pfa(a=np.diag([3.0, 1.0]), b=np.diag([1.0, 1.0]))
    # Exclusive cumulative energies: a -> [0, .75], b -> [0, .5]
    assert PFA.Strategy.Size(0.5).threshold(pfa.covariances) == pytest.approx(0.25)
    r = pfa.get_recipe(strategy=PFA.Strategy.Size(0.5))
    assert [r["a"].recommended_output_count, r["b"].recommended_output_count] == [1, 1]
    assert PFA.Strategy.Size(0.9).threshold(pfa.covariances) == pytest.approx(0.675)
    r = pfa.get_recipe(strategy=PFA.Strategy.Size(0.9))
    assert [r["a"].recommended_output_count, r["b"].recommended_output_count] == [1, 2]
    assert isinstance(r["a"].diagnostics, PFAEnergyDiagnostics)
    assert PFA.Strategy.Size(0.0).threshold(pfa.covariances) == pytest.approx(1e-8)
    with pytest.raises(ValueError, match="relative_size"):
        PFA.Strategy.Size(-0.1)


def test_all_constant_layer_keeps_everything() -> None:
    pfa = PFA.introspect(_producer({"c": np.full((20, 4), 3.0)}), batch_size=7)
    cov = pfa.covariances["c"]
    assert cov.inactive_units.tolist() == []
    np.testing.assert_allclose(cov.eigenvalues, 0.0, atol=1e-12)
    assert pfa.get_recipe()["c"].recommended_output_count == 4
    r = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.5))["c"]
    assert r.recommended_output_count == 4


# --- unit selection ------------------------------------------------------------------------

CORR3 = np.array([[1.0, 0.9, 0.3], [0.9, 1.0, 0.5], [0.3, 0.5, 1.0]])


@pytest.mark.parametrize(
    ("unit_strategy", "removed"),
    [("AbsMax", [1]), ("AbsMin", [2]), ("L1Max", [1]), ("L1Min", [2])],
)
def test_unit_selection_hand_checked(unit_strategy: str, removed: list[int]) -> None:
    select = getattr(PFA.UnitSelectionStrategy, unit_strategy)()
    assert select(_cov(CORR3), num_units_to_keep=2).tolist() == removed
    assert select(_cov(CORR3), num_units_to_keep=3).tolist() == []


def test_inactive_units_come_first() -> None:
    cov = np.eye(4)
    cov[0, 0] = 0.0
    cov[1, 2] = cov[2, 1] = 0.8
    for select in PFA.UnitSelectionStrategy.get_algos():
        units = select(_cov(cov), num_units_to_keep=2).tolist()
        assert units[0] == 0 and len(units) == 2
    # Keeping more units than are active removes only the inactive ones.
    assert PFA.UnitSelectionStrategy.L1Max()(_cov(cov), num_units_to_keep=4).tolist() == [0]
    with pytest.raises(ValueError, match="greater than zero"):
        PFA.UnitSelectionStrategy.L1Max()(_cov(cov), num_units_to_keep=0)


# --- streaming state -----------------------------------------------------------------------


def test_state_matches_numpy_cov_and_merges(rng) -> None:
    x = rng.standard_normal((300, 7)) @ rng.standard_normal((7, 7)) + 5.0
    whole = PFACovarianceState()
    for i in range(0, 300, 32):
        whole.update("f", x[i : i + 32])
    np.testing.assert_allclose(whole.covariance("f"), np.cov(x, rowvar=False), rtol=1e-10)
    a, b, c = PFACovarianceState(), PFACovarianceState(), PFACovarianceState()
    a.update("f", x[:100])
    b.update("f", x[100:150])
    b.update("f", x[150:])
    c.update("g", x[:5, :3])
    merged = a.merge(b).merge(c)
    assert merged.count("f") == 300 and merged.count("g") == 5
    np.testing.assert_allclose(merged.covariance("f"), whole.covariance("f"), rtol=1e-9)
    restored = PFACovarianceState.from_state_dict(dict(merged.state_dict()))
    np.testing.assert_array_equal(restored.covariance("f"), merged.covariance("f"))
    results, failed = restored.covariance_results()
    assert failed == [] and list(results) == ["f", "g"]
    pfa = restored.finalize()
    assert (
        isinstance(pfa, PFA) and pfa.failed_responses == [] and list(pfa.covariances) == ["f", "g"]
    )


def test_state_from_torch_tensors_equals_numpy(rng) -> None:
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((64, 5)).astype(np.float32)
    # The torch state sums in float64: compare with float64 products on the host.
    ours, ref = PFACovarianceState(), PFACovarianceState(precision="float64")
    ours.update("f", torch.from_numpy(x[:40]))
    ours.update("f", x[40:])  # numpy into a torch-backed state
    ref.update("f", x)
    assert isinstance(ours.states["f"].outer, torch.Tensor)
    np.testing.assert_allclose(ours.covariance("f"), ref.covariance("f"), rtol=1e-12)
    np.testing.assert_allclose(ours.covariance("f"), ref.covariance("f"), rtol=1e-12)  # again
    twice = np.cov(np.concatenate([x, x]).astype(np.float64), rowvar=False)
    np.testing.assert_allclose(ref.merge(ours).covariance("f"), twice, rtol=1e-12)


def test_state_errors_name_field_and_batch() -> None:
    state = PFACovarianceState()
    with pytest.raises(
        IntroscopeError, match=r"PFA: response 'conv' \(batch 0\) has shape \(2, 3, 3, 4\).*Pooler"
    ):
        state.update("conv", np.zeros((2, 3, 3, 4)), where="batch 0")
    state.update("f", np.zeros((2, 3)))
    with pytest.raises(
        IntroscopeError,
        match=r"PFA: response 'f' \(update\(\)\) has 4 units, but earlier batches had 3",
    ):
        state.update("f", np.zeros((2, 4)))
    bad = np.zeros((2, 3))
    bad[1, 2] = np.nan
    with pytest.raises(IntroscopeError, match=r"PFA: response 'f' \(batch 5\) contains NaN or Inf"):
        state.update("f", bad, where="batch 5")


@pytest.mark.parametrize("rows", [50, 5000])  # staged, and larger than the staging buffer
def test_rejected_batch_leaves_state_unchanged(rng, rows: int) -> None:
    state = PFACovarianceState()
    good = rng.standard_normal((rows, 300))
    state.update("f", good)
    before = state.covariance("f")
    bad = rng.standard_normal((rows, 300))
    bad[-1, -1] = np.inf
    with pytest.raises(IntroscopeError, match="NaN or Inf"):
        state.update("f", bad)
    assert state.count("f") == rows
    np.testing.assert_array_equal(state.covariance("f"), before)
    np.testing.assert_allclose(before, np.cov(good, rowvar=False), rtol=1e-9, atol=1e-12)


def test_introspect_failed_field_warns_and_has_no_recipe(rng) -> None:
    arrays = {"ok": rng.standard_normal((10, 3)), "wide": rng.standard_normal((10, 12))}
    with pytest.warns(UserWarning, match="'wide'"):
        pfa = PFA.introspect(_producer(arrays), batch_size=4)
    assert list(pfa.failed_responses) == ["wide"]
    assert list(pfa.get_recipe()) == ["ok"]
    with pytest.raises(IntroscopeError, match="Pooler"):
        PFA.introspect(_producer({"c": np.zeros((4, 2, 2, 3))}), batch_size=2)


# --- views and plan ------------------------------------------------------------------------


def test_show_table_columns_and_chart() -> None:
    pytest.importorskip("pandas")
    pfa = _pfa(a=CORR3, b=np.diag([4.0, 3.0, 2.0, 1.0]))
    kl = pfa.get_recipe()
    energy = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.7))
    table = PFA.show(kl)
    assert list(table.columns) == [
        "layer name",
        "original count",
        "recommended count",
        "units to keep",
    ]
    full = PFA.show([kl, energy], include_columns=[])
    assert len(full) == 4 and full["PFA strategy"].tolist() == ["PFA KL"] * 2 + ["PFA Energy"] * 2
    assert full["kept energy"].tolist()[:2] == ["N/A", "N/A"]
    assert full["kept energy"].tolist()[3] == 7.0
    assert full["units to keep"].tolist()[3] == {0, 1, 2, 3} - set(energy["b"].units_to_remove)
    some = PFA.show(kl, include_columns=["layer name", "KL divergence"], exclude_columns=["x"])
    assert list(some.columns) == ["layer name", "KL divergence"]
    with pytest.raises(IntroscopeError, match="no columns"):
        PFA.show(kl, include_columns=["layer name"], exclude_columns=["layer name"])
    with pytest.raises(IntroscopeError, match="get_recipe"):
        PFA.show(pfa)
    with pytest.raises(ValueError, match="empty"):
        PFA.show({})
    ax = PFA.show(kl, vis_type=PFA.VisType.CHART)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert list(ax.lines[0].get_ydata()) == [3, 4]
    with pytest.raises(IntroscopeError, match="one recipe"):
        PFA.show([kl, energy], vis_type=PFA.VisType.CHART)


def test_pruning_plan_json_roundtrip(tmp_path) -> None:
    recipes = _pfa(a=CORR3).get_recipe(strategy=PFA.Strategy.Energy(0.5))
    plan = PFA.pruning_plan(recipes)
    layer = plan.layers["a"]
    assert layer.keep + layer.remove != () and sorted(layer.keep + layer.remove) == [0, 1, 2]
    assert list(layer.remove) == sorted(recipes["a"].maximally_correlated_units)
    path = tmp_path / "plan.json"
    plan.save(path)
    assert json.loads(path.read_text())["layers"]["a"]["keep"] == list(layer.keep)
    assert PFAPruningPlan.load(path) == plan
    with pytest.raises(IntroscopeError, match="split"):
        PFAPruningPlan.from_dict(
            {
                "format": "introscope.pfa.pruning_plan/1",
                "layers": {"a": {"original_count": 3, "keep": [0], "remove": [0, 1]}},
            }
        )


def test_covariance_that_overflows_float64_names_the_response():
    import warnings

    from introscope.exceptions import IntroscopeValueError

    x = np.random.default_rng(0).normal(size=(50, 3)) * 1e200  # finite; squares overflow
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(IntroscopeValueError, match="response 'fc' overflows float64"):
            PFA.introspect(lambda bs: iter([Batch({"fc": x})]))
