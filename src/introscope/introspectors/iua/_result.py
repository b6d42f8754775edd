"""``IUA.Result``: the inactive-unit statistics of one response (DNIKit 2.0 field names)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["IUAResult"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class IUAResult:
    """Inactive-unit statistics of one response.

    The first five fields are DNIKit 2.0's. ``inactive``, ``unit_inactive_count`` and
    ``unit_inactive_proportion`` are read-only numpy arrays (DNIKit returns nested lists):
    ``inactive`` is int64 of shape (samples,), the other two have the response's unit shape.
    """

    mean_inactive: float
    """Mean number of inactive units per sample."""
    std_inactive: float
    """Standard deviation (population, like ``numpy.std``) of inactive units per sample."""
    inactive: np.ndarray
    """Number of inactive units of each sample, in the order the samples were seen."""
    unit_inactive_count: np.ndarray
    """For each unit, the number of samples for which it was inactive."""
    unit_inactive_proportion: np.ndarray
    """For each unit, ``unit_inactive_count`` over the number of samples."""
    nonfinite: int = 0
    """NaN or Inf values seen (counted as active, as ``numpy.isclose`` does); 0 unless the
    introspection ran with ``nonfinite="warn"``."""

    @classmethod
    def from_counts(
        cls, per_sample: np.ndarray, counts: np.ndarray, shape: tuple[int, ...], nonfinite: int
    ) -> IUAResult:
        """Build a result from per-sample and per-unit inactive counts."""
        inactive = _readonly(np.asarray(per_sample, dtype=np.int64).copy())
        n = len(inactive)
        unit_count = _readonly(counts.reshape(shape).copy())
        return cls(
            mean_inactive=float(np.mean(inactive)),
            std_inactive=float(np.std(inactive)),
            inactive=inactive,
            unit_inactive_count=unit_count,
            unit_inactive_proportion=_readonly(np.divide(unit_count, n)),
            nonfinite=int(nonfinite),
        )

    @property
    def num_samples(self) -> int:
        """Number of samples the statistics cover."""
        return len(self.inactive)

    @property
    def num_units(self) -> int:
        """Number of units of the response (the product of its non-batch dimensions)."""
        return int(self.unit_inactive_count.size)

    def dead_units(self, fraction: float = 1.0) -> int:
        """Number of units inactive for at least ``fraction`` (in (0, 1]) of the samples."""
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if fraction == 1.0:
            return int(np.count_nonzero(self.unit_inactive_count == self.num_samples))
        return int(np.count_nonzero(self.unit_inactive_proportion >= fraction))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IUAResult):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )

    __hash__ = None  # type: ignore[assignment]
