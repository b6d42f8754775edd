"""Familiarity: how typical each element's response is under a density fitted to reference data."""

from ._distribution import GaussianComponent, GMMCovarianceType, GMMDistribution
from ._familiarity import Familiarity
from ._fit_data import FitData
from ._gmm import DEFAULT_SEED, GMM
from ._protocols import FamiliarityDistribution, FamiliarityResult, FamiliarityStrategyType

__all__ = [
    "Familiarity",
    "FamiliarityResult",
    "FamiliarityDistribution",
    "FamiliarityStrategyType",
    "GMMCovarianceType",
    "GMM",
    "GMMDistribution",
    "GaussianComponent",
    "FitData",
    "DEFAULT_SEED",
]
