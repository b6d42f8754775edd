"""Candidate duplicate sets: near-neighbour rows merged transitively into clusters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["close_rows", "components", "combine_clusters"]


def close_rows(
    indices: np.ndarray, distances: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows with more than one neighbour within ``threshold``, as flat (row, member) pairs.

    Distance 0 always counts, so exact copies are reported whatever the threshold.
    Returns (starting rows ascending, row of each pair, member of each pair).
    """
    close = (distances <= threshold) | (distances == 0)
    counts = close.sum(axis=1)
    starts = np.flatnonzero(counts > 1)
    sub = close[starts]
    pair_rows = np.repeat(starts, counts[starts])
    members = indices[starts][sub]
    return starts, pair_rows, members


def components(
    n_nodes: int, pair_rows: np.ndarray, members: np.ndarray, starts: np.ndarray
) -> list[np.ndarray]:
    """Connected components of the rows' member lists, in DNIKit's order.

    Each row links its members; overlapping rows merge. The components come ordered by the first
    row (in ``starts`` order) that touches them, members ascending.
    """
    if len(starts) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(members), dtype=np.int8), (pair_rows, members)), shape=(n_nodes, n_nodes)
    )
    _, labels = connected_components(graph, directed=True, connection="weak")
    involved = np.zeros(n_nodes, dtype=bool)
    involved[members] = True
    involved[starts] = True
    nodes = np.flatnonzero(involved)
    node_labels = labels[nodes]
    # The order of a component: position of the first starting row that belongs to it.
    _, first = np.unique(labels[starts], return_index=True)
    comp_ids = labels[starts][np.sort(first)]
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[comp_ids] = np.arange(len(comp_ids))
    order = np.lexsort((nodes, rank[node_labels]))
    nodes = nodes[order]
    sorted_ranks = rank[node_labels[order]]
    bounds = np.flatnonzero(np.diff(sorted_ranks)) + 1
    return np.split(nodes, bounds)


def combine_clusters(list_of_duplicates: Sequence[Sequence[int]]) -> list[list[int]]:
    """Merge index lists that share an index, transitively (DNIKit's ``_combine_clusters``).

    ``[[10, 11], [12, 13, 14], [5, 6], [6, 9]]`` gives ``[[10, 11], [12, 13, 14], [5, 6, 9]]``.
    """
    lists = [np.asarray(list(group), dtype=np.int64).ravel() for group in list_of_duplicates]
    lists = [g for g in lists if len(g)]
    if not lists:
        return []
    flat = np.concatenate(lists)
    values, dense = np.unique(flat, return_inverse=True)
    rows = np.repeat(np.arange(len(lists)), [len(g) for g in lists])
    # One extra node per list links its members; list nodes come after the value nodes.
    n_values = len(values)
    list_nodes = n_values + np.arange(len(lists))
    groups = components(
        n_values + len(lists),
        np.concatenate([list_nodes[rows], list_nodes]),
        np.concatenate([dense, list_nodes]),
        list_nodes,
    )
    return [values[g[g < n_values]].tolist() for g in groups]
