"""Views of IUA summaries: a DataFrame, heatmap panels, an HTML table and plain text."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from introscope.exceptions import require

from ._figure import LITERAL

__all__ = ["iua_table", "iua_chart", "iua_html", "iua_text", "heatmap_grid"]

Row = dict[str, Any]


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _frac_label(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def iua_table(rows: Sequence[Row], *, details: bool = False) -> Any:
    """DataFrame of ``rows`` in their order: DNIKit's three columns; with ``details`` also unit
    (and channel) counts, dead and mostly-dead units."""
    pd = require("pandas", "report", "IUA.show(vis_type=TABLE)")
    if not details:
        columns = ["response", "mean inactive", "std inactive"]
        return pd.DataFrame.from_records(
            [{c: r[c] for c in columns} for r in rows], columns=columns
        )
    records = []
    any_channels = any(r["channels"] is not None for r in rows)
    any_nonfinite = any(r["nonfinite"] for r in rows)
    p = _frac_label(rows[0]["dead fraction"]) if rows else ""
    for r in rows:
        rec: dict[str, Any] = {
            "response": r["response"],
            "mean inactive": r["mean inactive"],
            "std inactive": r["std inactive"],
            "samples": r["samples"],
            "units": r["units"],
            "dead units": r["dead units"],
            "dead units (%)": _pct(r["dead units"], r["units"]),
            f"units inactive >= {p}": r["mostly dead units"],
            f"units inactive >= {p} (%)": _pct(r["mostly dead units"], r["units"]),
        }
        if any_channels:
            ch = r["channels"]
            rec["channels"] = ch
            rec["dead channels"] = r.get("dead channels")
            rec["dead channels (%)"] = _pct(r["dead channels"], ch) if ch else None
            rec[f"channels inactive >= {p}"] = r.get("mostly dead channels")
            rec[f"channels inactive >= {p} (%)"] = (
                _pct(r["mostly dead channels"], ch) if ch else None
            )
        if any_nonfinite:
            rec["non-finite values"] = r["nonfinite"]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    for col in ("channels", "dead channels", f"channels inactive >= {p}"):
        if col in df:
            df[col] = df[col].astype("Int64")  # counts stay integers beside dense rows' <NA>
    return df


def heatmap_grid(prop: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, str, str]:
    """Lay per-unit proportions out as a 2-d image: channel x position, or a near-square grid."""
    if channel_axis is not None and prop.ndim >= 2:
        img = np.moveaxis(prop, channel_axis, 0).reshape(prop.shape[channel_axis], -1)
        return img, "position (flattened)", "channel"
    if prop.ndim >= 2:
        return prop.reshape(prop.shape[0], -1), "axes 2.. (flattened)", "axis 1"
    size = prop.size
    cols = max(1, math.ceil(math.sqrt(size)))
    rows = max(1, math.ceil(size / cols))
    grid = np.full(rows * cols, np.nan)
    grid[:size] = prop.reshape(-1)
    return grid.reshape(rows, cols), f"unit % {cols}", f"unit // {cols}"


def _title(row: Row) -> str:
    units, dead, mostly = row["units"], row["dead units"], row["mostly dead units"]
    p = _frac_label(row["dead fraction"])
    text = (
        f"{row['response']}  {tuple(row['shape'])}: mean {row['mean inactive']:.1f} "
        f"± {row['std inactive']:.1f} ({_pct(row['mean inactive'], units):.1f}%) inactive "
        f"of {units} units\n"
        f"dead {dead} ({_pct(dead, units):.1f}%), inactive >= {p}: {mostly} "
        f"({_pct(mostly, units):.1f}%)"
    )
    if row["channels"] is not None:
        text += (
            f"; dead channels {row['dead channels']}/{row['channels']} "
            f"({_pct(row['dead channels'], row['channels']):.1f}%)"
        )
    return text


def iua_chart(panels: Sequence[tuple[Row, np.ndarray, int | None]]) -> Any:
    """One heatmap panel per response with a colour bar; one Axes, or an array for several."""
    plt = require("matplotlib.pyplot", "report", "IUA.show(vis_type=CHART)")
    from matplotlib.ticker import MaxNLocator

    n = len(panels)
    fig, axes = plt.subplots(n, 1, figsize=(9.0, 0.6 + 3.0 * n), squeeze=False)
    cmap = plt.get_cmap("magma_r").with_extremes(bad="#d0d0d0")
    for ax, (row, prop, channel_axis) in zip(axes[:, 0], panels):
        img, xlabel, ylabel = heatmap_grid(np.asarray(prop, dtype=float), channel_axis)
        im = ax.imshow(
            np.ma.masked_invalid(img),
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_title(_title(row), fontsize=9, loc="left", **LITERAL)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        # Cells are whole units and channels: integer ticks only (no -0.4 ... 0.4 on a 1x1 grid).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        fig.colorbar(im, ax=ax, label="inactive proportion", fraction=0.04, pad=0.02)
    # The figure title 0.12 in from the top edge and the panels from 0.7 in down, in inches:
    # matplotlib's default places the title at 98 % of the height, which on a tall figure of
    # many panels is more than an inch down, over the first panel's title.
    height = fig.get_figheight()
    fig.suptitle(
        "Inactive unit proportion per unit (dark = inactive more often; grey: no unit)",
        fontsize=10,
        y=1.0 - 0.12 / height,
        va="top",
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / height))
    fig.subplots_adjust(top=min(fig.subplotpars.top, 1.0 - 0.7 / height))
    return axes[0, 0] if n == 1 else axes[:, 0]


_CSS = """
<style>
.introscope-iua{font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px}
.introscope-iua table{border-collapse:collapse;margin:4px 0}
.introscope-iua th,.introscope-iua td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;
white-space:nowrap}
.introscope-iua th{background:#f3f3f3}
.introscope-iua td.name{text-align:left;font-family:monospace}
.introscope-iua .bar{display:inline-block;width:80px;height:10px;background:#eee;
vertical-align:middle;margin-right:4px}
.introscope-iua .bar span{display:block;height:10px;background:#c0392b}
.introscope-iua .hist{display:inline-flex;align-items:flex-end;height:22px;gap:1px}
.introscope-iua .hist span{display:inline-block;width:6px;background:#34495e}
.introscope-iua .warn{color:#b03a2e;font-weight:bold}
</style>
"""


def _bar(percent: float) -> str:
    return f'<span class="bar"><span style="width:{percent:.1f}%"></span></span>{percent:.1f}%'


def _hist(prop: np.ndarray) -> str:
    counts, _ = np.histogram(np.asarray(prop, dtype=float).ravel(), bins=10, range=(0.0, 1.0))
    top = max(1, int(counts.max()))
    spans = "".join(
        f'<span style="height:{max(1, round(22 * c / top))}px" '
        f'title="{10 * i}-{10 * i + 10}% inactive: {c} units"></span>'
        for i, c in enumerate(counts)
    )
    return f'<span class="hist">{spans}</span>'


def iua_html(panels: Sequence[tuple[Row, np.ndarray]]) -> str:
    """An HTML table for Jupyter: one row per response, dead-unit bars and a histogram."""
    if not panels:
        return '<div class="introscope-iua"><b>IUA</b>: no responses analysed</div>'
    p = _frac_label(panels[0][0]["dead fraction"])
    head = (
        "<tr><th>response</th><th>unit shape</th><th>samples</th><th>units</th>"
        "<th>mean ± std inactive</th><th>dead units</th>"
        f"<th>inactive ≥ {p}</th><th>dead channels</th>"
        "<th>units by inactive proportion (0 → 100%)</th><th>non-finite</th></tr>"
    )
    body = []
    for row, prop in panels:
        units = row["units"]
        ch = row["channels"]
        ch_cell = (
            f"{row['dead channels']} / {ch} ({_pct(row['dead channels'], ch):.1f}%)"
            if ch is not None
            else "–"
        )
        nonfinite = row["nonfinite"]
        nf_cell = f'<span class="warn">{nonfinite}</span>' if nonfinite else "0"
        body.append(
            "<tr>"
            f'<td class="name">{html.escape(str(row["response"]))}</td>'
            f"<td>{html.escape(str(tuple(row['shape'])))}</td>"
            f"<td>{row['samples']}</td><td>{units}</td>"
            f"<td>{row['mean inactive']:.2f} ± {row['std inactive']:.2f}</td>"
            f"<td>{row['dead units']} {_bar(_pct(row['dead units'], units))}</td>"
            f"<td>{row['mostly dead units']} {_bar(_pct(row['mostly dead units'], units))}</td>"
            f"<td>{ch_cell}</td><td>{_hist(prop)}</td><td>{nf_cell}</td>"
            "</tr>"
        )
    return (
        f'{_CSS}<div class="introscope-iua"><b>Inactive Unit Analysis</b>'
        f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
        "<div>dead = inactive for every sample</div></div>"
    )


def iua_text(rows: Sequence[Row]) -> str:
    """A plain-text summary, one line per response."""
    if not rows:
        return "IUA: no responses analysed"
    p = _frac_label(rows[0]["dead fraction"])
    lines = [f"Inactive Unit Analysis ({rows[0]['samples']} samples)"]
    width = max(len(str(r["response"])) for r in rows)
    for r in rows:
        units = r["units"]
        line = (
            f"  {str(r['response']):<{width}}  units {units:>7}  "
            f"inactive {r['mean inactive']:10.2f} ± {r['std inactive']:<9.2f} "
            f"dead {r['dead units']} ({_pct(r['dead units'], units):.1f}%)  "
            f">= {p}: {r['mostly dead units']} ({_pct(r['mostly dead units'], units):.1f}%)"
        )
        if r["channels"] is not None:
            line += f"  dead channels {r['dead channels']}/{r['channels']}"
        if r["nonfinite"]:
            line += f"  NON-FINITE {r['nonfinite']}"
        lines.append(line)
    return "\n".join(lines)
