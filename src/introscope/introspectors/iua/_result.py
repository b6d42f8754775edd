"""``IUA.Result``: the inactive-unit statistics of one response (DNIKit 2.0 field names)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeValueError

__all__ = ["IUAResult"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class IUAResult:
    """Inactive-unit statistics of one response.

    DNIKit 2.0's names keep DNIKit's types: ``inactive`` is a list (one count per sample),
    ``unit_inactive_count`` and ``unit_inactive_proportion`` nested lists in the response's unit
    shape; they are built on access from the arrays the result holds. The same numbers as
    read-only numpy arrays: ``inactive_array`` (int64, shape (samples,)),
    ``unit_inactive_count_array`` and ``unit_inactive_proportion_array`` (the unit shape).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import IUA
        >>> relu = np.array([[0.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
        >>> result = IUA.introspect(producer_from_batches(Batch({"relu": relu}))).results["relu"]
        >>> result.num_samples, result.num_units
        (3, 2)
        >>> result.inactive_array  # inactive units per sample
        array([1, 2, 1])
        >>> result.unit_inactive_proportion_array
        array([0.66666667, 0.66666667])
    """

    __slots__ = (
        "mean_inactive",
        "std_inactive",
        "inactive_array",
        "unit_inactive_count_array",
        "unit_inactive_proportion_array",
        "nonfinite",
    )

    mean_inactive: float
    std_inactive: float
    inactive_array: np.ndarray
    unit_inactive_count_array: np.ndarray
    unit_inactive_proportion_array: np.ndarray
    nonfinite: int

    def __init__(
        self,
        mean_inactive: float,
        std_inactive: float,
        inactive: Sequence[float] | np.ndarray,
        unit_inactive_count: Sequence[Any] | np.ndarray,
        unit_inactive_proportion: Sequence[Any] | np.ndarray,
        nonfinite: int = 0,
    ) -> None:
        """DNIKit's constructor: the statistics, from lists or arrays (copied, read-only)."""
        values = {
            "mean_inactive": float(mean_inactive),
            "std_inactive": float(std_inactive),
            "inactive_array": _readonly(np.array(inactive, dtype=np.int64)),
            "unit_inactive_count_array": _readonly(np.array(unit_inactive_count)),
            "unit_inactive_proportion_array": _readonly(
                np.array(unit_inactive_proportion, dtype=np.float64)
            ),
            "nonfinite": int(nonfinite),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"IUA.Result is immutable; cannot set {name!r}")

    @classmethod
    def from_counts(
        cls, per_sample: np.ndarray, counts: np.ndarray, shape: tuple[int, ...], nonfinite: int
    ) -> IUAResult:
        """Build a result from per-sample and per-unit inactive counts."""
        inactive = np.asarray(per_sample, dtype=np.int64)
        unit_count = np.asarray(counts).reshape(shape)
        return cls(
            mean_inactive=float(np.mean(inactive)),
            std_inactive=float(np.std(inactive)),
            inactive=inactive,
            unit_inactive_count=unit_count,
            unit_inactive_proportion=np.divide(unit_count, len(inactive)),
            nonfinite=nonfinite,
        )

    # DNIKit's names and types ------------------------------------------------------------
    @property
    def inactive(self) -> list[Any]:
        """Number of inactive units of each sample, in the order the samples were seen (a list
        of ``numpy.int64``, as in DNIKit; ``inactive_array`` is the array)."""
        return list(self.inactive_array)

    @property
    def unit_inactive_count(self) -> list[Any]:
        """For each unit, the number of samples for which it was inactive (nested lists in the
        unit shape; ``unit_inactive_count_array`` is the array)."""
        return cast("list[Any]", self.unit_inactive_count_array.tolist())

    @property
    def unit_inactive_proportion(self) -> list[Any]:
        """For each unit, ``unit_inactive_count`` over the number of samples (nested lists;
        ``unit_inactive_proportion_array`` is the array)."""
        return cast("list[Any]", self.unit_inactive_proportion_array.tolist())

    # beyond DNIKit ------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """Number of samples the statistics cover."""
        return len(self.inactive_array)

    @property
    def num_units(self) -> int:
        """Number of units of the response (the product of its non-batch dimensions)."""
        return int(self.unit_inactive_count_array.size)

    def dead_units(self, fraction: float = 1.0) -> int:
        """Number of units inactive for at least ``fraction`` (in (0, 1]) of the samples."""
        if not 0.0 < fraction <= 1.0:
            raise IntroscopeValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if fraction == 1.0:
            return int(np.count_nonzero(self.unit_inactive_count_array == self.num_samples))
        return int(np.count_nonzero(self.unit_inactive_proportion_array >= fraction))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IUAResult):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name)) for name in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.mean_inactive,
                self.std_inactive,
                self.inactive_array,
                self.unit_inactive_count_array,
                self.unit_inactive_proportion_array,
                self.nonfinite,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"IUA.Result(mean_inactive={self.mean_inactive:g}, std_inactive={self.std_inactive:g}, "
            f"samples={self.num_samples}, unit_shape={self.unit_inactive_count_array.shape})"
        )
