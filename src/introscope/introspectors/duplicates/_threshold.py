"""Threshold strategies: how close two samples must be to count as duplicates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, final, runtime_checkable

import numpy as np

from introscope.exceptions import IntroscopeValueError

__all__ = ["DuplicatesThresholdStrategyType", "Percentile", "Slope"]


@runtime_checkable
class DuplicatesThresholdStrategyType(Protocol):
    """A callable that maps sorted neighbour distances (zeros trimmed) to a distance threshold.

    Examples:
        >>> import numpy as np
        >>> from introscope.introspectors import Duplicates
        >>> distances = np.array([0.01, 0.02, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7])
        >>> Duplicates.ThresholdStrategy.Percentile(90)(distances)  # the two tiny ones are close
        0.02
    """

    def __call__(self, distances: np.ndarray) -> float:
        """Return the largest distance at which two samples are still duplicates.

        Args:
            distances: every sample's nearest-neighbour distances, ascending, without the
                leading zeros (the distance of each sample to itself and to exact copies).
        """
        ...


@final
@dataclass(frozen=True)
class Percentile(DuplicatesThresholdStrategyType):
    """The distance below which ``100 - percentile`` percent of the neighbour distances lie.

    ``Percentile(98.5)`` takes the distance that 98.5 % of the neighbour distances exceed.

    Args:
        percentile: in [0, 100]; larger values make fewer pairs close.
    """

    percentile: float

    def __post_init__(self) -> None:
        p = self.percentile
        if (
            isinstance(p, bool)
            or not isinstance(p, (int, float, np.integer, np.floating))
            or not math.isfinite(float(p))
            or not 0 <= p <= 100
        ):
            raise IntroscopeValueError(
                f"Duplicates.ThresholdStrategy.Percentile: percentile must be a number in "
                f"[0, 100], got {p!r}"
            )

    def __call__(self, distances: np.ndarray) -> float:
        n = len(distances)
        if n == 0:
            return 0.0
        # DNIKit's index; clamped so that a percentile near 0 takes the largest distance
        # instead of indexing past the end.
        index = min(n - int(self.percentile * 0.01 * n), n - 1)
        return float(distances[index])


@final
@dataclass(frozen=True)
class Slope(DuplicatesThresholdStrategyType):
    """Find the elbow of the sorted distances with a sliding window.

    The window, ``len(distances) // sensitivity`` long, walks down from the median distance
    until the rise across it exceeds the rise from the 25th to the 75th percentile; the distance
    where it stops is the threshold.

    Args:
        sensitivity: > 2; a smaller value counts more pairs as close (5 is a good default, 20
            a large value).
    """

    sensitivity: int = 5

    def __post_init__(self) -> None:
        s = self.sensitivity
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise IntroscopeValueError(
                f"Duplicates.ThresholdStrategy.Slope: sensitivity must be a number > 2, got {s!r}"
            )
        if not s > 2:
            raise IntroscopeValueError(
                f"Duplicates.ThresholdStrategy.Slope: `sensitivity` must be > 2, got {s!r}"
            )

    def __call__(self, distances: np.ndarray) -> float:
        d = np.asarray(distances)
        n = len(d)
        if n == 0:
            return 0.0
        stride = n // 1000 + 1
        start = n // 2
        half = start // 2
        target = d[start + half] - d[start - half]
        window = int(n // self.sensitivity)
        # Every probe the walk visits, at once: start, start - stride, ... while > stride.
        probes = np.arange(start, stride, -stride)
        if len(probes) == 0:
            return float(d[start])
        rises = d[probes + window] - d[probes]
        hit = np.flatnonzero(rises > target)
        if len(hit):
            return float(d[probes[hit[0]]])
        # The walk ran out: DNIKit stops at the first probe <= stride.
        return float(d[probes[-1] - stride])
