"""PFA views: a pandas table of recipe rows and a chart of original vs recommended unit counts.

The rows are plain dicts (see ``introscope.introspectors.pfa._rows``); nothing here knows the
recipe classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from introscope.exceptions import IntroscopeError, require

from ._figure import LITERAL

__all__ = ["pfa_table", "pfa_chart", "PFA_COLUMNS", "PFA_DEFAULT_COLUMNS", "EXTRA_COLUMNS"]

# DNIKit's columns, in DNIKit's order
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
# beyond DNIKit: which strategy a row came from, and why a layer has no recipe
EXTRA_COLUMNS = ("strategy", "note")


def _columns(
    include_columns: Sequence[str] | None,
    exclude_columns: Sequence[str] | None,
    *,
    strategy_column: bool,
    note_column: bool,
) -> list[str]:
    known = (*EXTRA_COLUMNS, *PFA_COLUMNS)
    if include_columns is None or len(include_columns) == 0:
        columns = list(PFA_DEFAULT_COLUMNS if include_columns is None else PFA_COLUMNS)
        if strategy_column:
            columns.insert(0, "strategy")
        if note_column:
            columns.append("note")
    else:
        columns = [c for c in include_columns if c in known]
    if exclude_columns is not None:
        columns = [c for c in columns if c not in exclude_columns]
    if not columns:
        raise IntroscopeError(
            f"PFA.show: no columns selected (include_columns={include_columns!r}, "
            f"exclude_columns={exclude_columns!r}); choose from {list(known)}"
        )
    return columns


def pfa_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    include_columns: Sequence[str] | None = None,
    exclude_columns: Sequence[str] | None = None,
    strategy_column: bool = False,
) -> Any:
    """The rows as a pandas DataFrame, in their order.

    ``strategy_column`` puts the ``strategy`` column first (rows of several recipes); a
    ``note`` column appears when a row has one (a layer PFA could not analyse).
    """
    pd = require("pandas", "report", "PFA.show tables")
    columns = _columns(
        include_columns,
        exclude_columns,
        strategy_column=strategy_column,
        note_column=any(r.get("note") for r in rows),
    )
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    if any(r.get("note") for r in rows):
        # A layer PFA could not analyse has no counts: missing values of an integer column,
        # so sums and comparisons over the analysed layers still work (not "N/A" strings).
        for column in ("original count", "recommended count"):
            if column in frame.columns:
                values = [None if r.get("note") else r.get(column) for r in rows]
                frame[column] = pd.array(values, dtype="Int64")
    return frame


def pfa_chart(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Original and recommended unit counts per analysed layer, as matplotlib Axes."""
    plt = require("matplotlib.pyplot", "report", "PFA.show charts")
    skipped = [r["layer name"] for r in rows if r.get("note")]
    rows = [r for r in rows if not r.get("note")]
    names = [r["layer name"] for r in rows]
    # Vertical tick labels take ~0.075 in per character: the plot keeps 3.5 in whatever the
    # names' length (a fixed 5 in height left 1.3 in of plot for 36-character names).
    longest = max((len(str(n)) for n in names), default=0)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 3), 3.5 + 0.075 * longest + 0.6))
    ax.plot([r["original count"] for r in rows], "o-", label="original")
    ax.plot([r["recommended count"] for r in rows], "o-", label="recommended")
    ax.set_xticks(range(len(names)), [str(n) for n in names], rotation="vertical", **LITERAL)
    ax.set_xlabel("layer name")
    ax.set_ylabel("number of units")
    title = "PFA: original vs recommended units per layer"
    if skipped:  # listed in the table with the reason; say here that they are left out
        shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        title += f"\n(not analysed, not drawn: {shown})"
    ax.set_title(title, **LITERAL)
    ax.legend()
    ax.grid(True)
    fig.tight_layout()
    return ax
