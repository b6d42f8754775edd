"""Duplicates: candidate sets of near-identical samples, from faiss nearest neighbours."""

from .._knn import EXACT_MAX_SAMPLES
from ._duplicates import N_NEIGHBORS, Duplicates, DuplicateSetCandidate
from ._threshold import DuplicatesThresholdStrategyType

__all__ = [
    "Duplicates",
    "DuplicateSetCandidate",
    "DuplicatesThresholdStrategyType",
    "EXACT_MAX_SAMPLES",
    "N_NEIGHBORS",
]
