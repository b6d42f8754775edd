"""PFA results: per-layer recipes and the diagnostics each strategy attaches to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Union

__all__ = ["PFAKLDiagnostics", "PFAEnergyDiagnostics", "PFARecipe", "PFARecipes"]


@dataclass(frozen=True)
class PFAKLDiagnostics:
    """What :class:`PFA.Strategy.KL` measured on a layer."""

    kl_divergence: float
    """KL divergence between the normalised eigenvalue spectrum and the uniform distribution."""

    units_ratio: float
    """Fraction of the layer's units recommended to keep (before rounding up)."""


@dataclass(frozen=True)
class PFAEnergyDiagnostics:
    """What :class:`PFA.Strategy.Energy` (and ``Size``) measured on a layer."""

    total_kept_energy: float
    """Sum of the eigenvalues kept by the energy threshold (absolute, not a ratio)."""


_Diagnostics = Union[PFAKLDiagnostics, PFAEnergyDiagnostics, None]


@dataclass(frozen=True)
class PFARecipe:
    """PFA's recommendation for one layer (one response field)."""

    original_output_count: int
    """Number of units the layer has."""

    recommended_output_count: int
    """Number of units the strategy recommends keeping."""

    maximally_correlated_units: Sequence[int]
    """Units recommended for removal, in the order they were chosen; inactive units come first."""

    number_inactive_units: int
    """How many units are inactive; they are the first entries of ``maximally_correlated_units``."""

    diagnostics: _Diagnostics
    """Strategy-specific diagnostics (:class:`PFAKLDiagnostics`, :class:`PFAEnergyDiagnostics`)."""

    strategy: str | None = field(default=None, compare=False, repr=False)
    """Beyond DNIKit: the strategies that made the recipe, e.g. ``"KL + L1Max"`` (set by
    :meth:`PFA.get_recipe`; not part of equality)."""

    @property
    def units_to_remove(self) -> list[int]:
        """Indices of the units to remove, ascending."""
        return sorted(int(u) for u in self.maximally_correlated_units)

    @property
    def units_to_keep(self) -> list[int]:
        """Indices of the units to keep, ascending."""
        removed = set(self.units_to_remove)
        return [u for u in range(self.original_output_count) if u not in removed]

    def _with_units(self, units: Sequence[int]) -> PFARecipe:
        return PFARecipe(
            original_output_count=self.original_output_count,
            recommended_output_count=self.recommended_output_count,
            maximally_correlated_units=[int(u) for u in units],
            number_inactive_units=self.number_inactive_units,
            diagnostics=self.diagnostics,
            strategy=self.strategy,
        )

    def _labelled(self, strategy: str) -> PFARecipe:
        return replace(self, strategy=strategy)


class PFARecipes(dict):
    """What :meth:`PFA.get_recipe` returns: a ``dict`` of layer name to :class:`PFARecipe`
    (DNIKit's type), which also remembers the layers PFA could not analyse.

    ``failed`` maps each such layer to the reason, e.g. fewer samples than units;
    :meth:`PFA.show` lists them.
    """

    failed: Mapping[str, str]

    def __init__(self, recipes: Mapping[str, PFARecipe], failed: Mapping[str, str] | None = None):
        super().__init__(recipes)
        self.failed = dict(failed or {})

    def __reduce__(self) -> tuple:
        return (PFARecipes, (dict(self), dict(self.failed)))
