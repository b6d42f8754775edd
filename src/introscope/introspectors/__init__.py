"""Introspectors: algorithms that consume a producer of model responses or data."""

from .dimension_reduction import (
    DimensionReduction,
    DimensionReductionStrategyType,
    OneOrManyDimStrategies,
)
from .duplicates import Duplicates, DuplicatesThresholdStrategyType
from .familiarity import (
    Familiarity,
    FamiliarityDistribution,
    FamiliarityResult,
    FamiliarityStrategyType,
    GMMCovarianceType,
)
from .iua import IUA
from .pfa import (
    PFA,
    PFACovariancesResult,
    PFAEnergyDiagnostics,
    PFAKLDiagnostics,
    PFARecipe,
    PFAStrategyType,
    PFAUnitSelectionStrategyType,
)
from .report import DatasetReport, ReportConfig

__all__: list[str] = []
__all__ += ["IUA"]
__all__ += [
    "Familiarity",
    "FamiliarityResult",
    "FamiliarityDistribution",
    "FamiliarityStrategyType",
    "GMMCovarianceType",
]
__all__ += [
    "PFA",
    "PFARecipe",
    "PFAKLDiagnostics",
    "PFAEnergyDiagnostics",
    "PFACovariancesResult",
    "PFAStrategyType",
    "PFAUnitSelectionStrategyType",
]
__all__ += ["Duplicates", "DuplicatesThresholdStrategyType"]
__all__ += ["DimensionReduction", "DimensionReductionStrategyType", "OneOrManyDimStrategies"]
__all__ += ["DatasetReport", "ReportConfig"]
