"""PFA unit selection: which units to remove once a strategy has said how many to keep.

Units are removed greedily from the absolute correlation matrix. Inactive units are removed
first; then, one at a time, the active unit picked by the strategy, after which its row and
column leave the matrix. Ties are resolved exactly as DNIKit 2.0 resolves them (values within
``numpy.isclose`` of the extreme count as tied):

- L1: the unit whose column of |correlation| has the largest (smallest) sum. Among tied
  columns, take the largest (smallest) coefficient in those columns and remove the
  lowest-indexed unit of a *row* holding it (the partner unit, as DNIKit does).
- Abs: the largest (smallest) coefficient in the matrix; among the rows holding it, look at
  each row's next extreme coefficient (one occurrence of the first masked per row) and remove
  the unit found at that position in DNIKit's row-major list of tied cells.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from ._covariance import PFACovariancesResult

__all__ = ["PFAUnitSelectionStrategyType", "AbsMax", "AbsMin", "L1Max", "L1Min"]

_logger = logging.getLogger("introscope.introspectors.pfa")


@runtime_checkable
class PFAUnitSelectionStrategyType(Protocol):
    """Choose the units to remove: inactive ones first, then the maximally correlated.

    Examples:
        >>> import numpy as np
        >>> from introscope.introspectors import PFA, PFACovariancesResult
        >>> cov = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]])
        >>> result = PFACovariancesResult.make_covariance_result(covariances=cov)
        >>> PFA.UnitSelectionStrategy.AbsMax()(result, num_units_to_keep=2)  # one of the pair 0, 1
        array([1])
    """

    def __call__(self, covariances: PFACovariancesResult, *, num_units_to_keep: int) -> np.ndarray:
        """Return the indices of units to remove (the first ``len(inactive_units)`` are
        inactive)."""
        ...


def abs_correlation(covariances: PFACovariancesResult, epsilon: float = 1e-8) -> np.ndarray:
    """|correlation| with NaN on the diagonal and on the rows and columns of inactive units."""
    cov = covariances.covariances
    var = np.abs(np.diag(cov))
    corr = np.abs(cov / np.maximum(np.sqrt(var[:, None] * var[None, :]), epsilon))
    np.fill_diagonal(corr, np.nan)
    inactive = covariances.inactive_units
    corr[inactive, :] = np.nan
    corr[:, inactive] = np.nan
    return cast(np.ndarray, corr)


def _select_l1(corr: np.ndarray, removed: list[int], steps: int, largest: bool) -> None:
    pick = np.nanmax if largest else np.nanmin
    # NaN replaced by 0: column sums are then bit-identical to numpy.nansum's.
    zeroed = np.where(np.isnan(corr), 0.0, corr)
    done = np.zeros(corr.shape[0], dtype=bool)
    done[removed] = True
    for step in range(steps):
        l1 = zeroed.sum(axis=0)
        l1[done] = np.nan
        extreme = pick(l1)
        if np.isnan(extreme):
            raise IntroscopeError(f"PFA unit selection: every L1 norm is NaN after {step} steps")
        tied = np.flatnonzero(np.isclose(l1, extreme))
        if tied.size > 1:
            block = corr[:, tied]
            unit = int(np.nonzero(np.isclose(block, pick(block)))[0][0])
        else:
            unit = int(tied[0])
        removed.append(unit)
        done[unit] = True
        corr[unit, :] = corr[:, unit] = np.nan
        zeroed[unit, :] = zeroed[:, unit] = 0.0


def _select_abs(corr: np.ndarray, removed: list[int], steps: int, largest: bool) -> None:
    pick = np.nanmax if largest else np.nanmin
    # NaN replaced by -inf (+inf) so plain max (min) skips it without a NaN-aware pass.
    fill = -np.inf if largest else np.inf
    filled = np.where(np.isnan(corr), fill, corr)
    for _ in range(steps):
        row_extreme = filled.max(axis=1) if largest else filled.min(axis=1)
        coeff = row_extreme.max() if largest else row_extreme.min()
        # A row holds a coefficient close to the extreme iff its own extreme is close to it.
        rows = np.flatnonzero(np.isclose(row_extreme, coeff))
        block = corr[rows]
        hit_pos, hit_col = np.nonzero(np.isclose(block, coeff))
        cell_rows = rows[hit_pos]  # rows of all tied cells, row-major, with repeats
        masked = block.copy()
        first = np.unique(hit_pos, return_index=True)[1]
        masked[hit_pos[first], hit_col[first]] = np.nan
        if np.all(np.isnan(masked)):
            unit = int(cell_rows[0])
        else:
            other = pick(masked)
            position = int(np.nonzero(np.isclose(masked, other))[0][0])
            unit = int(cell_rows[position])
        removed.append(unit)
        corr[unit, :] = corr[:, unit] = np.nan
        filled[unit, :] = filled[:, unit] = fill


@dataclass(frozen=True)
class _Directional(PFAUnitSelectionStrategyType):
    distance: str  # "abs" or "l1"
    largest: bool

    def __call__(self, covariances: PFACovariancesResult, *, num_units_to_keep: int) -> np.ndarray:
        if num_units_to_keep <= 0:
            raise IntroscopeValueError(
                f"Number of units to keep should be greater than zero but found "
                f"{num_units_to_keep}."
            )
        corr = abs_correlation(covariances)
        removed = [int(u) for u in covariances.inactive_units]
        active = corr.shape[0] - len(removed)
        if active < num_units_to_keep:
            _logger.warning(
                "requested to keep %d units but %d of %d are inactive; removing only the "
                "inactive units",
                num_units_to_keep,
                len(removed),
                corr.shape[0],
            )
            return np.asarray(removed, dtype=int)
        select = _select_l1 if self.distance == "l1" else _select_abs
        select(corr, removed, active - num_units_to_keep, self.largest)
        return np.asarray(removed, dtype=int)


@dataclass(frozen=True, init=False)
class AbsMax(_Directional):
    """Remove, one at a time, a unit of the most correlated pair."""

    def __init__(self) -> None:
        super().__init__(distance="abs", largest=True)


@dataclass(frozen=True, init=False)
class AbsMin(_Directional):
    """Remove, one at a time, a unit of the least correlated pair."""

    def __init__(self) -> None:
        super().__init__(distance="abs", largest=False)


@dataclass(frozen=True, init=False)
class L1Max(_Directional):
    """Remove, one at a time, the unit with the largest total |correlation| to the others."""

    def __init__(self) -> None:
        super().__init__(distance="l1", largest=True)


@dataclass(frozen=True, init=False)
class L1Min(_Directional):
    """Remove, one at a time, the unit with the smallest total |correlation| to the others."""

    def __init__(self) -> None:
        super().__init__(distance="l1", largest=False)
