"""UMAP's nearest-neighbour graph from faiss instead of pynndescent.

umap-learn finds the ``n_neighbors`` nearest neighbours of every fitting row with pynndescent.
Its search is quick once compiled, but numba compiles it in every new process: about 25 s on a
2-core machine, most of a first UMAP fit of 20,000 rows (the rest takes ~10 s cold, ~4 s warm).
faiss needs no compilation: the exact graph of 20,000 x 40 takes ~0.6 s, and above
``EXACT_MAX_SAMPLES`` rows the IVF blocks of ``_knn`` search with a measured recall@k of at
least ``RECALL_TARGET``. The graph goes to umap-learn as its documented ``precomputed_knn``;
everything after it (fuzzy set, layout) is umap-learn's own.

Rows a fitted UMAP has not seen go through ``UMAP.transform``, which queries
``_knn_search_index``: ``FaissSearchIndex`` answers those queries exactly with faiss. It follows
the two members umap-learn's ``transform`` uses (``query`` and ``_angular_trees``), checked by
the tests against the umap-learn version installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal, cast

import numpy as np

from introscope.exceptions import IntroscopeValueError

from .._knn import NeighborsArg, faiss_module, nearest_neighbors

__all__ = [
    "EXACT_MAX_SAMPLES",
    "RECALL_TARGET",
    "FaissSearchIndex",
    "UMAPNeighbors",
    "check_umap_neighbors",
    "fit_umap",
    "knn_options",
]

UMAPNeighbors = Literal["auto", "exact", "approximate", "umap"]

#: umap-learn computes all pairwise distances below this many rows; it ignores a graph then.
UMAP_SMALL_DATA = 4096

#: ``neighbors="auto"`` searches exactly up to this many rows (0.6 s at 20,000 x 40).
EXACT_MAX_SAMPLES = 20_000

#: Recall@k the IVF search must reach, measured against exact search on sampled rows.
RECALL_TARGET = 0.98

_CHUNK = 4096
_LABEL = "DimensionReduction.Strategy.UMAP"


def check_umap_neighbors(value: object) -> UMAPNeighbors:
    if value not in ("auto", "exact", "approximate", "umap"):
        raise IntroscopeValueError(
            f'{_LABEL}: neighbors must be "auto", "exact", "approximate" or "umap", got {value!r}'
        )
    return value


def _faiss_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def _uses_faiss(neighbors: UMAPNeighbors, options: Mapping[str, Any], n: int) -> bool:
    """Whether the graph comes from faiss: Euclidean, no graph of the user's, enough rows."""
    if neighbors == "umap":
        return False
    own = options.get("precomputed_knn", (None, None, None))
    custom = (
        options.get("metric", "euclidean") not in ("euclidean", "l2")
        or (own is not None and own[0] is not None)
        or bool(options.get("unique", False))
        or bool(options.get("densmap", False))
    )
    if custom:
        if neighbors != "auto":
            raise IntroscopeValueError(
                f'{_LABEL}: neighbors="{neighbors}" needs the Euclidean metric without '
                f"precomputed_knn, unique or densmap; pass neighbors='umap' (or leave it 'auto') "
                f"to use umap-learn's own search with these options"
            )
        return False
    if neighbors == "auto" and not _faiss_available():
        return False
    return n >= UMAP_SMALL_DATA


class FaissSearchIndex:
    """Exact Euclidean neighbours among the fitted rows, for ``UMAP.transform``."""

    _angular_trees = False  # read by umap-learn's transform to pick its search epsilon

    def __init__(self, data: np.ndarray) -> None:
        self._data = data

    def query(
        self, query_data: np.ndarray, k: int = 10, epsilon: float = 0.1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices (m, k) int32, Euclidean distances (m, k) float32); ``epsilon`` is unused."""
        del epsilon  # the search is exact
        faiss = faiss_module("UMAP's nearest-neighbour search")
        queries = np.ascontiguousarray(query_data, dtype=np.float32)
        indices = np.empty((len(queries), k), dtype=np.int32)
        distances = np.empty((len(queries), k), dtype=np.float32)
        for lo in range(0, len(queries), _CHUNK):
            sq, idx = faiss.knn(queries[lo : lo + _CHUNK], self._data, k)
            indices[lo : lo + _CHUNK] = idx
            distances[lo : lo + _CHUNK] = np.sqrt(np.maximum(sq, 0.0))
        return indices, distances


def knn_options(
    neighbors: UMAPNeighbors, options: Mapping[str, Any], data: np.ndarray
) -> tuple[dict[str, Any], str]:
    """umap-learn options with a faiss ``precomputed_knn`` when it applies, and its description."""
    if not _uses_faiss(neighbors, options, len(data)):
        return dict(options), "umap-learn"
    k = int(options.get("n_neighbors", 15))
    rows = np.ascontiguousarray(data, dtype=np.float32)
    found = nearest_neighbors(
        rows,
        k,
        cast("NeighborsArg", neighbors),
        exact_max_samples=EXACT_MAX_SAMPLES,
        recall_target=RECALL_TARGET,
    )
    graph = (
        found.indices.astype(np.int32),
        found.distances.astype(np.float32),
        FaissSearchIndex(rows),
    )
    return {**options, "precomputed_knn": graph}, f"faiss {found.method}"


def fit_umap(umap_cls: type, options: Mapping[str, Any], data: np.ndarray) -> Any:
    """Fit ``umap_cls(**options)`` on ``data``, quiet about the search index it does not know."""
    model = umap_cls(**options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        model.fit(data)
    return model
