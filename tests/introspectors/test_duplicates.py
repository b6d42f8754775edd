"""Duplicates: DNIKit 2.0's rules (threshold, sets, ordering), faiss search, bad input, state."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from introscope.base import Batch
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors import Duplicates, DuplicatesThresholdStrategyType
from introscope.introspectors._knn import nearest_neighbors, recall_at_k
from introscope.introspectors.duplicates import _clusters, _sets
from introscope.introspectors.duplicates._state import ResponseBuffer
from introscope.samples import StubProducer


def planted(n=1500, d=16, centres=50, copies=30, seed=0, spread=0.5, noise=0.01):
    """Clustered float32 data with ``copies`` rows replaced by near-copies of other rows."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d)).astype(np.float32)
    perm = rng.permutation(n)
    dst, src = perm[:copies], perm[copies : 2 * copies]
    x[dst] = x[src] + noise * spread * rng.standard_normal((copies, d)).astype(np.float32)
    return x, np.stack([src, dst], axis=1)


def set_of(results) -> dict[int, int]:
    return {int(i): j for j, s in enumerate(results) for i in s.indices}


def pair_recall(results, pairs) -> float:
    label = set_of(results)
    return float(np.mean([a in label and label.get(a) == label.get(b) for a, b in pairs]))


# ----------------------------------------------------------------------------- thresholds
def slope_reference(d: np.ndarray, sensitivity: int) -> float:
    """DNIKit's Slope walk written as the plain loop its docs describe."""
    stride = len(d) // 1000 + 1
    probe = len(d) // 2
    target = d[probe + probe // 2] - d[probe - probe // 2]
    window = len(d) // sensitivity
    while probe > stride:
        if d[probe + window] - d[probe] > target:
            break
        probe -= stride
    return float(d[probe])


@pytest.mark.parametrize("n", [1, 2, 7, 100, 999, 1000, 5003, 40000])
@pytest.mark.parametrize("sensitivity", [3, 5, 20])
def test_slope_matches_the_walk(n, sensitivity):
    rng = np.random.default_rng(n + sensitivity)
    d = np.sort(np.concatenate([rng.exponential(0.01, n // 20 + 1), rng.normal(1, 0.1, n)]))
    d = np.abs(d[:n])
    d.sort()
    got = Duplicates.ThresholdStrategy.Slope(sensitivity)(d)
    assert got == slope_reference(d, sensitivity)


def test_percentile_index():
    d = np.arange(1.0, 201.0)
    assert Duplicates.ThresholdStrategy.Percentile(98)(d) == d[200 - 196]
    assert Duplicates.ThresholdStrategy.Percentile(100)(d) == d[0]
    assert Duplicates.ThresholdStrategy.Percentile(0)(d) == d[-1]  # clamped, not an IndexError
    assert Duplicates.ThresholdStrategy.Percentile(50)(np.array([])) == 0.0


@pytest.mark.parametrize("bad", [2, 1, 0, -3, 2.0])
def test_slope_sensitivity_must_exceed_two(bad):
    with pytest.raises(ValueError, match="sensitivity"):
        Duplicates.ThresholdStrategy.Slope(sensitivity=bad)


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), "98"])
def test_percentile_range(bad):
    with pytest.raises(IntroscopeValueError, match="percentile"):
        Duplicates.ThresholdStrategy.Percentile(bad)


def test_strategies_satisfy_protocol():
    assert isinstance(Duplicates.ThresholdStrategy.Slope(), DuplicatesThresholdStrategyType)
    assert isinstance(Duplicates.ThresholdStrategy.Percentile(99), DuplicatesThresholdStrategyType)


# ----------------------------------------------------------------------------- clusters
def combine_reference(lists):
    sets: list[set[int]] = []
    for group in lists:
        merged = set(group)
        keep = []
        for s in sets:
            if s & merged:
                merged |= s
            else:
                keep.append(s)
        sets = keep + [merged]
    return {frozenset(s) for s in sets}


def test_combine_clusters_random_against_reference():
    rng = np.random.default_rng(3)
    for _ in range(30):
        lists = [list(rng.choice(60, rng.integers(1, 5), replace=False)) for _ in range(25)]
        got = Duplicates._combine_clusters(lists)
        assert {frozenset(g) for g in got} == combine_reference(lists)
        assert sum(len(g) for g in got) == len({i for g in lists for i in g})


def test_combine_clusters_order_follows_first_list():
    got = Duplicates._combine_clusters([[10, 11], [12, 13, 14], [5, 6], [6, 9], [14, 20]])
    assert got == [[10, 11], [12, 13, 14, 20], [5, 6, 9]]
    assert Duplicates._combine_clusters([]) == []


def test_close_rows_counts_distance_zero_whatever_the_threshold():
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    dist = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0], [0.0, 4.0, 5.0]], dtype=np.float32)
    starts, rows, members = _clusters.close_rows(idx, dist, -1.0)
    assert starts.tolist() == [0, 1]
    assert members.tolist() == [0, 1, 1, 0]
    sets = _clusters.components(3, rows, members, starts)
    assert [s.tolist() for s in sets] == [[0, 1]]


