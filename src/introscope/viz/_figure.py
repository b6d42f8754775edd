"""Saving the charts that ``IUA.show`` / ``PFA.show`` (``vis_type=CHART``) return."""

from __future__ import annotations

import os
import pathlib
from typing import Any

from introscope._atomic import atomic_path
from introscope.exceptions import IntroscopeValueError

__all__ = ["save_figure", "LITERAL"]

#: matplotlib Text properties that draw a string as it is: titles, labels and tick labels made
#: from a user's strings (file and layer names) pass them, so ``price_$5_and_$10^2`` is never
#: parsed as mathtext (drawn wrong, or making ``savefig`` raise) nor as TeX.
LITERAL: dict[str, Any] = {"parse_math": False, "usetex": False}


def _figure_of(chart: Any) -> Any:
    if hasattr(chart, "savefig"):  # a matplotlib Figure
        return chart
    figure = getattr(chart, "figure", None)  # one Axes
    if figure is not None and hasattr(figure, "savefig"):
        return figure
    try:  # an array (or list) of Axes, as show() returns for several responses
        items = list(getattr(chart, "flat", chart))
    except TypeError:
        items = []
    figures = {id(f): f for f in (getattr(a, "figure", None) for a in items) if f is not None}
    if len(figures) == 1:
        return next(iter(figures.values()))
    raise IntroscopeValueError(
        f"save_figure: expected what show(..., vis_type=CHART) returns (a matplotlib Axes, an "
        f"array of Axes of one figure, or a Figure), got {type(chart).__name__}"
        + (f" spanning {len(figures)} figures" if len(figures) > 1 else "")
    )


def save_figure(chart: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> pathlib.Path:
    """Save a chart to ``path`` (format from the suffix: .png, .svg, .pdf, ...); returns the path.

    ``chart`` is what ``IUA.show(..., vis_type=IUA.VisType.CHART)`` or ``PFA.show(...,
    vis_type=PFA.VisType.CHART)`` returns: one Axes, an array of Axes, or a Figure. The file is
    written atomically with the permissions of any new file under the user's umask.
    ``savefig_kwargs`` go to ``Figure.savefig`` (e.g. ``dpi=150``).
    """
    target = pathlib.Path(path)
    figure = _figure_of(chart)
    fmt = savefig_kwargs.pop("format", None) or target.suffix.lstrip(".").lower() or "png"
    savefig_kwargs.setdefault("bbox_inches", "tight")
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format=fmt, **savefig_kwargs)
    return target
