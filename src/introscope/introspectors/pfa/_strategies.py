"""PFA strategies: how many units each layer needs, from its covariance spectrum."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import numpy as np

from introscope.exceptions import IntroscopeValueError

from ._covariance import PFACovariancesResult, eigh_eigenvalues
from ._recipe import PFAEnergyDiagnostics, PFAKLDiagnostics, PFARecipe

__all__ = ["PFAStrategyType", "KL", "Energy", "Size"]

_logger = logging.getLogger("introscope.introspectors.pfa")


@runtime_checkable
class PFAStrategyType(Protocol):
    """A PFA strategy: covariances of all layers -> a recipe per layer (units not yet chosen).

    Examples:
        >>> import numpy as np
        >>> from introscope.introspectors import PFA, PFACovariancesResult
        >>> cov = PFACovariancesResult.make_covariance_result(covariances=np.diag([4.0, 1.0, 0.0]))
        >>> strategy = PFA.Strategy.Size(relative_size=0.5)
        >>> strategy({"fc": cov})["fc"].recommended_output_count
        1
    """

    def __call__(
        self, covariances: Mapping[str, PFACovariancesResult]
    ) -> Mapping[str, PFARecipe]: ...


def _recipe(cov: PFACovariancesResult, count: int, diagnostics: object) -> PFARecipe:
    return PFARecipe(
        original_output_count=cov.original_output_count,
        recommended_output_count=int(count),
        maximally_correlated_units=[],
        number_inactive_units=int(cov.inactive_units.shape[0]),
        diagnostics=diagnostics,  # type: ignore[arg-type]
    )


@dataclass(frozen=True, init=False)
class KL(PFAStrategyType):
    """Keep a fraction of units given by how far the eigenvalue spectrum is from uniform.

    A flat spectrum (uncorrelated units) keeps every unit; a spectrum concentrated in one
    eigenvalue keeps one. ``interpolation_function(kl, max_kl)`` maps the divergence to the
    fraction kept; the default is ``KL.LinearInterpolation``. The count is kept within
    [1, units] (DNIKit 2.0 fails on a custom function's 0 and on one-unit layers).
    """

    class KLInterpolationFunction(Protocol):
        """Map (KL divergence, its maximum ``log(units)``) to the fraction of units to keep."""

        def __call__(self, kl_divergence: float, max_kl_divergence: float) -> float: ...

    class LinearInterpolation:
        """``1 - kl_divergence / max_kl_divergence``."""

        def __call__(self, kl_divergence: float, max_kl_divergence: float) -> float:
            return cast(float, 1 - np.divide(kl_divergence, max_kl_divergence))

        def __eq__(self, other: object) -> bool:
            return type(other) is type(self)

        def __hash__(self) -> int:
            return hash(type(self))

    interpolation_function: KLInterpolationFunction

    def __init__(self, interpolation_function: KLInterpolationFunction | None = None) -> None:
        if interpolation_function is None:
            interpolation_function = KL.LinearInterpolation()
        object.__setattr__(self, "interpolation_function", interpolation_function)

    def __call__(self, covariances: Mapping[str, PFACovariancesResult]) -> dict[str, PFARecipe]:
        from scipy.special import rel_entr

        result = {}
        for name, cov in covariances.items():
            units = cov.original_output_count
            if units == 1:
                # log(1) = 0 makes the ratio 0/0: a one-unit layer simply keeps its unit.
                kl, ratio = 0.0, 1.0
            else:
                values = cov.eigenvalues
                norm = np.sum(np.abs(values))
                p = (values / norm if norm != 0 else np.zeros_like(values)) + np.finfo(float).eps
                q = np.ones_like(p) / units
                # Normalise both as scipy.stats.entropy does, so the numbers match DNIKit's.
                p = p / np.sum(p)
                q = q / np.sum(q)
                kl = float(np.sum(rel_entr(p, q)))
                ratio = float(self.interpolation_function(kl, float(np.log(units))))
            # At least one unit, at most all of them (a custom interpolation may leave [0, 1]).
            count = min(max(int(np.ceil(units * ratio)), 1), units)
            result[name] = _recipe(
                cov, count, PFAKLDiagnostics(kl_divergence=kl, units_ratio=ratio)
            )
        return result


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise IntroscopeValueError(f"{name} should be between 0.0 and 1.0, but it is {value}")


@dataclass(frozen=True, init=False)
class Energy(PFAStrategyType):
    """Keep the fewest leading eigen-directions whose energy reaches ``energy_threshold``.

    Args:
        energy_threshold: fraction (0..1) of the spectrum's total energy to keep (reached within
            the sum's rounding error, so 1.0 keeps the directions with non-negligible
            eigenvalues; DNIKit 2.0 may also keep zero ones, depending on rounding)
        min_kept_count: keep at least this many units per layer (even past the threshold)
    """

    energy_threshold: float
    min_kept_count: int = 0

    def __init__(self, energy_threshold: float, min_kept_count: int = 0) -> None:
        _check_fraction(energy_threshold, "energy_threshold")
        object.__setattr__(self, "energy_threshold", energy_threshold)
        object.__setattr__(self, "min_kept_count", min_kept_count)

    def __call__(self, covariances: Mapping[str, PFACovariancesResult]) -> dict[str, PFARecipe]:
        result = {}
        for name, cov in covariances.items():
            values = cov.eigenvalues
            units = len(values)
            cumulative = np.cumsum(values)
            # The total as the last cumulative sum, and a tolerance of the sum's rounding error:
            # energy_threshold=1.0 then keeps the directions that carry energy, not (as DNIKit
            # does by rounding accident) also those of zero or noise-level eigenvalues.
            total = float(cumulative[-1])
            tolerance = units * np.finfo(float).eps
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.divide(cumulative, total)
                reached = np.flatnonzero(ratio >= self.energy_threshold - tolerance)
            # An all-zero spectrum never reaches any threshold (0/0): every unit is kept.
            kept = int(reached[0]) + 1 if reached.size else units
            kept_energy = float(cumulative[kept - 1])
            if kept < self.min_kept_count:
                _logger.warning(
                    "layer %r: keeping min_kept_count=%d units exceeds the %s energy threshold "
                    "(%d units reach it); lower min_kept_count to %d to respect the threshold",
                    name,
                    self.min_kept_count,
                    self.energy_threshold,
                    kept,
                    kept,
                )
            count = min(max(kept, self.min_kept_count), units)
            # As in DNIKit, the diagnostic reports the energy at the threshold, before
            # min_kept_count is applied.
            result[name] = _recipe(cov, count, PFAEnergyDiagnostics(total_kept_energy=kept_energy))
        return result


@dataclass(frozen=True, init=False)
class Size(PFAStrategyType):
    """Keep about ``relative_size`` of all units, with one energy threshold shared by all layers.

    The counts are DNIKit 2.0's, bit for bit on the same covariances (the eigenvalues come
    from ``eigh``, as DNIKit's, so a Size recipe costs one ``eigh`` per layer). As in DNIKit,
    the threshold is clamped below 1 - ``epsilon_energy``, so ``relative_size=1.0`` can drop a
    layer's last direction (when it holds more than that share of the energy, DNIKit's ratios
    decide the tie).

    Args:
        relative_size: fraction (0..1) of units to keep over all layers
        min_kept_count: keep at least this many units per layer
        epsilon_energy: the shared threshold is clamped to [epsilon_energy, 1 - epsilon_energy]
    """

    relative_size: float
    min_kept_count: int = 0
    epsilon_energy: float = 1e-8

    def __init__(
        self, relative_size: float, min_kept_count: int = 0, epsilon_energy: float = 1e-8
    ) -> None:
        _check_fraction(relative_size, "relative_size")
        object.__setattr__(self, "relative_size", relative_size)
        object.__setattr__(self, "min_kept_count", min_kept_count)
        object.__setattr__(self, "epsilon_energy", epsilon_energy)

    @staticmethod
    def _exclusive_energies(values: np.ndarray) -> np.ndarray:
        """For every k, the energy share of the k-1 leading directions (1 for a zero layer)."""
        if not np.all(np.isfinite(values)):
            raise IntroscopeValueError("eigenvalues must be finite")
        cumulative = np.cumsum(np.sort(np.abs(values))[::-1])
        total = cumulative[-1]
        if total > 0:
            return cast(np.ndarray, np.concatenate(([0.0], cumulative[:-1])) / total)
        return np.ones_like(cumulative)

    def threshold(self, covariances: Mapping[str, PFACovariancesResult]) -> float:
        """The shared energy threshold: a percentile of every layer's exclusive energies."""
        return self._threshold([eigh_eigenvalues(c) for c in covariances.values()])

    def _threshold(self, spectra: list[np.ndarray]) -> float:
        if not spectra:
            return self.epsilon_energy
        per_layer = np.concatenate([self._exclusive_energies(v) for v in spectra])
        t = float(np.percentile(per_layer, 100 * self.relative_size))
        return min(max(t, self.epsilon_energy), 1 - self.epsilon_energy)

    def __call__(self, covariances: Mapping[str, PFACovariancesResult]) -> dict[str, PFARecipe]:
        # The threshold is often exactly one of the layers' cumulative ratios (relative_size
        # 1.0 always is), so the last bits of the eigenvalues and of the sums decide those
        # counts. They are DNIKit's: eigh's eigenvalues (not eigvalsh's), the threshold from
        # sequential sums, and Energy's ratios over numpy's (pairwise) total, compared exactly.
        spectra = {name: eigh_eigenvalues(cov) for name, cov in covariances.items()}
        t = self._threshold(list(spectra.values()))
        result = {}
        for name, cov in covariances.items():
            values = spectra[name]
            units = len(values)
            cumulative = np.cumsum(values)
            with np.errstate(divide="ignore", invalid="ignore"):
                reached = np.flatnonzero(np.divide(cumulative, float(np.sum(values))) >= t)
            kept = int(reached[0]) + 1 if reached.size else units  # a zero layer: all
            if kept < self.min_kept_count:
                _logger.warning(
                    "layer %r: keeping min_kept_count=%d units exceeds the shared energy "
                    "threshold %s (%d units reach it)",
                    name,
                    self.min_kept_count,
                    t,
                    kept,
                )
            count = min(max(kept, self.min_kept_count), units)
            energy = float(cumulative[kept - 1])
            result[name] = _recipe(cov, count, PFAEnergyDiagnostics(total_kept_energy=energy))
        return result
