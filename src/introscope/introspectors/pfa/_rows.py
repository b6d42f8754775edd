"""Plain table rows of PFA recipes, for the views in ``introscope.viz._pfa``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._recipe import PFAEnergyDiagnostics, PFAKLDiagnostics, PFARecipe

__all__ = ["recipe_rows"]

NA = "N/A"


def _label(recipe: PFARecipe) -> str:
    if recipe.strategy:
        return recipe.strategy
    if isinstance(recipe.diagnostics, PFAKLDiagnostics):
        return "KL"
    if isinstance(recipe.diagnostics, PFAEnergyDiagnostics):
        return "Energy"
    return NA


def _row(name: str, recipe: PFARecipe) -> dict[str, Any]:
    row: dict[str, Any] = {
        "strategy": _label(recipe),
        "layer name": name,
        "original count": recipe.original_output_count,
        "recommended count": recipe.recommended_output_count,
        "units to keep": set(recipe.units_to_keep),
        "KL divergence": NA,
        "PFA strategy": NA,
        "units ratio": NA,
        "kept energy": NA,
        "note": "",
    }
    diag = recipe.diagnostics
    if isinstance(diag, PFAKLDiagnostics):
        row["KL divergence"] = diag.kl_divergence
        row["PFA strategy"] = "PFA KL"
        row["units ratio"] = diag.units_ratio
    elif isinstance(diag, PFAEnergyDiagnostics):
        row["PFA strategy"] = "PFA Energy"
        row["kept energy"] = diag.total_kept_energy
    return row


def _failed_row(name: str, reason: str, strategy: str) -> dict[str, Any]:
    row = dict.fromkeys(
        ("original count", "recommended count", "units to keep", "KL divergence"), NA
    )
    row.update({"strategy": strategy, "layer name": name, "PFA strategy": NA, "units ratio": NA})
    row.update({"kept energy": NA, "note": reason})
    return row


def recipe_rows(mappings: Sequence[Mapping[str, PFARecipe]]) -> list[dict[str, Any]]:
    """One row per layer of each recipe mapping, in the mapping's order (as DNIKit: the order of
    ``get_recipe``, which is model order); then the layers PFA could not analyse
    (``PFARecipes.failed``), as rows with a note."""
    rows: list[dict[str, Any]] = []
    for mapping in mappings:
        failed: Mapping[str, str] = getattr(mapping, "failed", {}) or {}
        labels = {_label(r) for r in mapping.values()}
        strategy = labels.pop() if len(labels) == 1 else NA
        rows += [_row(name, recipe) for name, recipe in mapping.items()]
        rows += [_failed_row(name, why, strategy) for name, why in failed.items()]
    return rows