# ----------------------------------------------------------------------------- per-set PCA
def test_vectorised_pca_equals_sklearn_per_set():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((400, 24))
    sets = [np.sort(rng.choice(400, m, replace=False)) for m in [2, 3, 3, 5, 6, 9, 9, 40, 60]]
    got = _sets.summarise_sets(sets, lambda i: data[i], 24)
    for members, s in zip(sets, got, strict=True):
        x = data[members]
        dist = np.linalg.norm(x - x.mean(0), axis=1)
        assert s.mean == pytest.approx(dist.mean(), rel=1e-12)
        assert s.std == pytest.approx(dist.std(), rel=1e-10)
        if len(members) <= 2:
            assert s.indices.tolist() == members.tolist() and s.projection is None
            continue
        order = np.argsort(PCA(1, svd_solver="full").fit_transform(x).ravel())
        assert s.indices.tolist() == members[order].tolist()
        if len(members) > 5:
            ref = PCA(2, svd_solver="full").fit_transform(data[s.indices])
            np.testing.assert_allclose(s.projection, ref, atol=1e-9)  # same signs as sklearn
        else:
            assert s.projection is None


def test_pca_covariance_path_for_sets_longer_than_wide():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((300, 4)) * np.array([5.0, 2.0, 1.0, 0.5])
    members = np.arange(0, 300, 2)
    (s,) = _sets.summarise_sets([members], lambda i: data[i], 4)
    ref = PCA(2, svd_solver="full").fit_transform(data[s.indices])
    np.testing.assert_allclose(s.projection, ref, atol=1e-9)


# ----------------------------------------------------------------------------- introspect
def test_planted_copies_found_with_dnikit_shapes():
    x, pairs = planted()
    ids = [f"id{i}" for i in range(len(x))]

    def producer(batch_size):
        for lo in range(0, len(x), batch_size):
            b = Batch.Builder(fields={"emb": x[lo : lo + batch_size]})
            b.metadata[Batch.StdKeys.IDENTIFIER] = ids[lo : lo + batch_size]
            yield b.make_batch()

    dup = Duplicates.introspect(producer, batch_size=100)
    assert dup.count == len(x)
    sets = dup.results["emb"]
    assert pair_recall(sets, pairs) == 1.0
    for s in sets:
        assert isinstance(s, Duplicates.DuplicateSetCandidate)
        assert s.size == len(s.indices) == s.batch.batch_size >= 2
        np.testing.assert_array_equal(s.batch.fields["emb"], x[list(s.indices)])
        assert s.batch.metadata[Batch.StdKeys.IDENTIFIER] == [ids[i] for i in s.indices]
        assert (s.projection is None) == (s.size <= 5)
        if s.projection is not None:
            assert s.projection.shape == (s.size, 2) and s.projection.dtype == np.float32
        assert s.mean > 0 and s.std >= 0
    assert dup.neighbor_search == {"emb": "exact"}
    assert dup.thresholds["emb"] > 0


