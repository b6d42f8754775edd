"""PFA.show: which strategy each row came from, layers PFA could not analyse, model order."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest

from introscope.base import Batch
from introscope.introspectors import PFA


def _producer(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


@pytest.fixture
def pfa_with_a_wide_layer() -> PFA:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 2))
    arrays = {
        "relu_10": np.hstack([base, base @ rng.standard_normal((2, 3))]),  # rank 2 of 5
        "relu": rng.standard_normal((40, 4)),
        "relu_2": rng.standard_normal((40, 6)),
        "wide": rng.standard_normal((40, 64)),  # fewer samples than units
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PFA.introspect(_producer(arrays), batch_size=16)


def test_failed_layer_warning_points_at_the_callers_line() -> None:
    arrays = {"ok": np.random.default_rng(0).standard_normal((10, 3)), "wide": np.ones((10, 12))}
    with pytest.warns(UserWarning, match=r"'wide' has fewer samples than units") as caught:
        PFA.introspect(_producer(arrays), batch_size=4)
    assert pathlib.Path(caught[0].filename).resolve() == pathlib.Path(__file__).resolve()


def test_several_recipes_say_which_strategy_each_row_came_from(pfa_with_a_wide_layer) -> None:
    pytest.importorskip("pandas")
    pfa = pfa_with_a_wide_layer
    kl = pfa.get_recipe()
    energy = pfa.get_recipe(
        strategy=PFA.Strategy.Energy(0.9), unit_strategy=PFA.UnitSelectionStrategy.AbsMax()
    )
    assert kl["relu"].strategy == "KL + L1Max"
    assert energy["relu"].strategy == "Energy + AbsMax"
    table = PFA.show([kl, energy])
    assert list(table.columns) == [
        "strategy",
        "layer name",
        "original count",
        "recommended count",
        "units to keep",
        "note",
    ]
    assert table["strategy"].tolist() == ["KL + L1Max"] * 4 + ["Energy + AbsMax"] * 4
    # each recipe in its own (model) order, as DNIKit; then the failed layer, with the reason
    assert table["layer name"].tolist() == ["relu_10", "relu", "relu_2", "wide"] * 2
    wide = table[table["layer name"] == "wide"]
    assert wide["note"].tolist() == ["not analysed: fewer samples (40) than units (64)"] * 2
    # no counts: missing values of integer columns, so sums over the analysed layers work
    assert wide["recommended count"].isna().all() and wide["original count"].isna().all()
    assert str(table["recommended count"].dtype) == "Int64"
    analysed_total = sum(r.recommended_output_count for r in kl.values()) + sum(
        r.recommended_output_count for r in energy.values()
    )
    assert table["recommended count"].sum() == analysed_total
    analysed = table[table["layer name"] == "relu_10"]
    assert analysed["original count"].tolist() == [5, 5]
    assert analysed["note"].tolist() == ["", ""]
    assert analysed["recommended count"].tolist()[0] == kl["relu_10"].recommended_output_count


def test_one_recipe_keeps_dnikits_columns_and_types(pfa_with_a_wide_layer) -> None:
    pytest.importorskip("pandas")
    kl = pfa_with_a_wide_layer.get_recipe()
    assert type(kl).__mro__[1] is dict and list(kl) == ["relu_10", "relu", "relu_2"]
    assert kl.failed == {"wide": "not analysed: fewer samples (40) than units (64)"}
    table = PFA.show(kl)
    assert list(table.columns) == [
        "layer name",
        "original count",
        "recommended count",
        "units to keep",
        "note",
    ]
    assert table["layer name"].tolist() == ["relu_10", "relu", "relu_2", "wide"]
    # a recipe built by hand (as DNIKit's tests do) has no failed layers: DNIKit's four columns
    plain = PFA.show(dict(kl))
    assert list(plain.columns) == [
        "layer name",
        "original count",
        "recommended count",
        "units to keep",
    ]
    # strategy labels are not part of recipe equality
    assert kl["relu"] == pfa_with_a_wide_layer.get_recipe()["relu"]


def test_chart_leaves_out_layers_without_a_recipe(pfa_with_a_wide_layer) -> None:
    pytest.importorskip("matplotlib")
    ax = PFA.show(pfa_with_a_wide_layer.get_recipe(), vis_type=PFA.VisType.CHART)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu_10", "relu", "relu_2"]
    assert list(ax.lines[0].get_ydata()) == [5, 4, 6]
