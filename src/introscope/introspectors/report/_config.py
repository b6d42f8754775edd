"""``ReportConfig``: which parts of the dataset report run, and with which strategies."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from typing import Any, final

import numpy as np

from introscope.exceptions import IntroscopeValueError

__all__ = ["ReportConfig", "DEFAULT_DIMENSIONS"]

_logger = logging.getLogger("introscope.introspectors.DatasetReport")

#: Responses wider than this are reduced with PCA to this many dimensions when
#: ``ReportConfig.dim_reduction`` is None.
DEFAULT_DIMENSIONS = 40


def _projection_default() -> Any:
    if importlib.util.find_spec("umap") is None:
        _logger.warning(
            "umap-learn is not installed, so the report has no projection; "
            "install it with: pip install 'introscope[dimreduction]'"
        )
        return None
    from introscope.introspectors.dimension_reduction import DimensionReduction

    return DimensionReduction.Strategy.UMAP(2)


def _duplicates_default() -> Any:
    from introscope.introspectors.duplicates import Duplicates

    return Duplicates.ThresholdStrategy.Slope()


def _familiarity_default() -> Any:
    from introscope.introspectors.familiarity import Familiarity

    return Familiarity.Strategy.GMM()


@final
@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """Which components [`DatasetReport`][introscope.introspectors.DatasetReport] builds; a
    component set to ``None`` is skipped.

    Args:
        projection: a ``DimensionReduction`` strategy to 2 dimensions (one, copied per response,
            or a mapping response -> strategy), or None; default UMAP(2) when umap-learn is
            installed.
        duplicates: a ``Duplicates`` threshold strategy, or None; default ``Slope()``.
        familiarity: a ``Familiarity`` strategy used for the overall model and for every
            per-label model, or None; default ``GMM()``.
        dim_reduction: the reduction applied before familiarity, duplicates and projection; None
            reduces each response wider than 40 dimensions to 40 with PCA and leaves the others.
        split_familiarity_min: a label value gets its own familiarity model when at least this
            many elements carry it.

    Examples:
        >>> from introscope.introspectors import DimensionReduction, ReportConfig
        >>> config = ReportConfig(projection=DimensionReduction.Strategy.PCA(2), duplicates=None)
        >>> config.duplicates is None, config.split_familiarity_min  # duplicates skipped
        (True, 50)
    """

    projection: Any = dataclasses.field(default_factory=_projection_default)
    duplicates: Any = dataclasses.field(default_factory=_duplicates_default)
    familiarity: Any = dataclasses.field(default_factory=_familiarity_default)
    dim_reduction: Any = None
    split_familiarity_min: int = 50

    def __post_init__(self) -> None:
        value = self.split_familiarity_min
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise IntroscopeValueError(
                f"ReportConfig: split_familiarity_min must be an int, got {value!r}"
            )
        object.__setattr__(self, "split_familiarity_min", int(value))

    @property
    def n_stages(self) -> int:
        """How many passes DNIKit 2.0 makes over the data for this configuration (introscope
        always makes one)."""
        if self.familiarity or self.projection:
            return 3
        if self.duplicates:
            return 2
        return 1

    @property
    def use_dim_reduction(self) -> bool:
        """True when a component that works on the reduced responses runs."""
        return bool(self.familiarity or self.duplicates or self.projection)
