"""HTML building blocks for the report: escaping, JSON for script tags, data URIs, the page shell."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "esc",
    "visible_bidi",
    "json_for_script",
    "b64_array",
    "data_uri",
    "table",
    "page",
    "CSP",
]

#: Content security policy of the report: nothing leaves the page (no network, no fetch), images
#: only from data URIs. ``'unsafe-eval'`` because Plotly's WebGL library (regl) compiles its draw
#: commands with ``Function``; every script is inline and written by introscope.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'none'; "
    "form-action 'none'; base-uri 'none'"
)


#: Bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069). In a
#: user's string they reorder the text after them (an id ``a\u202egnp.exe`` shows as
#: ``aexe.png``, a label's count is pulled into its run): the page shows them as ``[U+202E]``.
_BIDI_VISIBLE = {cp: f"[U+{cp:04X}]" for cp in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def visible_bidi(text: str) -> str:
    """``text`` with every bidi control character written as a visible ``[U+XXXX]``."""
    return text.translate(_BIDI_VISIBLE)


def esc(value: Any) -> str:
    """``str(value)`` escaped for HTML text and attribute values (quotes included), bidi control
    characters shown as ``[U+XXXX]`` (:func:`visible_bidi`)."""
    return html.escape(visible_bidi(str(value)), quote=True)


_SCRIPT_UNSAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">`` (no ``</script>`` break-out)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).translate(
        _SCRIPT_UNSAFE
    )


def b64_array(values: Any, dtype: str) -> str:
    """Little-endian base64 of ``values`` as ``dtype`` (``"f4"``, ``"u2"``, ``"i4"``, ...)."""
    arr = np.ascontiguousarray(np.asarray(values), dtype=np.dtype(dtype).newbyteorder("<"))
    return base64.b64encode(arr.tobytes()).decode("ascii")


def data_uri(payload: bytes, mime: str) -> str:
    """A ``data:`` URI for ``payload``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    cls: str = "",
    numeric_from: int = 1,
    text_columns: Sequence[int] = (),
    sortable: bool = True,
    filter_on: str | None = None,
    filter_columns: Sequence[int] | None = None,
    row_keys: Sequence[Sequence[str]] | None = None,
) -> str:
    """A ``<table>``; ``header`` is escaped here, row cells must already be HTML.

    Columns from ``numeric_from`` on (except ``text_columns``) are numbers. ``sortable`` makes
    each header a button that the page script (``TABLE_JS``) sorts by; ``filter_on`` names what
    its search box matches (``"layer name"``), in ``filter_columns`` (the first by default).
    ``row_keys`` gives each row the exact values it stands for (its sample ids): a query equal
    to one of them shows only the rows holding it, so "3" finds sample 3 and not 13 or 30;
    other queries match as substrings, except that when every key is an integer nothing but an
    exact key matches.
    """
    text = set(text_columns)
    kinds = ["num" if i >= numeric_from and i not in text else "name" for i in range(len(header))]
    if sortable:
        head = "".join(
            f'<th data-type="{"num" if k == "num" else "text"}" aria-sort="none">'
            f'<button type="button" class="sort" title="sort by {esc(h)}">{esc(h)}'
            '<span class="sort-ind" aria-hidden="true">↕</span></button></th>'
            for h, k in zip(header, kinds)
        )
    else:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    keys = list(row_keys) if row_keys is not None else None
    for r, row in enumerate(rows):
        cells = "".join(
            f'<td class="{kinds[i] if i < len(kinds) else "name"}">{cell}</td>'
            for i, cell in enumerate(row)
        )
        tr = (
            "<tr>"
            if keys is None
            else f'<tr data-keys="{esc(json.dumps([str(k) for k in keys[r]]))}">'
        )
        body.append(f"{tr}{cells}</tr>")
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    attrs = f' class="{esc(classes)}"' if classes else ""
    if filter_on:
        which = ",".join(str(int(c)) for c in (filter_columns or (0,)))
        attrs += f' data-filter="{esc(filter_on)}" data-filter-cols="{which}"'
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
:root{--fg:#1d2430;--muted:#5d6878;--line:#dfe3ea;--bg:#f6f7f9;--card:#fff;--bad:#c0392b;
--ok:#2e7d5b;--accent:#2f5fb3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{background:#1f2a3a;color:#fff;padding:18px 28px 12px}
header h1{margin:0;font-size:22px;font-weight:600}
header .sub{margin:4px 0 10px;color:#c9d2df;font-size:13px;word-break:break-all}
nav a{color:#dbe6ff;margin-right:16px;text-decoration:none;font-size:13px}
nav a:hover{text-decoration:underline}
main{padding:8px 28px 40px;max-width:1500px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;
margin:16px 0}
h2{margin:0 0 8px;font-size:18px}
h3{margin:14px 0 6px;font-size:15px;overflow-wrap:anywhere}
p.note,.note{color:var(--muted);font-size:13px;margin:4px 0 8px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px;display:block;max-width:100%;
overflow-x:auto}
th,td{border-bottom:1px solid var(--line);padding:4px 9px;vertical-align:middle}
th{background:#eef1f5;text-align:left;font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;
overflow-wrap:anywhere;min-width:14ch;max-width:420px}
.bar{display:inline-block;width:90px;height:9px;background:#e9ecf1;border-radius:2px;
vertical-align:middle;margin-left:6px;overflow:hidden}
.bar>span{display:block;height:100%;background:var(--bad)}
.bar.keep>span{background:var(--accent)}
.bad{color:var(--bad);font-weight:600}
.ok{color:var(--ok)}
.models{display:flex;flex-wrap:wrap;gap:18px}
.model{flex:1 1 640px;min-width:0}
.model h3 .tag{font-weight:400;color:var(--muted);font-size:13px;margin-left:8px}
img.heatmap{max-width:100%;border:1px solid var(--line);border-radius:4px}
.units{font-family:ui-monospace,monospace;font-size:11px;color:var(--muted);max-width:360px;
white-space:normal;text-align:left}
dl.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:3px 16px;margin:4px 0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;overflow-wrap:anywhere}
.map{display:flex;gap:16px;align-items:flex-start}
#scatter{flex:1 1 700px;height:min(620px,calc(100vh - 24px));min-width:0}
.side{flex:0 0 270px;min-width:0;position:sticky;top:8px}
@media (max-width:720px){.map{flex-wrap:wrap}#scatter{flex-basis:100%}
.side{flex:1 1 100%;position:static}#hover-card{display:none}
.map:hover #hover-card{display:block;position:fixed;right:8px;bottom:8px;width:190px;
min-height:0;z-index:5;box-shadow:0 2px 10px rgba(0,0,0,.25)}}
#hover-card{border:1px solid var(--line);border-radius:6px;padding:10px;min-height:200px;
background:#fbfcfd;overflow-wrap:anywhere}
#hover-card .hover-row{max-height:6.6em;overflow-y:auto}
#hover-card img,.card img{image-rendering:pixelated;background:#000;display:block}
#hover-card img{width:128px;height:128px;object-fit:contain;margin-bottom:6px}
#legend{margin-top:12px;max-height:330px;overflow:auto;font-size:13px}
#legend label{display:flex;align-items:center;gap:6px;cursor:pointer;padding:1px 0}
#legend .legend-label{min-width:0;display:flex;gap:.3em;align-items:baseline}
#legend .legend-label bdi{min-width:0;overflow-wrap:anywhere;display:-webkit-box;
-webkit-box-orient:vertical;-webkit-line-clamp:3;overflow:hidden}
#legend .legend-count{flex:none}
#legend .sw{width:11px;height:11px;border-radius:50%;flex:0 0 11px}
#legend .legend-bar{display:flex;align-items:center;gap:6px;margin-bottom:4px;color:#666;font-size:12px}
#legend .legend-bar button{font:inherit;padding:0 6px;cursor:pointer}
.gallery{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0 10px}
.card{border:1px solid var(--line);border-radius:6px;padding:6px;width:112px;font-size:12px;
background:#fbfcfd;overflow:hidden}
.card img{width:96px;height:96px;object-fit:contain;margin:0 auto 4px}
.card .noimg{width:96px;height:96px;margin:0 auto 4px;background:#eceff3;color:var(--muted);
display:flex;align-items:center;justify-content:center;text-align:center;font-size:11px}
.card .lbl{font-weight:600;word-break:break-all}
.card .id{color:var(--muted);word-break:break-all}
.card .lbl,.card .id{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:3;
overflow:hidden}
bdi,td.name,dd,code,.tag,#hover-label,#hover-id{unicode-bidi:isolate}
.card .fam{color:var(--muted)}
.groups{display:flex;flex-wrap:wrap;gap:10px 18px}
.group{border-left:3px solid var(--accent);padding-left:8px;margin:4px 0}
.group .gallery{margin:2px 0;gap:4px}
.group .card{width:84px;padding:4px}
.group .card img,.group .card .noimg{width:72px;height:72px}
code{font-family:ui-monospace,monospace;font-size:12px}
th button.sort{font:inherit;font-weight:600;color:inherit;background:none;border:0;padding:0;
cursor:pointer;text-align:left;white-space:nowrap}
th button.sort:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.sort-ind{color:var(--muted);margin-left:4px;font-size:11px}
th[aria-sort=ascending] .sort-ind,th[aria-sort=descending] .sort-ind{color:var(--accent)}
.table-filter{display:flex;align-items:center;gap:10px;margin:6px 0 0;font-size:13px}
.table-filter input{font:inherit;padding:2px 6px;min-width:240px;border:1px solid var(--line);
border-radius:4px}
.table-filter .filter-count{color:var(--muted)}
.side .table-filter input{min-width:0;width:100%}
.kind{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;font-weight:600;
margin-right:4px}
.kind.exact{background:#fde2df;color:#a93226}
.kind.near{background:#e3ebf8;color:var(--accent)}
"""


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str, head: str) -> str:
    """The whole document; ``title``/``subtitle``/``nav`` labels are escaped here, ``body`` and
    ``head`` (scripts) are trusted HTML built by the report."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="generator" content="introscope">'
        f"<title>{esc(title)}</title><style>{_CSS}</style>{head}</head>"
        f"<body><header><h1>{esc(title)}</h1>"
        f'<div class="sub">{esc(subtitle)}</div><nav>{links}</nav></header>'
        f"<main>{body}</main></body></html>\n"
    )
