"""Plotly's JavaScript bundle, read once from the installed ``plotly`` package, to inline."""

from __future__ import annotations

import functools
from typing import cast

from introscope.exceptions import IntroscopeError, require

__all__ = ["plotly_js", "plotly_version"]


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """The minified plotly.js that ships with the Python package (no CDN, no network)."""
    offline = require("plotly.offline", "report", "the HTML report's charts")
    js = offline.get_plotlyjs()
    if "</script" in js.lower():  # would end the inline <script> early
        raise IntroscopeError(
            "the installed plotly.js contains '</script' and cannot be inlined; "
            "install another plotly version (pip install -U plotly)"
        )
    return cast(str, js)


def plotly_version() -> str:
    """Version of the plotly Python package whose JavaScript is inlined."""
    return str(require("plotly", "report", "the HTML report's charts").__version__)
