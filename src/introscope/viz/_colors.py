"""Label colours of the report's map: a qualitative palette, then generated hues, all distinct."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["PALETTE", "NO_LABEL", "NO_LABEL_COLOR", "label_colors", "colors_for_labels"]

#: The first label colours (Plotly's D3 then Dark24 qualitative palettes).
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#2E91E5 #E15F99 #1CA71C #FB0D0D #DA16FF #222A2A #B68100 #750D86 #EB663B #511CFB "
    "#00A08B #FB00D1 #FC0080 #B2828D #6C7C32 #778AAE #862A16 #A777F1 #620042 #1616A7"
).split()

#: The label of samples without one (as ``introscope analyze`` writes it), and its colour: a
#: dark grey, which no other label gets (the generated colours all have chroma), with a contrast
#: of 7.3:1 against the map's background (WCAG's 3:1 for graphics), 17 apart (CIE delta E) from
#: the palette's mid grey.
NO_LABEL = "(no label)"
NO_LABEL_COLOR = "#555555"

_LIGHTNESS = (30.0, 42.0, 54.0, 66.0, 78.0)  # CIE L* levels of the generated colours
_HUES = 36  # hue steps of 10 degrees
_CHROMA = (30.0, 55.0, 80.0)


def _srgb(v: float) -> float:
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def _lab_hex(lab: tuple[float, float, float]) -> str | None:
    """CIE L*a*b* (D65) as an sRGB hex colour, or None when it lies outside sRGB."""
    lightness, a, b = lab
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def inv(t: float) -> float:
        return t**3 if t**3 > 216 / 24389 else (116 * t - 16) * 27 / 24389

    x, y, z = 0.95047 * inv(fx), inv(fy), 1.08883 * inv(fz)
    linear = (
        3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
        -0.9692660 * x + 1.8760108 * y + 0.0415560 * z,
        0.0556434 * x - 0.2040259 * y + 1.0572252 * z,
    )
    if not all(0.0 <= v <= 1.0 for v in linear):
        return None
    return "#" + "".join(f"{round(_srgb(v) * 255):02x}" for v in linear)


def _hex_lab(color: str) -> tuple[float, float, float]:
    rgb = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb)
    xyz = (
        (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047,
        0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
        (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883,
    )
    fx, fy, fz = (t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _candidates() -> list[tuple[tuple[float, float, float], str]]:
    """A grid of CIE LCh colours that fit in sRGB, as (Lab, hex)."""
    found = []
    for lightness in _LIGHTNESS:
        for chroma in _CHROMA:
            for k in range(_HUES):
                h = math.radians(k * 360 / _HUES)
                lab = (lightness, chroma * math.cos(h), chroma * math.sin(h))
                color = _lab_hex(lab)
                if color is not None:
                    found.append((lab, color))
    return found


def label_colors(n: int) -> list[str]:
    """``n`` distinct colours: ``PALETTE`` first, as it is, then, one at a time, the colour of a
    CIE LCh grid farthest (in L*a*b*) from every colour already given; past the grid's size,
    colours are still distinct but may be close."""
    colors = list(PALETTE[:n])
    if n <= len(colors):
        return colors
    chosen = np.array([_hex_lab(c) for c in colors])
    grid = _candidates()
    labs = np.array([lab for lab, _ in grid])
    nearest = np.min(np.linalg.norm(labs[:, None] - chosen[None], axis=2), axis=1)
    seen = {c.lower() for c in colors}
    while len(colors) < n and np.isfinite(nearest).any() and nearest.max() > 0:
        best = int(np.argmax(nearest))
        color = grid[best][1]
        if color not in seen:
            colors.append(color)
            seen.add(color)
        nearest = np.minimum(nearest, np.linalg.norm(labs - labs[best], axis=1))
        nearest[best] = -np.inf
    value = 0
    while len(colors) < n:  # more labels than the grid holds: any unused colours
        color = f"#{value:06x}"
        value += 0x010203
        if color not in seen:
            colors.append(color)
            seen.add(color)
    return colors


def colors_for_labels(names: Sequence[str]) -> list[str]:
    """A distinct colour per label name: ``NO_LABEL`` dark grey, the others ``label_colors``
    in order."""
    others = iter(label_colors(sum(1 for n in names if n != NO_LABEL)))
    return [NO_LABEL_COLOR if n == NO_LABEL else next(others) for n in names]
