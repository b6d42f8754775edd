"""The Duplicates introspector: candidate sets of near-identical samples in each response."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias, cast, final

import numpy as np

from introscope.base import Batch
from introscope.base._producer import Producer, check_batch_size
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors._accumulator import accumulate

from .._knn import NeighborsArg, nearest_neighbors
from . import _threshold
from ._clusters import close_rows, combine_clusters, components
from ._gather import DuplicatesAccumulator
from ._sets import summarise_sets
from ._threshold import DuplicatesThresholdStrategyType

__all__ = ["Duplicates", "DuplicateSetCandidate", "N_NEIGHBORS"]

_log = logging.getLogger("introscope.introspectors.duplicates")

#: Neighbours looked up per sample, the sample itself included (DNIKit's value).
N_NEIGHBORS: Final = 10


@dataclass
class DuplicateSetCandidate:
    """One set of samples that are closer to each other than the threshold.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import Duplicates
        >>> points = np.vstack([np.random.default_rng(0).normal(size=(20, 3)), np.zeros((2, 3))])
        >>> duplicates = Duplicates.introspect(producer_from_batches(Batch({"emb": points})))
        >>> candidate = next(c for c in duplicates.results["emb"] if 20 in c.indices)
        >>> sorted(map(int, candidate.indices)), candidate.batch.fields["emb"].shape
        ([20, 21], (2, 3))
    """

    std: float
    """Standard deviation of the members' distances to the set's centroid (normalised space); a
    numpy scalar as in DNIKit: ``numpy.float32`` for float32 (and float16) responses,
    ``numpy.float64`` otherwise (``float(c.std)`` or ``c.std.item()`` for a Python float)."""

    mean: float
    """Mean of the members' distances to the set's centroid (normalised space); a numpy scalar
    of the same type as ``std``."""

    projection: np.ndarray | None
    """2-D PCA coordinates of the members, rows in ``indices`` order; None for <= 5 members."""

    indices: Sequence[int]
    """Positions of the members in the producer's data, ordered along their first principal
    axis when there are more than 2 (ascending otherwise): a list of ``numpy.int32`` as in
    DNIKit (``numpy.int64`` past 2**31 - 1 samples)."""

    batch: Batch
    """The members' fields, snapshots and metadata, in ``indices`` order."""

    @property
    def size(self) -> int:
        """Number of members."""
        return self.batch.batch_size


def _work_dtype(dtype: np.dtype) -> np.dtype:
    # DNIKit divides by the column norms: float32 stays float32, everything else is float64.
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _column_norms(raw: np.ndarray) -> np.ndarray:
    """Per-column L2 norms (float64); an all-zero column gets norm 1 so it stays all zero."""
    sq = np.zeros(raw.shape[1], dtype=np.float64)
    for lo in range(0, len(raw), 8192):
        part = raw[lo : lo + 8192].astype(np.float64)
        sq += np.einsum("ij,ij->j", part, part)
    norms = np.sqrt(sq)
    huge = np.flatnonzero(~np.isfinite(norms))
    if huge.size:
        # float64 values above ~1e154 overflow their squares: those columns are summed after
        # dividing by their largest magnitude (the norm is then finite, and so is x / norm).
        cols = raw[:, huge].astype(np.float64)
        peak = np.abs(cols).max(axis=0)
        norms[huge] = peak * np.sqrt(np.einsum("ij,ij->j", cols / peak, cols / peak))
    norms[norms == 0] = 1.0
    return norms


