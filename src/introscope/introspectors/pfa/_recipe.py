"""PFA results: per-layer recipes and the diagnostics each strategy attaches to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Union

__all__ = ["PFAKLDiagnostics", "PFAEnergyDiagnostics", "PFARecipe", "PFARecipes"]


@dataclass(frozen=True)
class PFAKLDiagnostics:
    """What ``PFA.Strategy.KL`` measured on a layer.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import PFA
        >>> layer = np.random.default_rng(0).normal(size=(50, 4))
        >>> recipe = PFA.introspect(producer_from_batches(Batch({"fc": layer}))).get_recipe()["fc"]
        >>> type(recipe.diagnostics).__name__, 0 < recipe.diagnostics.units_ratio <= 1
        ('PFAKLDiagnostics', True)
    """

    kl_divergence: float
    """KL divergence between the normalised eigenvalue spectrum and the uniform distribution."""

    units_ratio: float
    """Fraction of the layer's units recommended to keep (before rounding up)."""


@dataclass(frozen=True)
class PFAEnergyDiagnostics:
    """What ``PFA.Strategy.Energy`` (and ``Size``) measured on a layer.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import PFA
        >>> layer = np.random.default_rng(0).normal(size=(50, 4))
        >>> pfa = PFA.introspect(producer_from_batches(Batch({"fc": layer})))
        >>> recipe = pfa.get_recipe(strategy=PFA.Strategy.Energy(energy_threshold=0.8))["fc"]
        >>> recipe.diagnostics.total_kept_energy >= 0.8
        True
    """

    total_kept_energy: float
    """Sum of the eigenvalues kept by the energy threshold (absolute, not a ratio)."""


_Diagnostics = Union[PFAKLDiagnostics, PFAEnergyDiagnostics, None]


@dataclass(frozen=True)
class PFARecipe:
    """PFA's recommendation for one layer (one response field).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import PFA
        >>> rng = np.random.default_rng(0)
        >>> base = rng.normal(size=(50, 2))
        >>> layer = np.hstack([base, base + 1e-3 * rng.normal(size=(50, 2))])
        >>> recipes = PFA.introspect(producer_from_batches(Batch({"fc": layer}))).get_recipe()
        >>> recipe = recipes["fc"]
        >>> recipe.recommended_output_count, sorted(recipe.units_to_keep + recipe.units_to_remove)
        (2, [0, 1, 2, 3])
    """

    original_output_count: int
    """Number of units the layer has."""

    recommended_output_count: int
    """Number of units the strategy recommends keeping."""

    maximally_correlated_units: Sequence[int]
    """Units recommended for removal, in the order they were chosen; inactive units come first."""

    number_inactive_units: int
    """How many units are inactive; they are the first entries of ``maximally_correlated_units``."""

    diagnostics: _Diagnostics
    """Strategy-specific diagnostics (``PFAKLDiagnostics``, ``PFAEnergyDiagnostics``)."""

    strategy: str | None = field(default=None, compare=False, repr=False)
    """Beyond DNIKit: the strategies that made the recipe, e.g. ``"KL + L1Max"`` (set by
    ``PFA.get_recipe``; not part of equality)."""

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


class PFARecipes(dict[str, "PFARecipe"]):
    """What ``PFA.get_recipe`` returns: a ``dict`` of layer name to ``PFARecipe``
    (DNIKit's type), which also remembers the layers PFA could not analyse.

    ``failed`` maps each such layer to the reason, e.g. fewer samples than units;
    ``PFA.show`` lists them.
    """

    failed: Mapping[str, str]

    def __init__(self, recipes: Mapping[str, PFARecipe], failed: Mapping[str, str] | None = None):
        super().__init__(recipes)
        self.failed = dict(failed or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (PFARecipes, (dict(self), dict(self.failed)))