def test_all_zero_column_keeps_exact_copies():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x[:, 3] = 0.0  # DNIKit divides 0 by 0 here: every distance NaN, no set found
    x[200] = x[10]
    x[201] = x[10]
    x[250] = x[40]
    dup = Duplicates.introspect(StubProducer({"x": x}))
    label = set_of(dup.results["x"])
    assert label[10] == label[200] == label[201]
    assert label[40] == label[250] != label[10]
    exact = [s for s in dup.results["x"] if s.mean == 0]
    assert sorted(sorted(s.indices) for s in exact) == [[10, 200, 201], [40, 250]]


def test_exact_copies_reported_even_when_the_threshold_is_below_zero():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 6))
    x[150] = x[7]
    dup = Duplicates.introspect(StubProducer({"x": x}), threshold=lambda d: -1.0)
    assert [sorted(s.indices) for s in dup.results["x"]] == [[7, 150]]


def test_many_identical_rows_form_one_set():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 5))
    x[100:160] = x[100]  # 60 copies: more than the 10 neighbours each one sees
    dup = Duplicates.introspect(StubProducer({"x": x}), threshold=lambda d: -1.0)
    assert [sorted(s.indices) for s in dup.results["x"]] == [list(range(100, 160))]


def test_every_field_analysed_separately():
    x, pairs = planted(n=800, d=12, copies=10)
    y = np.random.default_rng(9).standard_normal((800, 3))
    y[5] = y[700]
    dup = Duplicates.introspect(StubProducer({"a": x, "b": y}), batch_size=64)
    assert set(dup.results) == {"a", "b"}
    assert pair_recall(dup.results["a"], pairs) == 1.0
    assert set_of(dup.results["b"]).get(5) == set_of(dup.results["b"]).get(700) is not None


def test_approximate_search_agrees_with_exact():
    x, pairs = planted(n=6000, d=32, centres=60, copies=60, seed=3)
    exact = Duplicates.introspect(StubProducer({"x": x}), neighbors="exact")
    approx = Duplicates.introspect(StubProducer({"x": x}), neighbors="approximate")
    assert approx.neighbor_search["x"].startswith("ivf(")
    assert pair_recall(approx.results["x"], pairs) == 1.0
    assert approx.thresholds["x"] == pytest.approx(exact.thresholds["x"], rel=1e-3)
    a = {frozenset(s.indices) for s in approx.results["x"]}
    e = {frozenset(s.indices) for s in exact.results["x"]}
    assert len(a & e) >= 0.95 * len(e)


def test_ivf_recall_at_10():
    x, _ = planted(n=8000, d=48, centres=80, copies=0, seed=8, spread=0.8)
    x /= np.linalg.norm(x, axis=0)
    x = np.ascontiguousarray(x, dtype=np.float32)
    approx = nearest_neighbors(x, 10, "approximate")
    exact = nearest_neighbors(x, 10, "exact")
    assert approx.recall_estimate is not None and approx.recall_estimate >= 0.95
    assert recall_at_k(approx.indices, exact.indices) >= 0.95
    assert (approx.indices == np.arange(len(x))[:, None]).any(axis=1).all()
    own = approx.indices == np.arange(len(x))[:, None]
    assert (approx.distances[own] == 0).all()
    ref = np.linalg.norm(x[exact.indices] - x[:, None, :], axis=2)
    np.testing.assert_allclose(exact.distances, ref, rtol=1e-3, atol=1e-6)