def _normalised_f32(raw: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """The column-normalised responses as one C-contiguous float32 array (faiss' input)."""
    out = np.empty(raw.shape, dtype=np.float32)
    work = _work_dtype(raw.dtype)
    scale = norms.astype(work)
    for lo in range(0, len(raw), 8192):
        out[lo : lo + 8192] = raw[lo : lo + 8192].astype(work) / scale
    return out


def _sorted_distances(distances: np.ndarray) -> np.ndarray:
    """Every finite neighbour distance, ascending, without the leading zeros (as DNIKit)."""
    flat = distances[np.isfinite(distances)].astype(np.float64)
    flat.sort()
    return cast(np.ndarray, flat[np.searchsorted(flat, 0.0, side="right") :])


_Candidate: TypeAlias = DuplicateSetCandidate  # the class, where the nested name is shadowed


class _DuplicatesNames:
    """Nested names of ``Duplicates`` that are not dataclass fields.

    An annotated name in the dataclass body would be a field; a ``TypeAlias`` here, inherited,
    lets type checkers take ``Duplicates.DuplicateSetCandidate`` as the class in annotations.
    """

    __slots__ = ()

    DuplicateSetCandidate: TypeAlias = DuplicateSetCandidate


@final
@dataclass(frozen=True)
class Duplicates(_DuplicatesNames):
    """Candidate duplicate sets per response, from each sample's nearest neighbours.

    Create it with ``Duplicates.introspect``. ``results`` maps each response name to a
    list of ``Duplicates.DuplicateSetCandidate``.

    Examples:
        Samples 30 and 31 are near-copies of sample 0:

        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import Duplicates
        >>> rng = np.random.default_rng(0)
        >>> points = rng.normal(size=(30, 4))
        >>> points = np.vstack([points, points[:1] + 1e-4, points[:1] - 1e-4])
        >>> duplicates = Duplicates.introspect(producer_from_batches(Batch({"emb": points})))
        >>> [sorted(map(int, c.indices)) for c in duplicates.results["emb"] if 0 in c.indices]
        [[0, 30, 31]]
    """

    @final
    class ThresholdStrategy:
        """Bundled threshold strategies; any ``DuplicatesThresholdStrategyType`` works."""

        Percentile: TypeAlias = _threshold.Percentile
        Slope: TypeAlias = _threshold.Slope

    results: Mapping[str, Sequence[_Candidate]]
    """Response name -> candidate duplicate sets, in the order their first member was found."""

    count: int
    """Number of elements in the producer."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Response name -> the distance threshold used (normalised space)."""

    neighbor_search: Mapping[str, str] = field(default_factory=dict)
    """Response name -> how neighbours were found: ``"exact"`` or the IVF parameters."""

    @staticmethod
    def _combine_clusters(list_of_duplicates: Sequence[Sequence[int]]) -> list[list[int]]:
        """Merge index lists that share an index, transitively."""
        return combine_clusters(list_of_duplicates)

    @staticmethod
    def introspect(
        producer: Producer,
        *,
        batch_size: int = 32,
        threshold: DuplicatesThresholdStrategyType | None = None,
        neighbors: NeighborsArg = "auto",
    ) -> Duplicates:
        """Find candidate duplicate sets in every response of ``producer`` (one pass).

        Each column is divided by its L2 norm (an all-zero column stays zero); each sample's
        10 nearest neighbours (itself included) are found with faiss; the threshold comes from
        the sorted neighbour distances; a sample with more than one neighbour within it starts
        a set, and overlapping sets merge. Exact copies (distance 0) are always reported.
        Holds all responses in memory: O(samples x features) per response.

        Args:
            producer: yields batches whose fields are 2-D (batch, features) responses.
            batch_size: size of the batches pulled from ``producer``.
            threshold: a ``DuplicatesThresholdStrategyType``; default
                ``Duplicates.ThresholdStrategy.Slope()``.
            neighbors: ``"exact"`` (faiss brute force), ``"approximate"`` (an IVF partition,
                nprobe raised until a measured recall@10 reaches 0.95; exact search instead when
                that would probe over a quarter of the lists) or ``"auto"``: exact up to
                ``introscope.introspectors.duplicates.EXACT_MAX_SAMPLES`` (10,000) samples.
        """
        check_batch_size(batch_size)
        acc = Duplicates.accumulator(threshold=threshold, neighbors=neighbors)
        (result,) = accumulate(producer, acc, batch_size=batch_size, desc="Duplicates")
        return cast("Duplicates", result)

    @staticmethod
    def accumulator(
        *,
        threshold: DuplicatesThresholdStrategyType | None = None,
        neighbors: NeighborsArg = "auto",
    ) -> DuplicatesAccumulator:
        """An empty accumulator with ``introspect``'s options: ``update_batch``, ``merge``,
        ``save``/``load``, ``finalize() -> Duplicates`` (for shards, monitors, Ray workers)."""
        return DuplicatesAccumulator(threshold=threshold, neighbors=neighbors)

    @staticmethod
    def _from_accumulator(
        acc: DuplicatesAccumulator,
        *,
        threshold: DuplicatesThresholdStrategyType,
        neighbors: NeighborsArg = "auto",
    ) -> Duplicates:
        """Finish: neighbour search, threshold and sets for every gathered response."""
        combined = acc.combined_batch()
        results: dict[str, list[DuplicateSetCandidate]] = {}
        thresholds: dict[str, float] = {}
        searches: dict[str, str] = {}
        for name, buf in acc.states.items():
            raw = buf.result()
            n = len(raw)
            if n < N_NEIGHBORS:
                raise IntroscopeValueError(
                    f"Duplicates: response {name!r} has {n} samples, fewer than the "
                    f"{N_NEIGHBORS} neighbours looked up per sample; give Duplicates at least "
                    f"{N_NEIGHBORS} samples"
                )
            norms = _column_norms(raw)
            found = nearest_neighbors(_normalised_f32(raw, norms), N_NEIGHBORS, neighbors)
            cut = float(threshold(_sorted_distances(found.distances)))
            starts, pair_rows, members = close_rows(found.indices, found.distances, cut)
            sets = components(n, pair_rows, members, starts)
            work = _work_dtype(raw.dtype)
            scale = norms.astype(work)

            def samples(
                idx: np.ndarray, raw: np.ndarray = raw, scale: np.ndarray = scale
            ) -> np.ndarray:
                return cast(np.ndarray, raw[idx].astype(scale.dtype) / scale)

            summaries = summarise_sets(sets, samples, raw.shape[1])
            # DNIKit's indices are numpy.int32 (its neighbour table's dtype "i").
            index_type = np.int32 if n <= np.iinfo(np.int32).max else np.int64
            results[name] = [
                DuplicateSetCandidate(
                    std=s.std,  # type: ignore[arg-type]  # numpy scalars under DNIKit's annotations
                    mean=s.mean,  # type: ignore[arg-type]
                    projection=s.projection,
                    indices=list(s.indices.astype(index_type)),
                    batch=combined.elements[s.indices],
                )
                for s in summaries
            ]
            thresholds[name] = cut
            searches[name] = found.method
            _log.info(
                "Duplicates %r: %d samples, %s search, threshold %.6g, %d sets",
                name,
                n,
                found.method,
                cut,
                len(sets),
            )
        return Duplicates(results, count=acc.count, thresholds=thresholds, neighbor_search=searches)
