"""A pruning plan: for each layer, the units to keep and to remove, as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from introscope._atomic import write_text
from introscope.exceptions import IntroscopeError

from ._recipe import PFARecipe

__all__ = ["PFALayerPlan", "PFAPruningPlan"]

_FORMAT = "introscope.pfa.pruning_plan/1"


@dataclass(frozen=True)
class PFALayerPlan:
    """Units of one layer to keep and to remove (ascending, disjoint, covering the layer)."""

    original_count: int
    keep: tuple[int, ...]
    remove: tuple[int, ...]

    def __post_init__(self) -> None:
        everything = sorted(self.keep + self.remove)
        if everything != list(range(self.original_count)):
            raise IntroscopeError(
                f"keep and remove must split range({self.original_count}) exactly, got "
                f"keep={list(self.keep)} remove={list(self.remove)}"
            )
        if not self.keep:
            raise IntroscopeError("a layer plan must keep at least one unit")


@dataclass(frozen=True)
class PFAPruningPlan:
    """Per-layer :class:`PFALayerPlan`, keyed by response (field) name."""

    layers: Mapping[str, PFALayerPlan] = field(default_factory=dict)

    @staticmethod
    def from_recipes(recipes: Mapping[str, PFARecipe]) -> PFAPruningPlan:
        """Build a plan from ``pfa.get_recipe(...)``."""
        return PFAPruningPlan(
            {
                name: PFALayerPlan(
                    original_count=r.original_output_count,
                    keep=tuple(r.units_to_keep),
                    remove=tuple(r.units_to_remove),
                )
                for name, r in recipes.items()
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "format": _FORMAT,
            "layers": {
                name: {
                    "original_count": p.original_count,
                    "keep": list(p.keep),
                    "remove": list(p.remove),
                }
                for name, p in self.layers.items()
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PFAPruningPlan:
        if data.get("format") != _FORMAT:
            raise IntroscopeError(
                f"not a PFA pruning plan: format is {data.get('format')!r}, expected {_FORMAT!r}"
            )
        return PFAPruningPlan(
            {
                name: PFALayerPlan(
                    original_count=int(p["original_count"]),
                    keep=_ints(p["keep"]),
                    remove=_ints(p["remove"]),
                )
                for name, p in data["layers"].items()
            }
        )

    @staticmethod
    def from_json(text: str) -> PFAPruningPlan:
        return PFAPruningPlan.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON (atomically, with the permissions of any new file)."""
        write_text(path, self.to_json())

    @staticmethod
    def load(path: str | os.PathLike[str]) -> PFAPruningPlan:
        return PFAPruningPlan.from_json(Path(path).read_text())


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
