"""k nearest neighbours of every sample with faiss, for Duplicates and the UMAP strategy."""

from ._search import (
    EXACT_MAX_SAMPLES,
    RECALL_TARGET,
    Neighbors,
    NeighborsArg,
    check_neighbors_arg,
    faiss_module,
    nearest_neighbors,
    recall_at_k,
)

__all__ = [
    "EXACT_MAX_SAMPLES",
    "RECALL_TARGET",
    "Neighbors",
    "NeighborsArg",
    "check_neighbors_arg",
    "faiss_module",
    "nearest_neighbors",
    "recall_at_k",
]