# ----------------------------------------------------------------------------- bad input
def test_not_two_dimensional_names_pooler():
    with pytest.raises(IntroscopeValueError, match=r"'x'.*batch 0.*Pooler.*Flattener"):
        Duplicates.introspect(StubProducer({"x": np.zeros((20, 3, 4))}))


def test_nan_and_inf_rejected():
    x = np.random.default_rng(0).standard_normal((40, 4))
    x[33, 1] = np.nan
    with pytest.raises(
        IntroscopeValueError, match=r"Duplicates: response 'x' \(batch 1\).*NaN or Inf"
    ):
        Duplicates.introspect(StubProducer({"x": x}), batch_size=32)
    x = x.copy()
    x[33, 1] = np.inf
    with pytest.raises(IntroscopeValueError, match="NaN or Inf"):
        Duplicates.introspect(StubProducer({"x": x}))


def test_fewer_samples_than_neighbours():
    with pytest.raises(IntroscopeValueError, match=r"'x' has 9 samples.*10 neighbours"):
        Duplicates.introspect(StubProducer({"x": np.random.default_rng(0).random((9, 3))}))


def test_bad_arguments():
    prod = StubProducer({"x": np.random.default_rng(0).random((30, 3))})
    with pytest.raises(IntroscopeValueError, match="neighbors"):
        Duplicates.introspect(prod, neighbors="fast")
    with pytest.raises(IntroscopeValueError, match="threshold"):
        Duplicates.introspect(prod, threshold=0.5)
    with pytest.raises(IntroscopeValueError, match="batch_size"):
        Duplicates.introspect(prod, batch_size=0)
    with pytest.raises(IntroscopeValueError, match="dtype"):
        Duplicates.introspect(StubProducer({"x": np.array([["a"]] * 20)}))


def test_width_change_between_batches():
    acc = Duplicates.accumulator()
    acc.update_batch(Batch({"x": np.zeros((4, 3))}))
    with pytest.raises(IntroscopeError, match=r"'x' \(batch 1\) has 5 features.*3"):
        acc.update_batch(Batch({"x": np.zeros((4, 5))}))
    with pytest.raises(IntroscopeError, match="same responses"):
        acc.update_batch(Batch({"y": np.zeros((4, 3))}))


# ----------------------------------------------------------------------------- state
def test_buffer_state_dict_and_merge():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((7, 3))
    buf = ResponseBuffer(3, np.dtype(np.float32), capacity=2)
    buf.update(a[:2])
    buf.update(a[2:])
    state = buf.state_dict()
    assert set(state) == {"vectors"} and isinstance(state["vectors"], np.ndarray)
    back = ResponseBuffer.from_state_dict(state)
    np.testing.assert_array_equal(back.view(), a)
    other = ResponseBuffer(3, np.dtype(np.float64))
    other.update(b)
    merged = back.merged(other)
    np.testing.assert_array_equal(merged.view(), np.concatenate([a, b]))
    assert merged.dtype == np.float64 and len(back) == 5  # inputs unchanged
    with pytest.raises(IntroscopeError, match="features"):
        back.merged(ResponseBuffer(4, np.dtype(np.float32)))


def test_merged_and_saved_accumulators_equal_one_pass(tmp_path):
    x, _ = planted(n=900, d=10, copies=12, seed=11)
    ids = list(range(900))
    one = Duplicates.accumulator(threshold=Duplicates.ThresholdStrategy.Percentile(99))
    left, right = one.spawn(), one.spawn()
    for lo in range(0, 900, 100):
        builder = Batch.Builder(fields={"x": x[lo : lo + 100]})
        builder.metadata[Batch.StdKeys.IDENTIFIER] = ids[lo : lo + 100]
        batch = builder.make_batch()
        one.update_batch(batch)
        (left if lo < 500 else right).update_batch(batch)
    a = one.finalize()
    b = left.merge(right).finalize()
    one.save(tmp_path / "dup.npz")
    loaded = type(one).load(tmp_path / "dup.npz")
    assert loaded.threshold == Duplicates.ThresholdStrategy.Percentile(99)
    c = loaded.finalize()
    ref = [list(s.indices) for s in a.results["x"]]
    assert len(ref) > 3
    for other in (b, c):
        assert [list(s.indices) for s in other.results["x"]] == ref
        assert other.thresholds == a.thresholds and other.count == 900
    # Metadata travels with merged states; a saved state holds the vectors only.
    assert [s.batch.metadata[Batch.StdKeys.IDENTIFIER] for s in b.results["x"]] == ref
    assert Batch.StdKeys.IDENTIFIER not in c.results["x"][0].batch.metadata


