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

__all__ = ["PFAGroupPlan", "PFALayerPlan", "PFAPruningPlan"]

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
class PFAGroupPlan:
    """Plan layers whose output channels a model couples (a residual sum, a depthwise conv).

    The group keeps the union of its recipes' units: a channel is removed only when every
    recipe of the group removes it.
    """

    responses: tuple[str, ...]
    """The plan layers (responses) in the group."""
    layers: tuple[str, ...]
    """The modules whose output channels those responses are."""
    coupled: tuple[str, ...]
    """Every module the dependency graph prunes together with them."""
    keep: tuple[int, ...]
    remove: tuple[int, ...]


@dataclass(frozen=True)
class PFAPruningPlan:
    """Per-layer ``PFALayerPlan``, keyed by response (field) name.

    Made from recipes alone, it holds the layers; made against a model (``PFA.pruning_plan(
    recipes, model, example_input=x)`` or ``PFA.prune``) it also holds the coupled groups and the
    parameters and MACs per sample before and after.
    """

    layers: Mapping[str, PFALayerPlan] = field(default_factory=dict)
    groups: tuple[PFAGroupPlan, ...] = ()
    params_before: int | None = None
    params_after: int | None = None
    macs_before: int | None = None
    macs_after: int | None = None

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
        out: dict[str, Any] = {
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
        if self.groups:
            out["groups"] = [
                {
                    "responses": list(g.responses),
                    "layers": list(g.layers),
                    "coupled": list(g.coupled),
                    "keep": list(g.keep),
                    "remove": list(g.remove),
                }
                for g in self.groups
            ]
        for key in ("params_before", "params_after", "macs_before", "macs_after"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PFAPruningPlan:
        if data.get("format") != _FORMAT:
            raise IntroscopeError(
                f"not a PFA pruning plan: format is {data.get('format')!r}, expected {_FORMAT!r}"
            )
        sizes = {
            k: int(data[k])
            for k in ("params_before", "params_after", "macs_before", "macs_after")
            if data.get(k) is not None
        }
        return PFAPruningPlan(
            {
                name: PFALayerPlan(
                    original_count=int(p["original_count"]),
                    keep=_ints(p["keep"]),
                    remove=_ints(p["remove"]),
                )
                for name, p in data["layers"].items()
            },
            groups=tuple(
                PFAGroupPlan(
                    responses=tuple(str(r) for r in g["responses"]),
                    layers=tuple(str(m) for m in g["layers"]),
                    coupled=tuple(str(m) for m in g["coupled"]),
                    keep=_ints(g["keep"]),
                    remove=_ints(g["remove"]),
                )
                for g in data.get("groups", ())
            ),
            **sizes,
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
