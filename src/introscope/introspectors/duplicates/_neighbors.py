"""Nearest neighbours of every sample with faiss: exact search for small data, IVF above."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from introscope.exceptions import IntroscopeValueError, require

__all__ = ["EXACT_MAX_SAMPLES", "NeighborsArg", "Neighbors", "nearest_neighbors", "recall_at_k"]

_log = logging.getLogger("introscope.introspectors.duplicates")

NeighborsArg = Literal["auto", "exact", "approximate"]

#: With ``neighbors="auto"``, data sets of at most this many samples use exact search.
EXACT_MAX_SAMPLES = 20_000

#: Recall@k the approximate index must reach on a sample of queries checked against exact search.
RECALL_TARGET = 0.95

_CHUNK = 4096  # query rows per search / distance chunk
_CHECK_QUERIES = 256  # queries used to measure the approximate index's recall


@dataclass(frozen=True)
class Neighbors:
    """k nearest neighbours of every sample (itself included) and their Euclidean distances."""

    indices: np.ndarray  # (n, k) int64
    distances: np.ndarray  # (n, k) float32 from the vectors; inf marks a slot with no neighbour
    method: str  # "exact" or "ivf(nlist=..., nprobe=...)"
    recall_estimate: float | None  # measured recall@k of the approximate index, None for exact


def _faiss():  # noqa: ANN202
    return require("faiss", "duplicates", "Duplicates' nearest-neighbour search")


def check_neighbors_arg(value: object) -> NeighborsArg:
    if value not in ("auto", "exact", "approximate"):
        raise IntroscopeValueError(
            f'Duplicates.introspect: neighbors must be "auto", "exact" or "approximate", '
            f"got {value!r}"
        )
    return value  # type: ignore[return-value]


def _exact(x: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    faiss = _faiss()
    q = x if queries is None else queries
    out = np.empty((len(q), k), dtype=np.int64)
    for lo in range(0, len(q), _CHUNK):
        _, idx = faiss.knn(q[lo : lo + _CHUNK], x, k)
        out[lo : lo + _CHUNK] = idx
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` that appears in the same row of ``found``."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=1)
    return float(hits.mean())


def _ivf_lists(n: int) -> int:
    # About 4 * sqrt(n) lists (faiss' guideline), at least 39 training points per list.
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _approximate(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, str, float]:
    faiss = _faiss()
    n, d = x.shape
    nlist = _ivf_lists(n)
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    # 64 points per list is plenty for k-means on the coarse quantizer and bounds its cost.
    train_n = min(n, 64 * nlist)
    train = x if train_n == n else x[np.sort(rng.choice(n, train_n, replace=False))]
    index.train(train)
    for lo in range(0, n, 65536):
        index.add(x[lo : lo + 65536])

    # Choose nprobe by measurement: double it until recall@k on a sample of queries, checked
    # against exact search, reaches the target.
    check = np.sort(rng.choice(n, min(n, _CHECK_QUERIES), replace=False))
    truth = _exact(x, k, x[check])
    nprobe = min(8, nlist)
    while True:
        index.nprobe = nprobe
        _, found = index.search(x[check], k)
        recall = recall_at_k(found, truth)
        if recall >= RECALL_TARGET or nprobe >= nlist:
            break
        nprobe = min(2 * nprobe, nlist)
    _log.info("IVF index: nlist=%d nprobe=%d measured recall@%d=%.4f", nlist, nprobe, k, recall)

    out = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, _CHUNK):
        _, idx = index.search(x[lo : lo + _CHUNK], k)
        out[lo : lo + _CHUNK] = idx
    return out, f"ivf(nlist={nlist}, nprobe={nprobe})", recall


def _with_self(idx: np.ndarray) -> np.ndarray:
    """Make every row contain its own sample (first), dropping the farthest neighbour if needed."""
    rows = np.arange(len(idx))
    missing = ~(idx == rows[:, None]).any(axis=1)
    if missing.any():
        fixed = idx[missing]
        idx[missing, 1:] = fixed[:, :-1]
        idx[missing, 0] = rows[missing]
    return idx


def _distances(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Euclidean distance of each sample to each of its neighbours, from the vectors.

    Computed as the norm of the difference (not faiss' expanded ``|a|^2 + |b|^2 - 2ab``), so a
    sample's distance to itself and to an exact copy is exactly 0.
    """
    n, k = idx.shape
    out = np.empty((n, k), dtype=np.float32)
    rows = max(1, (1 << 22) // max(1, k * x.shape[1]))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        diff = x[idx[lo:hi]] - x[lo:hi, None, :]
        out[lo:hi] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


def nearest_neighbors(x: np.ndarray, k: int, method: NeighborsArg = "auto") -> Neighbors:
    """The ``k`` nearest neighbours (Euclidean) of every row of ``x`` (float32, C-contiguous)."""
    n = len(x)
    if method == "auto":
        method = "exact" if n <= EXACT_MAX_SAMPLES else "approximate"
    recall: float | None = None
    if method == "exact" or n <= k:
        idx = _exact(x, k)
        name = "exact"
    else:
        idx, name, recall = _approximate(x, k)
        # An IVF search that probes too few lists can return fewer than k hits (-1). Those
        # slots become the sample itself at distance inf: never within a threshold.
        bad = idx < 0
        if bad.any():
            idx[bad] = np.broadcast_to(np.arange(n)[:, None], idx.shape)[bad]
    idx = _with_self(idx)
    dist = _distances(x, idx)
    rows = np.arange(n)
    repeated = idx == rows[:, None]
    repeated[rows, repeated.argmax(axis=1)] = False
    dist[repeated] = np.inf
    return Neighbors(idx, dist, name, recall)