def test_custom_threshold_is_not_saved_and_is_asked_for_when_finishing(tmp_path):
    acc = Duplicates.accumulator(threshold=lambda d: float(d[0]))
    acc.update_batch(Batch({"x": np.random.default_rng(0).random((20, 3))}))
    acc.save(tmp_path / "dup.npz")
    loaded = type(acc).load(tmp_path / "dup.npz")  # the vectors load; the threshold cannot
    with pytest.raises(IntroscopeValueError, match=r"custom strategy.*finalize\(threshold="):
        loaded.finalize()
    again = loaded.finalize(threshold=Duplicates.ThresholdStrategy.Percentile(90))
    assert again.count == 20
    loaded.save(tmp_path / "again.npz")  # the placeholder saves as the same name
    assert type(acc).load(tmp_path / "again.npz").config() == acc.config()


def test_a_wider_dtype_later_promotes_the_buffer_instead_of_truncating():
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 5, (8, 4))
    floats = rng.random((32, 4))  # distinct values in [0, 1): truncated to int they all equal 0
    acc = Duplicates.accumulator()
    acc.update_batch(Batch({"x": ints}))
    acc.update_batch(Batch({"x": floats}))
    stored = acc.states["x"].view()
    assert stored.dtype == np.float64
    np.testing.assert_array_equal(stored, np.concatenate([ints, floats]))


def test_multi_introspect_runs_duplicates_in_the_same_pass():
    from introscope.base import multi_introspect
    from introscope.introspectors import IUA

    x, pairs = planted(n=600, d=8, copies=8, seed=2)
    calls = []

    def producer(batch_size):
        calls.append(batch_size)
        for lo in range(0, len(x), batch_size):
            yield Batch({"x": x[lo : lo + batch_size]})

    dup, iua = multi_introspect(Duplicates.introspect, IUA.introspect, producer=producer)
    assert len(calls) == 1
    assert pair_recall(dup.results["x"], pairs) == 1.0
    assert isinstance(dup, Duplicates)


def test_approximate_falls_back_to_exact_without_local_structure():
    # Isotropic noise in 64-d: no partition reaches recall@10 0.95 probing a quarter of the data.
    x = np.random.default_rng(0).standard_normal((4000, 64)).astype(np.float32)
    found = nearest_neighbors(x, 10, "approximate")
    assert found.method == "exact" and found.recall_estimate is None
    _, truth = __import__("faiss").knn(x, x, 10)
    assert recall_at_k(found.indices, truth) > 0.99


def test_zero_features_and_huge_finite_values():
    with pytest.raises(IntroscopeValueError, match=r"shape \(20, 0\): 0 features per element"):
        Duplicates.introspect(StubProducer({"e": np.zeros((20, 0))}))
    # float64 values near 1e200: their squares overflow, the column norms must not.
    x, _ = planted(n=300, d=6, copies=5, seed=4)
    small = Duplicates.introspect(StubProducer({"e": x.astype(np.float64)}))
    huge = Duplicates.introspect(StubProducer({"e": x.astype(np.float64) * 1e200}))
    assert [list(s.indices) for s in huge.results["e"]] == [
        list(s.indices) for s in small.results["e"]
    ]
