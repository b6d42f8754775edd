"""UMAP's nearest-neighbour graph from faiss: the graph, the fit, transform of new rows, choices."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("umap")
pytest.importorskip("faiss")

from sklearn.manifold import trustworthiness  # noqa: E402

from introscope.exceptions import IntroscopeValueError  # noqa: E402
from introscope.introspectors import DimensionReduction  # noqa: E402
from introscope.introspectors.dimension_reduction import _umap_knn  # noqa: E402

S = DimensionReduction.Strategy
N = 4_500  # above umap-learn's 4,096-row all-pairs path, where a graph is used
QUICK = {"n_epochs": 30, "random_state": 0, "n_jobs": 1}


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 6, (3, 8))
    labels = rng.integers(0, 3, N)
    x = (centres[labels] + rng.normal(0, 1, (N, 8))).astype(np.float32)
    return x, labels, centres


def fitted(strategy, x: np.ndarray):  # noqa: ANN001, ANN201
    strategy.fit_incremental(x)
    strategy.fit_complete()
    return strategy


def brute_force_knn(x: np.ndarray, k: int) -> np.ndarray:
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x.astype(np.float64) @ x.T.astype(np.float64))
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_exact_graph_is_the_true_neighbours_and_the_layout_is_as_good(clusters):
    x, labels, _ = clusters
    ours = fitted(S.UMAP(2, neighbors="exact", **QUICK), x)
    assert ours.neighbor_search == "faiss exact"
    graph = ours._umap._knn_indices
    truth = brute_force_knn(x[:500], 15)  # the first 500 rows against themselves only
    full = brute_force_knn(x, 15)[:500]
    assert graph.shape == (N, 15) and graph.dtype == np.int32
    same = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(graph[:500], full)])
    assert same > 0.999 and truth.shape == (500, 15)
    theirs = fitted(S.UMAP(2, neighbors="umap", **QUICK), x)
    assert theirs.neighbor_search == "umap-learn"
    sample = slice(0, 1500)
    t_ours = trustworthiness(x[sample], ours.transform_one_shot()[sample], n_neighbors=10)
    t_theirs = trustworthiness(x[sample], theirs.transform_one_shot()[sample], n_neighbors=10)
    assert t_ours > t_theirs - 0.02
    # each cluster is one compact region of the embedding
    emb = ours.transform_one_shot()
    centres = np.stack([emb[labels == c].mean(0) for c in range(3)])
    nearest = np.argmin(((emb[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.99


def test_new_rows_are_transformed_through_the_faiss_index(clusters):
    x, labels, centres = clusters
    strategy = fitted(S.UMAP(2, **QUICK), x)
    assert strategy.neighbor_search == "faiss exact"
    assert isinstance(strategy._umap._knn_search_index, _umap_knn.FaissSearchIndex)
    rng = np.random.default_rng(3)
    new_labels = rng.integers(0, 3, 200)
    new = (centres[new_labels] + rng.normal(0, 1, (200, 8))).astype(np.float32)
    out = strategy.transform(new)
    emb = strategy.transform_one_shot()
    cluster_centres = np.stack([emb[labels == c].mean(0) for c in range(3)])
    nearest = np.argmin(((out[:, None] - cluster_centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == new_labels).mean() > 0.98
    np.testing.assert_array_equal(strategy.transform(x[:10]), emb[:10])


def test_search_index_answers_exactly():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(300, 5)).astype(np.float32)
    queries = rng.normal(size=(40, 5)).astype(np.float64)
    idx, dist = _umap_knn.FaissSearchIndex(data).query(queries, k=7, epsilon=0.12)
    assert idx.dtype == np.int32 and dist.dtype == np.float32 and idx.shape == (40, 7)
    full = np.linalg.norm(queries[:, None, :] - data[None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :7])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :7], rtol=1e-5, atol=1e-5)


def test_approximate_search_reaches_its_recall(clusters):
    x, _, _ = clusters
    strategy = fitted(S.UMAP(2, neighbors="approximate", **QUICK), x)
    assert strategy.neighbor_search.startswith("faiss ")
    graph = strategy._umap._knn_indices[:300]
    truth = brute_force_knn(x, 15)[:300]
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(graph, truth)])
    assert recall >= 0.95


def test_where_the_graph_comes_from_umap_learn(clusters, monkeypatch):
    x, _, _ = clusters
    # below 4,096 rows umap-learn computes all distances itself
    assert fitted(S.UMAP(2, **QUICK), x[:1000]).neighbor_search == "umap-learn"
    # another metric: umap-learn's search with "auto", an error when faiss is asked for
    options = {"metric": "cosine"}
    assert _umap_knn.knn_options("auto", options, x) == (options, "umap-learn")
    with pytest.raises(IntroscopeValueError, match="Euclidean metric"):
        fitted(S.UMAP(2, neighbors="exact", metric="cosine", **QUICK), x)
    # without faiss, "auto" falls back to umap-learn's search
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a)
    )
    assert _umap_knn.knn_options("auto", {}, x) == ({}, "umap-learn")
    assert _umap_knn.knn_options("umap", {}, x) == ({}, "umap-learn")


def test_neighbors_argument_is_checked_and_kept_by_copies():
    with pytest.raises(IntroscopeValueError, match='neighbors must be "auto"'):
        S.UMAP(2, neighbors="hnsw")
    strategy = S.UMAP(2, neighbors="umap", n_neighbors=5)
    copy = strategy._clone()
    assert copy.neighbors == "umap" and copy._parameters == {"n_neighbors": 5}
    assert repr(copy) == "DimensionReduction.Strategy.UMAP(2, n_neighbors=5, neighbors='umap')"
    assert repr(S.UMAP(2)) == "DimensionReduction.Strategy.UMAP(2)"
