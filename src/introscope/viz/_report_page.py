"""The one-file HTML report of model health (IUA, PFA) and data health (map, familiarity, duplicates).

Everything it shows arrives as plain rows and arrays in the dataclasses below; every user string
(file names, labels, layer names, ids) is escaped or written by the page script as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._colors import PALETTE, colors_for_labels
from ._html import b64_array, data_uri, esc, json_for_script, page, table, visible_bidi
from ._plotly import plotly_js, plotly_version
from ._report_js import REPORT_JS
from ._report_samples import duplicates_section, familiarity_section, ranked_groups
from ._table_js import TABLE_JS

__all__ = [
    "IUARow",
    "PFARow",
    "ModelSection",
    "DataSection",
    "Report",
    "render_report",
    "compress_ranges",
    "ranked_groups",
    "PALETTE",
]


@dataclass
class IUARow:
    """Inactive units of one response (a row of the model-health table, in model order)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    samples: int
    units: int
    mean_inactive: float
    dead_units: int
    mostly_dead_units: int
    channels: int | None = None
    dead_channels: int | None = None


@dataclass
class PFARow:
    """PFA's recommendation for one layer; a layer PFA could not analyse (fewer samples than
    units) has ``note`` saying why, and no counts (None)."""

    name: str
    original: int | None
    recommended: int | None
    units_to_keep: Sequence[int] = ()
    strategy: str = "KL"
    note: str = ""


@dataclass
class ModelSection:
    """One model's health: IUA rows, its heatmap figure (PNG bytes) and PFA rows."""

    name: str
    source: str
    notes: Sequence[str] = ()
    iua: Sequence[IUARow] = ()
    heatmap_png: bytes | None = None
    heatmap_file: str | None = None
    pfa: Sequence[PFARow] = ()
    skipped: Sequence[str] = ()


@dataclass
class DataSection:
    """Data health: one entry per sample in every array.

    ``thumbnails`` maps a sample index to a data URI made by :func:`thumbnail_uri`;
    ``duplicate_groups`` lists groups of sample indices; ``duplicate_copies`` says per group
    how many members are exact copies of another member (identical responses or inputs), None
    when unknown; ``duplicate_exact`` says per group whether all its members are copies of one
    sample (two pairs of copies of two samples are not). Without it only a set of two copies
    is known to be exact.
    """

    response: str
    ids: Sequence[str]
    labels: Sequence[str]
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    familiarity: np.ndarray | None = None
    duplicate_groups: Sequence[Sequence[int]] | None = None
    duplicate_copies: Sequence[int] | None = None
    duplicate_exact: Sequence[bool] | None = None
    thumbnails: Mapping[int, str] = field(default_factory=dict)
    thumbnail_note: str = ""
    projection_name: str = "projection"
    notes: Sequence[str] = ()
    gallery_size: int = 12
    group_size: int = 6
    max_groups: int = 24


@dataclass
class Report:
    """Everything the page shows."""

    title: str
    subtitle: str
    facts: Sequence[tuple[str, str]] = ()
    models: Sequence[ModelSection] = ()
    model_skipped: str | None = None
    data: DataSection | None = None
    data_skipped: str | None = None
    files: Sequence[tuple[str, str]] = ()
    comparison_note: str = ""


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def _bar(percent: float, cls: str = "") -> str:
    klass = f"bar {cls}" if cls else "bar"
    return f'<span class="{klass}"><span style="width:{min(100.0, percent):.1f}%"></span></span>'


def _count_pct(count: int, whole: int, bad_from: float | None = 25.0) -> str:
    pct = _pct(count, whole)
    text = f"{count} ({pct:.1f}%)"
    if bad_from is not None and pct >= bad_from:
        text = f'<span class="bad">{text}</span>'
    return text + _bar(pct)


