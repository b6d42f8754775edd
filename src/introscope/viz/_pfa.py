"""PFA views: a pandas table of recipes and a chart of original vs recommended unit counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from introscope.exceptions import IntroscopeError, require

__all__ = ["pfa_table", "pfa_chart", "PFA_COLUMNS", "PFA_DEFAULT_COLUMNS"]

PFA_COLUMNS = (
    "layer name",
    "original count",
    "recommended count",
    "units to keep",
    "KL divergence",
    "PFA strategy",
    "units ratio",
    "kept energy",
)
PFA_DEFAULT_COLUMNS = PFA_COLUMNS[:4]


def _row(name: str, recipe: Any) -> dict[str, Any]:
    from introscope.introspectors.pfa._recipe import PFAEnergyDiagnostics, PFAKLDiagnostics

    row: dict[str, Any] = {
        "layer name": name,
        "original count": recipe.original_output_count,
        "recommended count": recipe.recommended_output_count,
        "units to keep": set(recipe.units_to_keep),
        "KL divergence": "N/A",
        "PFA strategy": "N/A",
        "units ratio": "N/A",
        "kept energy": "N/A",
    }
    diag = recipe.diagnostics
    if isinstance(diag, PFAKLDiagnostics):
        row.update(
            {
                "KL divergence": diag.kl_divergence,
                "PFA strategy": "PFA KL",
                "units ratio": diag.units_ratio,
            }
        )
    elif isinstance(diag, PFAEnergyDiagnostics):
        row.update({"PFA strategy": "PFA Energy", "kept energy": diag.total_kept_energy})
    return row


def _columns(
    include_columns: Sequence[str] | None, exclude_columns: Sequence[str] | None
) -> list[str]:
    if include_columns is None:
        columns = list(PFA_DEFAULT_COLUMNS)
    elif len(include_columns) == 0:
        columns = list(PFA_COLUMNS)
    else:
        columns = [c for c in include_columns if c in PFA_COLUMNS]
    if exclude_columns is not None:
        columns = [c for c in columns if c not in exclude_columns]
    if not columns:
        raise IntroscopeError(
            f"no columns selected (include={include_columns!r}, exclude={exclude_columns!r}); "
            f"choose from {list(PFA_COLUMNS)}"
        )
    return columns


def pfa_table(
    recipes: Sequence[Mapping[str, Any]],
    *,
    include_columns: Sequence[str] | None = None,
    exclude_columns: Sequence[str] | None = None,
) -> Any:
    """One row per layer of every recipe mapping, as a pandas DataFrame."""
    pd = require("pandas", "report", "PFA.show tables")
    columns = _columns(include_columns, exclude_columns)
    rows = [_row(name, r) for mapping in recipes for name, r in mapping.items()]
    return pd.DataFrame(rows, columns=list(PFA_COLUMNS))[columns].reset_index(drop=True)


def pfa_chart(recipes: Mapping[str, Any]) -> Any:
    """Original and recommended unit counts per layer, as matplotlib Axes."""
    require("matplotlib", "report", "PFA.show charts")
    import matplotlib.pyplot as plt

    names = list(recipes)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 3), 5))
    ax.plot([recipes[n].original_output_count for n in names], "o-", label="original")
    ax.plot([recipes[n].recommended_output_count for n in names], "o-", label="recommended")
    ax.set_xticks(range(len(names)), names, rotation="vertical")
    ax.set_xlabel("layer name")
    ax.set_ylabel("number of units")
    ax.set_title("PFA: original vs recommended units per layer")
    ax.legend()
    ax.grid(True)
    fig.tight_layout()
    return ax
