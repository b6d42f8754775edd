"""Per-set statistics and PCA orderings, computed for many duplicate sets at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

__all__ = ["SetSummary", "summarise_sets"]

_GROUP_ELEMENTS = 1 << 22  # float64 elements of stacked member data per vectorised step


@dataclass(frozen=True)
class SetSummary:
    """One set's members in display order, distance-to-centroid mean/std, optional 2-D PCA.

    ``mean`` and ``std`` are computed in float64 and given as numpy scalars of the normalised
    responses' dtype (float32 for float32 data, float64 otherwise), DNIKit's types.
    """

    indices: np.ndarray
    mean: np.floating[Any]
    std: np.floating[Any]
    projection: np.ndarray | None


def _pca_scores(centred: np.ndarray, n_components: int) -> np.ndarray:
    """PCA scores (U * S) of stacked centred sets ``(sets, m, d)``, signs as scikit-learn's PCA.

    Uses the ``m x m`` Gram matrix when sets are short and the ``d x d`` covariance otherwise.
    scikit-learn fixes each component's sign so that its largest-magnitude loading is positive.
    """
    k, m, d = centred.shape
    if m <= d:
        gram = centred @ centred.transpose(0, 2, 1)
        vals, vecs = np.linalg.eigh(gram)  # ascending
        vals = vals[:, ::-1][:, :n_components]
        vecs = vecs[:, :, ::-1][:, :, :n_components]  # (k, m, c)
        sing = np.sqrt(np.clip(vals, 0, None))  # (k, c)
        scores = vecs * sing[:, None, :]
        safe = np.where(sing > 0, sing, 1.0)
        loadings = (centred.transpose(0, 2, 1) @ vecs) / safe[:, None, :]  # (k, d, c)
    else:
        cov = centred.transpose(0, 2, 1) @ centred
        _, vecs = np.linalg.eigh(cov)
        loadings = vecs[:, :, ::-1][:, :, :n_components]  # (k, d, c)
        scores = centred @ loadings
    pick = np.abs(loadings).argmax(axis=1)  # (k, c)
    top = np.take_along_axis(loadings, pick[:, None, :], axis=1)[:, 0, :]
    signs = np.where(top < 0, -1.0, 1.0)
    return cast(np.ndarray, scores * signs[:, None, :])


def _summarise_group(
    sets: Sequence[np.ndarray], samples: Callable[[np.ndarray], np.ndarray]
) -> list[SetSummary]:
    """Sets of one size ``m``: stack them and compute everything with batched linear algebra."""
    members = np.stack(sets)  # (k, m) ascending member indices
    k, m = members.shape
    raw = samples(members.ravel())
    out_dtype = raw.dtype
    scalar = out_dtype.type
    data = raw.astype(np.float64).reshape(k, m, -1)
    centred = data - data.mean(axis=1, keepdims=True)
    dist = np.sqrt((centred * centred).sum(axis=2))  # (k, m) distance to the centroid
    means = dist.mean(axis=1)
    stds = dist.std(axis=1)
    projections: np.ndarray | None = None
    if m > 2:
        n_comp = 2 if m > 5 else 1
        scores = _pca_scores(centred, n_comp)  # (k, m, n_comp)
        order = np.argsort(scores[:, :, 0], axis=1, kind="stable")
        members = np.take_along_axis(members, order, axis=1)
        if m > 5:
            projections = np.take_along_axis(scores, order[:, :, None], axis=1).astype(out_dtype)
    return [
        SetSummary(
            members[i],
            scalar(means[i]),
            scalar(stds[i]),
            None if projections is None else projections[i],
        )
        for i in range(k)
    ]


def summarise_sets(
    sets: Sequence[np.ndarray], samples: Callable[[np.ndarray], np.ndarray], dim: int
) -> list[SetSummary]:
    """Summaries of ``sets`` (ascending index arrays), in the same order.

    ``samples(indices)`` returns the normalised responses of those samples, ``(len, dim)``.
    Sets of equal size are processed together (DNIKit fits one scikit-learn PCA per set).
    """
    out: list[SetSummary | None] = [None] * len(sets)
    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    for m in np.unique(sizes):
        where = np.flatnonzero(sizes == m)
        step = max(1, _GROUP_ELEMENTS // (int(m) * max(dim, int(m))))
        for lo in range(0, len(where), step):
            chunk = where[lo : lo + step]
            for pos, summary in zip(
                chunk, _summarise_group([sets[i] for i in chunk], samples), strict=True
            ):
                out[pos] = summary
    return out  # type: ignore[return-value]