def compress_ranges(units: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``"0-2, 5, 7-8"``."""
    values = sorted(int(u) for u in units)
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}–{values[j]}")
        i = j + 1
    return ", ".join(parts)


def _iua_table(rows: Sequence[IUARow]) -> str:
    header = ["layer", "kind", "unit shape", "units", "mean inactive / sample", "dead units"]
    header += ["inactive ≥ 99%", "dead channels"]
    body = []
    for r in rows:
        ch = (
            _count_pct(r.dead_channels or 0, r.channels)
            if r.channels is not None and r.dead_channels is not None
            else "–"
        )
        body.append(
            [
                esc(r.name),
                esc(r.kind),
                esc("×".join(str(d) for d in r.shape)),
                str(r.units),
                f"{r.mean_inactive:.1f} ({_pct(r.mean_inactive, r.units):.1f}%)",
                _count_pct(r.dead_units, r.units),
                _count_pct(r.mostly_dead_units, r.units),
                ch,
            ]
        )
    return table(header, body, cls="iua", numeric_from=3, filter_on="layer name")


def _units_cell(units: Sequence[int]) -> str:
    text = esc(compress_ranges(units))
    if len(text) <= 160:
        return f'<span class="units">{text}</span>'
    return f'<details class="units"><summary>{len(units)} units</summary>{text}</details>'


def _pfa_table(rows: Sequence[PFARow]) -> str:
    header = ["layer", "original units", "recommended", "kept", "strategy", "units to keep"]
    notes = any(r.note for r in rows)
    body = []
    for r in rows:
        if r.note or r.original is None or r.recommended is None:
            cells = [esc(r.name), "–", "–", "–", esc(r.strategy), "–"]
        else:
            pct = _pct(r.recommended, r.original)
            cells = [
                esc(r.name),
                str(r.original),
                str(r.recommended),
                f"{pct:.0f}%" + _bar(pct, "keep"),
                esc(r.strategy),
                _units_cell(r.units_to_keep),
            ]
        body.append(cells + ([f'<span class="bad">{esc(r.note)}</span>' if r.note else ""] * notes))
    # "strategy" (KL, Gaussian), "units to keep" (0-3, 7) and "note" are text, not numbers
    return table(
        header + ["note"] * notes,
        body,
        cls="pfa",
        numeric_from=1,
        text_columns=(4, 5, 6),
        filter_on="layer name",
    )


def _source_tag(m: ModelSection) -> str:
    """The model's file beside its name, unless it says the name again (``net.pt``)."""
    if not m.source or m.source in (m.name, f"./{m.name}"):
        return ""
    return f'<span class="tag">{esc(m.source)}</span>'


def _model_article(m: ModelSection) -> str:
    parts = [
        f'<article class="model" data-model="{esc(m.name)}">',
        f"<h3>{esc(m.name)}{_source_tag(m)}</h3>",
    ]
    parts += [f'<p class="note">{esc(n)}</p>' for n in m.notes]
    if m.iua:
        parts.append("<h4>Inactive units (IUA), in model order (click a header to sort)</h4>")
        parts.append(_iua_table(m.iua))
        parts.append(
            '<p class="note">A unit is inactive for a sample when its response is 0 '
            "(|x| ≤ 1e-8); dead units are inactive for every sample; a channel is dead when all "
            "its positions are.</p>"
        )
    if m.heatmap_png:
        alt = f"IUA heatmaps of {m.name}"
        src = data_uri(m.heatmap_png, "image/png")
        parts.append(f'<img class="heatmap" alt="{esc(alt)}" src="{src}">')
        if m.heatmap_file:
            parts.append(f'<p class="note">Also saved as <code>{esc(m.heatmap_file)}</code>.</p>')
    if m.pfa:
        parts.append("<h4>Principal Filter Analysis: recommended size per layer</h4>")
        parts.append(_pfa_table(m.pfa))
        failed = [r.name for r in m.pfa if r.note]
        if failed and len(failed) < len(m.pfa):  # none analysed: the skipped note says so
            parts.append(
                f'<p class="note">Not analysed by PFA, so not in its results: '
                f"{esc(', '.join(failed))} (the note column says why).</p>"
            )
    parts += [f'<p class="note">{esc(s)}</p>' for s in m.skipped]
    parts.append("</article>")
    return "".join(parts)


def _comparison(models: Sequence[ModelSection], note: str) -> str:
    names = [r.name for r in models[0].iua]
    for m in models[1:]:
        names += [r.name for r in m.iua if r.name not in names]
    header = ["layer"]
    for m in models:
        header += [f"{m.name}: dead units", "dead channels", "mean inactive"]
    body = []
    for name in names:
        row = [esc(name)]
        for m in models:
            r = next((r for r in m.iua if r.name == name), None)
            if r is None:
                row += ["–", "–", "–"]
            else:
                ch = (
                    f"{r.dead_channels} / {r.channels}"
                    if r.channels is not None and r.dead_channels is not None
                    else "–"
                )
                row += [
                    _count_pct(r.dead_units, r.units),
                    ch,
                    f"{_pct(r.mean_inactive, r.units):.1f}%",
                ]
        body.append(row)
    pfa_names = [r.name for r in models[0].pfa]
    pfa_header = ["layer"] + [f"{m.name}: recommended / original" for m in models]
    pfa_body = []
    for name in pfa_names:
        row = [esc(name)]
        for m in models:
            p = next((p for p in m.pfa if p.name == name), None)
            row.append(
                "–"
                if p is None
                else "not analysed"
                if p.note
                else f"{p.recommended} / {p.original}"
            )
        pfa_body.append(row)
    out = '<section id="comparison"><h2>Model health side by side</h2>'
    if note:
        out += f'<p class="note">{esc(note)}</p>'
    facts = "; ".join(f"{m.name}: {m.notes[0]}" for m in models if m.notes)
    if facts:
        out += f'<p class="facts">{esc(facts)}</p>'
    out += table(header, body, cls="compare", filter_on="layer name")
    if pfa_body:
        out += table(pfa_header, pfa_body, cls="compare-pfa", filter_on="layer name")
    return out + "</section>"


def _label_codes(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names, codes = np.unique(
        np.asarray([str(v) for v in labels], dtype=object), return_inverse=True
    )
    return [str(n) for n in names], codes.astype(np.int32)


def _data_map(data: DataSection) -> tuple[str, str]:
    if data.x is None or data.y is None:
        return (
            '<section id="data-map"><h2>Data map</h2><p class="note">No 2-D projection was '
            "computed (run with the projection introspector).</p></section>",
            "",
        )
    names, codes = _label_codes(data.labels)
    payload = {
        "x": b64_array(data.x, "f4"),
        "y": b64_array(data.y, "f4"),
        "codes": b64_array(codes, "i4"),
        "label_names": [visible_bidi(n) for n in names],
        "colors": colors_for_labels(names),
        "ids": [visible_bidi(str(i)) for i in data.ids],
        "fam": None if data.familiarity is None else b64_array(data.familiarity, "f4"),
        "thumbs": {str(k): v for k, v in data.thumbnails.items()},
        "axis_x": f"{data.projection_name} x",
        "axis_y": f"{data.projection_name} y",
    }
    n = len(data.ids)
    html = (
        '<section id="data-map"><h2>Data map</h2>'
        f'<p class="note">{n} samples of <code>{esc(data.response)}</code> projected to 2-D '
        f"({esc(data.projection_name)}), coloured by label. Hover a point to see the sample; "
        "untick a label to hide it (all, none, or double-click a label, or press Enter on its "
        "box, to see it alone); drag to zoom, double-click the map to reset. Without a mouse: "
        "type a sample id in the box below the card to show that sample; every sample's label, "
        "familiarity and map position are in <code>dataset_report.parquet</code>.</p>"
        + "".join(f'<p class="note">{esc(t)}</p>' for t in data.notes)
        + '<p class="note" id="map-note"></p>'
        '<div class="map"><div id="scatter"></div><div class="side">'
        '<div id="hover-card" aria-live="polite">'
        '<div id="hover-hint" class="note">Hover a point.</div>'
        '<img id="hover-img" alt="sample" style="display:none">'
        '<div id="hover-noimg" class="note" style="display:none">no thumbnail embedded</div>'
        '<div class="hover-row"><b>label</b> <span id="hover-label"></span></div>'
        '<div class="hover-row"><b>id</b> <span id="hover-id"></span></div>'
        '<div><b>familiarity</b> <span id="hover-fam"></span></div></div>'
        '<div class="table-filter"><input id="sample-find" type="search" '
        'placeholder="show a sample by id" aria-label="show the sample with this id in the '
        'card"></div>'
        f'<div id="legend" role="group" aria-label="labels"></div></div></div>'
        f'<p class="note">{esc(data.thumbnail_note)}</p></section>'
    )
    script = (
        f'<script type="application/json" id="introscope-data">{json_for_script(payload)}</script>'
    )
    return html, script


def _facts(report: Report) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.facts)
    return f'<section id="summary"><h2>Summary</h2><dl class="kv">{items}</dl></section>'


def _files(files: Sequence[tuple[str, str]]) -> str:
    rows = [[f"<code>{esc(name)}</code>", esc(desc)] for name, desc in files]
    return (
        '<section id="files"><h2>Files beside this report</h2>'
        + table(["file", "contents"], rows, numeric_from=99)
        + "</section>"
    )


def render_report(report: Report) -> str:
    """The report as one self-contained HTML document (Plotly's JavaScript inlined once)."""
    nav = [("summary", "Summary")]
    body = [_facts(report)]
    if len(report.models) > 1 and any(m.iua for m in report.models):
        nav.append(("comparison", "Side by side"))
        body.append(_comparison(report.models, report.comparison_note))
    nav.append(("model-health", "Model health"))
    model_html = '<section id="model-health"><h2>Model health</h2>'
    if report.models:
        model_html += '<div class="models">'
        model_html += "".join(_model_article(m) for m in report.models) + "</div>"
    else:
        model_html += f'<p class="note">{esc(report.model_skipped or "No model was given.")}</p>'
    body.append(model_html + "</section>")
    nav += [("data-map", "Data map"), ("familiarity", "Familiarity"), ("duplicates", "Duplicates")]
    head_scripts = ""
    if report.data is not None:
        map_html, data_script = _data_map(report.data)
        body += [map_html, familiarity_section(report.data), duplicates_section(report.data)]
        head_scripts = data_script
    else:
        reason = esc(report.data_skipped or "Data health was not computed.")
        for anchor, title in (
            ("data-map", "Data map"),
            ("familiarity", "Familiarity"),
            ("duplicates", "Duplicates"),
        ):
            body.append(
                f'<section id="{anchor}"><h2>{title}</h2><p class="note">{reason}</p></section>'
            )
    nav.append(("files", "Files"))
    body.append(_files(report.files))
    body.append(
        f'<p class="note">Written by introscope; charts by Plotly {esc(plotly_version())} '
        "(inlined: the report works offline).</p>"
    )
    if report.data is not None and report.data.x is not None:
        scripts = (
            f"<script>{plotly_js()}</script>{head_scripts}<script>{TABLE_JS}{REPORT_JS}</script>"
        )
    else:
        scripts = f"<script>{TABLE_JS}window.introscopeReady = true;</script>"
    return page(report.title, report.subtitle, nav, "".join(body) + scripts, head="")
