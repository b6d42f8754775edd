"""Documented introspector usage, as a user type-checks it (mypy --strict: no error expected)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from introscope.base import Batch, Producer, ResponseInfo, multi_introspect, pipeline
from introscope.introspectors import (
    IUA,
    PFA,
    DatasetReport,
    DimensionReduction,
    Duplicates,
    DuplicatesThresholdStrategyType,
    PFARecipe,
    ReportConfig,
)


def layer_kinds(info: ResponseInfo) -> bool:
    kind: ResponseInfo.LayerKind = info.layer.kind
    layer: ResponseInfo.Layer = info.layer
    made = ResponseInfo.Layer("conv1", ResponseInfo.LayerKind.CONV_2D, "Conv2d")
    return kind is ResponseInfo.LayerKind.CONV_2D and layer == made


def one_pass(p: Producer) -> tuple[IUA, PFA]:
    iua, pfa = multi_introspect(IUA.introspect, PFA.introspect, producer=p)
    iua2, pfa2 = multi_introspect(IUA(), PFA.accumulator(), producer=p)
    iua3, pfa3 = multi_introspect(
        IUA.introspect, functools.partial(PFA.introspect, batch_size=64), producer=p
    )
    acc = DimensionReduction.pca_accumulator(target_dimensions=2)
    (dr,) = multi_introspect(acc, producer=p)
    many = multi_introspect(IUA(), IUA(), IUA(), IUA(), IUA(), producer=p)
    print(iua2.results, pfa2.get_recipe(), iua3, pfa3, dr.strategies, len(many))
    return iua, pfa


def finalized(p: Producer) -> tuple[PFA, Duplicates, DimensionReduction]:
    acc = PFA.accumulator()
    acc.update_batch(Batch({"x": np.zeros((2, 3))}))
    pfa: PFA = acc.finalize()
    dup: Duplicates = Duplicates.accumulator().finalize()
    dr: DimensionReduction = DimensionReduction.pca_accumulator(target_dimensions=2).finalize()
    return pfa, dup, dr


def iua_results(iua: IUA) -> tuple[list[int], float, list[Any]]:
    res: IUA.Result = iua.results["emb"]
    inactive: list[int] = res.inactive
    arr: np.ndarray = res.inactive_array
    table = IUA.show(iua)
    chart = IUA.show(iua, vis_type=IUA.VisType.CHART, response_names=["emb"])
    again = IUA.show(iua, vis_type="table", details=True)
    kind: str = "table"  # DNIKit types vis_type as str: a str variable passes through
    IUA.show(iua, vis_type=kind)
    print(arr, table, chart, again)
    return inactive, res.mean_inactive, res.unit_inactive_proportion


def pfa_recipes(pfa: PFA) -> dict[str, PFARecipe]:
    recipes: dict[str, PFARecipe] = pfa.get_recipe(
        strategy=PFA.Strategy.Size(0.5), unit_strategy=PFA.UnitSelectionStrategy.AbsMin()
    )
    strat: PFA.Strategy.KL = PFA.Strategy.KL()
    ustrat: PFA.UnitSelectionStrategy.L1Max = PFA.UnitSelectionStrategy.L1Max()
    kl = pfa.get_recipe(strategy=strat, unit_strategy=ustrat)
    PFA.show([kl, recipes])
    PFA.show(kl, vis_type=PFA.VisType.CHART)
    for name, recipe in kl.items():
        keep: list[int] = recipe.units_to_keep
        print(name, recipe.original_output_count, recipe.recommended_output_count, keep)
    return recipes


def duplicates(p: Producer) -> list[list[int]]:
    th: DuplicatesThresholdStrategyType = Duplicates.ThresholdStrategy.Percentile(98)
    dup = Duplicates.introspect(p, threshold=th)
    slope: Duplicates.ThresholdStrategy.Slope = Duplicates.ThresholdStrategy.Slope(sensitivity=5)
    dup2 = Duplicates.introspect(p, threshold=slope)
    cands: Sequence[Duplicates.DuplicateSetCandidate] = dup.results["emb"]
    out: list[list[int]] = []
    for c in cands:
        out.append(list(c.indices))
        print(c.size, c.mean, c.std, c.projection, c.batch.batch_size)
    print(dup.count, dup.thresholds["emb"], dup.neighbor_search["emb"], dup2)
    return out


def dimension_reduction(p: Producer) -> DimensionReduction:
    pca: DimensionReduction.Strategy.PCA = DimensionReduction.Strategy.PCA(2)
    std: DimensionReduction.Strategy.StandardPCA = DimensionReduction.Strategy.StandardPCA(2)
    tsne: DimensionReduction.Strategy.TSNE | None = None
    umap: DimensionReduction.Strategy.UMAP | None = None
    pacmap: DimensionReduction.Strategy.PaCMAP | None = None
    dr = DimensionReduction.introspect(p, strategies=pca)
    dr2 = DimensionReduction.introspect(p, strategies={"emb": std})
    print(dr2, tsne, umap, pacmap, pipeline(p, dr))
    return dr


def report(p: Producer) -> int:
    config = ReportConfig(projection=DimensionReduction.Strategy.PCA(2), split_familiarity_min=5)
    rep = DatasetReport.introspect(p, config=config, batch_size=8)
    rep.to_disk("runs/report")
    again: DatasetReport = DatasetReport.from_disk("runs/report")
    print(again)
    return len(rep.data)


def monitors(net: Any, x: Any) -> tuple[IUA, PFA]:
    with IUA.monitor(net) as m:
        net(x)
    res: IUA = m.result
    with PFA.monitor(net, ["0"]) as m2:
        net(x)
    return res, m2.result
