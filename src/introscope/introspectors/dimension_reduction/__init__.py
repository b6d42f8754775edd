"""Dimension reduction of (samples, features) responses: streamed exact PCA, t-SNE, UMAP, PaCMAP."""

from ._dimension_reduction import DimensionReduction, OneOrManyDimStrategies
from ._pca_accumulator import PCAAccumulator
from ._pca_state import PCAFit, PCAState
from ._protocols import DimensionReductionStrategyType

__all__ = [
    "DimensionReduction",
    "DimensionReductionStrategyType",
    "OneOrManyDimStrategies",
    "PCAAccumulator",
    "PCAFit",
    "PCAState",
]
