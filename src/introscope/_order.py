"""Natural order of response names: ``relu``, ``relu_2``, ``relu_10`` (numbers by value)."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["natural_key", "natural_sorted"]

_PARTS = re.compile(r"(\d+)")


def natural_key(name: object) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares runs of digits by value, so ``relu_2`` comes before ``relu_10``."""
    parts = _PARTS.split(str(name))
    # (0, number) / (1, text) pairs keep int and str from being compared with each other
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p or i % 2)


def natural_sorted(names: Iterable[str]) -> list[str]:
    """``names`` in natural order, duplicates removed."""
    return sorted(dict.fromkeys(names), key=natural_key)
