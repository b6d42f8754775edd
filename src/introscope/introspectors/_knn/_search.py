"""Nearest neighbours of every sample with faiss: exact search for small data, IVF above.

Shared by Duplicates (10 neighbours in the column-normalised space) and the UMAP strategy of
DimensionReduction (its ``n_neighbors`` in the input space).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Literal, cast

import numpy as np

from introscope.exceptions import IntroscopeValueError, require

from ._ivf import ivf_knn

__all__ = [
    "EXACT_MAX_SAMPLES",
    "RECALL_TARGET",
    "NeighborsArg",
    "Neighbors",
    "check_neighbors_arg",
    "faiss_module",
    "nearest_neighbors",
    "recall_at_k",
]

NeighborsArg = Literal["auto", "exact", "approximate"]

#: With ``neighbors="auto"``, data sets of at most this many samples use exact search.
EXACT_MAX_SAMPLES = 10_000

#: Recall@k the approximate index must reach on a sample of queries checked against exact search.
RECALL_TARGET = 0.95

_CHUNK = 4096  # query rows per search / distance chunk


@dataclass(frozen=True)
class Neighbors:
    """k nearest neighbours of every sample (itself included) and their Euclidean distances."""

    indices: np.ndarray  # (n, k) int64
    distances: np.ndarray  # (n, k) float32 from the vectors; inf marks a slot with no neighbour
    method: str  # "exact" or "ivf(nlist=..., nprobe=...)"
    recall_estimate: float | None  # measured recall@k of the approximate index, None for exact


def faiss_module(purpose: str = "the nearest-neighbour search") -> ModuleType:
    """faiss, or ``MissingDependencyError`` naming the extra that installs it."""
    return require("faiss", "duplicates", purpose)


def check_neighbors_arg(value: object, where: str = "Duplicates.introspect") -> NeighborsArg:
    if value not in ("auto", "exact", "approximate"):
        raise IntroscopeValueError(
            f'{where}: neighbors must be "auto", "exact" or "approximate", got {value!r}'
        )
    return value


def _exact(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    faiss = faiss_module()
    idx = np.empty((len(x), k), dtype=np.int64)
    sq = np.empty((len(x), k), dtype=np.float32)
    for lo in range(0, len(x), _CHUNK):
        sq[lo : lo + _CHUNK], idx[lo : lo + _CHUNK] = faiss.knn(x[lo : lo + _CHUNK], x, k)
    return idx, sq


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` that appears in the same row of ``found``."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=1)
    return float(hits.mean())


def _with_self(idx: np.ndarray, sq: np.ndarray) -> None:
    """Make every row contain its own sample (first), dropping the farthest neighbour if needed."""
    rows = np.arange(len(idx))
    missing = ~(idx == rows[:, None]).any(axis=1)
    if missing.any():
        idx[missing, 1:] = idx[missing, :-1]
        sq[missing, 1:] = sq[missing, :-1]
        idx[missing, 0] = rows[missing]
        sq[missing, 0] = 0.0


def _distances(x: np.ndarray, idx: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Euclidean distances from faiss' squared ones, with the short ones recomputed exactly.

    faiss expands ``|a - b|^2`` as ``|a|^2 + |b|^2 - 2ab``, whose rounding error is relative to
    the norms, not to the distance: fine for ordinary neighbours, wrong for near and exact
    copies. Distances under 10 % of the vectors' norms are therefore recomputed as the norm of
    the difference, so a sample's distance to itself and to an exact copy is exactly 0.
    """
    dist = np.sqrt(np.maximum(sq, 0.0, where=np.isfinite(sq), out=sq.copy()))
    norms2 = np.einsum("ij,ij->i", x, x)
    own = idx == np.arange(len(idx))[:, None]
    dist[own] = 0.0
    near = ~own & np.isfinite(sq) & (sq <= 1e-2 * (norms2[:, None] + norms2[idx]))
    rows, cols = np.nonzero(near)
    for lo in range(0, len(rows), 65536):
        r, c = rows[lo : lo + 65536], cols[lo : lo + 65536]
        diff = x[idx[r, c]] - x[r]
        dist[r, c] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return cast(np.ndarray, dist)


def nearest_neighbors(
    x: np.ndarray,
    k: int,
    method: NeighborsArg = "auto",
    *,
    exact_max_samples: int = EXACT_MAX_SAMPLES,
    recall_target: float = RECALL_TARGET,
) -> Neighbors:
    """The ``k`` nearest neighbours (Euclidean) of every row of ``x`` (float32, C-contiguous).

    ``"auto"`` searches exactly up to ``exact_max_samples`` rows and with the IVF blocks above,
    raising ``nprobe`` until the measured recall@k reaches ``recall_target``.
    """
    n = len(x)
    if method == "auto":
        method = "exact" if n <= exact_max_samples else "approximate"
    recall: float | None = None
    approx = None
    if method == "approximate" and n > k:
        approx = ivf_knn(faiss_module(), x, k, recall_target=recall_target)
    if approx is None:
        idx, sq = _exact(x, k)
        name = "exact"
    else:
        idx, sq, name, recall = approx
    _with_self(idx, sq)
    # A search can return fewer than k hits (-1, last in a row): those slots become the sample
    # itself at distance inf, never within a threshold.
    bad = idx < 0
    if bad.any():
        idx[bad] = np.broadcast_to(np.arange(n)[:, None], idx.shape)[bad]
        sq[bad] = np.inf
    dist = _distances(x, idx, sq)
    rows = np.arange(n)
    repeated = idx == rows[:, None]
    repeated[rows, repeated.argmax(axis=1)] = False
    dist[repeated] = np.inf
    return Neighbors(idx, dist, name, recall)
