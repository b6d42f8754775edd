"""All-samples k-nearest-neighbour search over an IVF partition, one block per list.

Every sample is both a query and a database vector, so instead of probing lists query by
query (faiss' ``IndexIVFFlat``: one small distance loop per probed vector), the samples of one
list are searched together against the samples of the ``nprobe`` lists nearest to that list's
centroid, as one brute-force faiss call (a matrix product). The same partition, far fewer and
larger operations. The partition itself (k-means, assignment, neighbouring lists) is computed
on a seeded random projection to at most 64 dimensions, which keeps it cheap; the search in the
blocks is exact, in the full space. ``nprobe`` is chosen by measurement: raised until recall@k
on a sample of queries, checked against exact search, reaches the target.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["ivf_knn", "ivf_lists"]

_log = logging.getLogger("introscope.introspectors.knn")


#: Above this fraction of the lists probed, an exact search is about as cheap: fall back to it.
MAX_PROBE_FRACTION = 0.25

#: Dimensions of the random projection the partition is computed on.
PARTITION_DIMS = 64


def ivf_lists(n: int) -> int:
    """Number of lists: about 3 * sqrt(n) (1,000 at 100,000 samples), at least 32 samples each."""
    return max(1, min(int(3 * math.sqrt(n)), n // 32))


@contextmanager
def _faiss_threads(faiss: Any, count: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class _Partition:
    """k-means lists of the samples, and each list's neighbouring lists by centroid distance."""

    def __init__(self, faiss: Any, x: np.ndarray, nlist: int, seed: int) -> None:
        n, d = x.shape
        if d > PARTITION_DIMS:
            rng = np.random.default_rng(seed)
            proj = rng.standard_normal((d, PARTITION_DIMS)).astype(np.float32)
            low = np.empty((n, PARTITION_DIMS), dtype=np.float32)
            for lo in range(0, n, 16384):
                np.matmul(x[lo : lo + 16384], proj, out=low[lo : lo + 16384])
        else:
            low = x
        km = faiss.Kmeans(low.shape[1], nlist, niter=10, seed=seed, max_points_per_centroid=32)
        km.cp.min_points_per_centroid = 1  # silence faiss' warning for small samples
        km.train(low)
        self.centroids = km.centroids
        quantizer = faiss.IndexFlatL2(low.shape[1])
        quantizer.add(self.centroids)
        self.assign = np.empty(n, dtype=np.int64)
        for lo in range(0, n, 16384):
            _, a = quantizer.search(low[lo : lo + 16384], 1)
            self.assign[lo : lo + 16384] = a[:, 0]
        order = np.argsort(self.assign, kind="stable")
        counts = np.bincount(self.assign, minlength=nlist)
        self.members = np.split(order, np.cumsum(counts)[:-1])
        # Lists ordered by distance of their centroid to each centroid (itself first).
        _, self.near = quantizer.search(self.centroids, nlist)
        self.near[:, 0] = np.arange(nlist)
        self.nlist = nlist

    def candidates(self, lst: int, nprobe: int) -> np.ndarray:
        return np.concatenate([self.members[p] for p in self.near[lst, :nprobe]])


def _block_search(
    faiss: Any, x: np.ndarray, queries: np.ndarray, cands: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    kk = min(k, len(cands))
    sq, found = faiss.knn(x[queries], x[cands], kk)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    out[:, :kk] = np.where(found >= 0, cands[np.maximum(found, 0)], -1)
    dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    dist[:, :kk] = sq
    return out, dist


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found[:, :, None] == truth[:, None, :]).any(axis=1).mean())


def ivf_knn(
    faiss: Any,
    x: np.ndarray,
    k: int,
    *,
    recall_target: float,
    check_queries: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str, float] | None:
    """Approximate k nearest neighbours of every row of ``x`` (float32, C-contiguous).

    Returns (indices (n, k), squared distances (n, k; inf where no neighbour was found), a
    description of the parameters, the measured recall@k), or None when reaching the target
    would probe more than ``MAX_PROBE_FRACTION`` of the lists (search exactly then).
    """
    # faiss' OpenMP threads: on an idle 2-core machine two threads take 4.0-4.5 s where one
    # takes 6.5-7.6 s (100,000 x 512); on a machine busy with other work their spinning made the
    # many mid-sized calls here 3-4x slower. So: OMP_NUM_THREADS when the user set it, else
    # faiss' own default (one per core).
    threads = _env_threads() or faiss.omp_get_max_threads()
    with _faiss_threads(faiss, threads):
        return _ivf_knn(faiss, x, k, recall_target, check_queries, seed)


def _env_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _ivf_knn(
    faiss: Any, x: np.ndarray, k: int, recall_target: float, check_queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray, str, float] | None:
    n = len(x)
    nlist = ivf_lists(n)
    part = _Partition(faiss, x, nlist, seed)
    rng = np.random.default_rng(seed)
    check = np.sort(rng.choice(n, min(n, check_queries), replace=False))
    _, truth = faiss.knn(x[check], x, k)
    check_lists = part.assign[check]
    nprobe = min(4, nlist)
    while True:
        found = np.empty((len(check), k), dtype=np.int64)
        for lst in np.unique(check_lists):
            rows = np.flatnonzero(check_lists == lst)
            found[rows] = _block_search(faiss, x, check[rows], part.candidates(lst, nprobe), k)[0]
        recall = _recall(found, truth)
        if recall >= recall_target:
            break
        if 2 * nprobe > nlist * MAX_PROBE_FRACTION:
            # Probing this much of the data costs about an exact search (the data has no
            # local structure at this size): let the caller search exactly instead.
            _log.info(
                "IVF blocks: recall@%d %.3f at nprobe=%d of %d lists; exact search instead",
                k,
                recall,
                nprobe,
                nlist,
            )
            return None
        nprobe = 2 * nprobe
    out = np.empty((n, k), dtype=np.int64)
    sq = np.empty((n, k), dtype=np.float32)
    for lst in range(nlist):
        queries = part.members[lst]
        if len(queries):
            out[queries], sq[queries] = _block_search(
                faiss, x, queries, part.candidates(lst, nprobe), k
            )
    _log.info("IVF blocks: nlist=%d nprobe=%d measured recall@%d=%.4f", nlist, nprobe, k, recall)
    return out, sq, f"ivf(nlist={nlist}, nprobe={nprobe})", recall
