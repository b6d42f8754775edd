"""DimensionReduction: exact streamed PCA, strategies per field, fitted-row look-up, bad input."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest
from sklearn.decomposition import PCA as SKPCA

from introscope.base import Batch, multi_introspect, pipeline, producer_from_batches
from introscope.exceptions import IntroscopeError, IntroscopeValueError, MissingDependencyError
from introscope.introspectors import (
    PFA,
    DimensionReduction,
    DimensionReductionStrategyType,
    OneOrManyDimStrategies,
)
from introscope.introspectors._accumulator import NonFiniteValues, StateError, accumulate
from introscope.introspectors.dimension_reduction import PCAState
from introscope.samples import StubProducer

S = DimensionReduction.Strategy


def producer_of(fields: dict[str, np.ndarray], *, meta: bool = False):
    n = len(next(iter(fields.values())))

    def produce(batch_size: int):
        for i in range(0, n, batch_size):
            builder = Batch.Builder({k: v[i : i + batch_size] for k, v in fields.items()})
            if meta:
                ids = list(range(i, min(i + batch_size, n)))
                builder.metadata[Batch.StdKeys.IDENTIFIER] = ids
            yield builder.make_batch()

    return produce


def collect(producer, batch_size: int, field: str) -> np.ndarray:
    return np.concatenate([b.fields[field] for b in producer(batch_size)])


def correlated(rng: np.random.Generator, n: int, d: int, offset: float = 5.0) -> np.ndarray:
    """Samples with a decaying spectrum and a large mean."""
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return (rng.standard_normal((n, d)) * np.linspace(3.0, 0.2, d)) @ basis + offset


# --- PCA: exact, streamed, mergeable ---------------------------------------------------------


@pytest.mark.parametrize("fit_batch", [1, 7, 64, 1000])
def test_pca_equals_exact_pca_for_any_batch_size(rng, fit_batch):
    x = correlated(rng, 300, 24)
    dr = DimensionReduction.introspect(
        producer_of({"a": x}), strategies=S.PCA(6), batch_size=fit_batch
    )
    ours = collect(pipeline(producer_of({"a": x}), dr), 50, "a")
    exact = SKPCA(6, svd_solver="full").fit(x)
    assert ours.shape == (300, 6) and ours.dtype == np.float64
    # Same sign convention as scikit-learn, so no sign alignment is needed.
    np.testing.assert_allclose(ours, exact.transform(x), rtol=0, atol=1e-9)
    fitted = dr.strategies["a"]
    np.testing.assert_allclose(fitted.explained_variance_, exact.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(
        fitted.explained_variance_ratio_, exact.explained_variance_ratio_, rtol=1e-10
    )
    np.testing.assert_allclose(fitted.mean_, exact.mean_, rtol=1e-12)


def test_pca_matches_standard_pca_and_takes_target_above_batch_size(rng):
    x = correlated(rng, 200, 30)
    src = producer_of({"a": x})
    # DNIKit's IncrementalPCA raises when target_dimensions > batch_size; here it just works.
    streamed = DimensionReduction.introspect(src, strategies=S.PCA(20), batch_size=5)
    standard = DimensionReduction.introspect(src, strategies=S.StandardPCA(20), batch_size=5)
    a = collect(pipeline(src, streamed), 33, "a")
    b = collect(pipeline(src, standard), 33, "a")
    assert a.shape == b.shape == (200, 20)
    signs = np.sign(np.sum(a * b, axis=0))
    assert np.max(np.abs(a - b * signs)) < 1e-6 * np.max(np.abs(b))


def test_pca_float32_gives_float32_close_to_exact(rng):
    x = correlated(rng, 400, 16).astype(np.float32)
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=S.PCA(4), batch_size=64)
    out = collect(pipeline(producer_of({"a": x}), dr), 100, "a")
    exact = SKPCA(4, svd_solver="full").fit(x.astype(np.float64)).transform(x.astype(np.float64))
    assert out.dtype == np.float32
    # float32 products about the mean: about the float32 rounding of the output itself.
    assert np.max(np.abs(out - exact)) < 1e-5 * np.max(np.abs(exact))


def test_pca_state_merges_shards_and_round_trips_through_npz(rng, tmp_path):
    x = correlated(rng, 500, 12, offset=100.0)
    one = PCAState()
    for i in range(0, 500, 37):
        one.update(x[i : i + 37])
    shards = [PCAState(), PCAState(), PCAState()]
    for shard, part in zip(shards, np.array_split(x[::-1], 3), strict=True):
        shard.update(part)
    merged = shards[0].merged(shards[1]).merged(shards[2])
    # merged() is pure: the shards keep their own counts.
    assert [s.count for s in shards] == [167, 167, 166] and merged.count == 500
    assoc = shards[0].merged(shards[1].merged(shards[2]))
    m1, c1 = one.mean_and_covariance()
    for state in (merged, assoc):
        m2, c2 = state.mean_and_covariance()
        np.testing.assert_allclose(m2, m1, rtol=1e-12)
        np.testing.assert_allclose(c2, c1, rtol=1e-10, atol=1e-12 * np.abs(c1).max())
    np.testing.assert_allclose(c1, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)

    np.savez(tmp_path / "state.npz", **merged.state_dict())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as f:
        back = PCAState.from_state_dict(dict(f))
    assert back.count == 500 and back.features == 12
    pca = S.PCA.from_state(back, 3)
    dr = DimensionReduction(_reducers={"a": pca})
    out = collect(pipeline(producer_of({"a": x}), dr), 100, "a")
    np.testing.assert_allclose(out, SKPCA(3, svd_solver="full").fit(x).transform(x), atol=1e-9)


def test_pca_state_errors(rng):
    state = PCAState(name="conv1")
    state.update(rng.standard_normal((5, 4)))
    with pytest.raises(StateError, match="has 3 features, but earlier batches had 4"):
        state.update(rng.standard_normal((5, 3)))
    with pytest.raises(NonFiniteValues):
        state.update(np.full((2, 4), np.nan))
    assert state.count == 5  # rejected batches change nothing
    with pytest.raises(StateError, match=r"has shape \(5, 2, 2\)"):
        state.update(rng.standard_normal((5, 2, 2)))
    other = PCAState()
    other.update(rng.standard_normal((5, 3)))
    with pytest.raises(StateError, match="cannot merge a state of 3 features"):
        state.merged(other)
    with pytest.raises(IntroscopeValueError, match=r"PCAState\('conv1'\).*exceeds the 4 features"):
        state.result(5)
    with pytest.raises(IntroscopeValueError, match="exceeds the 5 samples"):
        _five_by(6).result(6)
    with pytest.raises(IntroscopeError, match="no samples"):
        PCAState().result(1)
    with pytest.raises(IntroscopeValueError, match="precision"):
        PCAState(precision="float16")


def _five_by(d: int) -> PCAState:
    state = PCAState()
    state.update(np.random.default_rng(1).standard_normal((5, d)))
    return state


def test_pca_accumulator_equals_introspect_merges_and_saves(rng, tmp_path):
    x = correlated(rng, 240, 10)
    fields = {"a": x, "b": x[:, :6] * 2.0}
    reference = DimensionReduction.introspect(producer_of(fields), strategies=S.PCA(3))
    (whole,) = accumulate(
        producer_of(fields), DimensionReduction.pca_accumulator(target_dimensions=3), batch_size=32
    )
    shards = []
    for part in (slice(0, 100), slice(100, 240)):
        acc = DimensionReduction.pca_accumulator(target_dimensions=3)
        accumulate(
            producer_of({k: v[part] for k, v in fields.items()}), acc, batch_size=17, finalize=False
        )
        shards.append(acc)
    merged = shards[1].merge(shards[0])  # any order: the state of the union
    merged.save(tmp_path / "pca.npz")
    loaded = type(merged).load(tmp_path / "pca.npz")
    assert loaded.states["a"].count == 240
    for dr in (whole, merged.finalize(), loaded.finalize()):
        assert isinstance(dr, DimensionReduction) and dr.fields == ["a", "b"]
        for name in fields:
            np.testing.assert_allclose(
                collect(pipeline(producer_of(fields), dr), 60, name),
                collect(pipeline(producer_of(fields), reference), 60, name),
                atol=1e-9,
            )
    dirty = x.copy()
    dirty[70, 0] = np.nan
    with pytest.raises(IntroscopeValueError, match=r"DimensionReduction: field 'a' \(batch 2\)"):
        accumulate(producer_of({"a": dirty}), DimensionReduction.pca_accumulator(), batch_size=32)


# --- fields and strategies -------------------------------------------------------------------


def test_one_strategy_is_copied_per_field_and_the_callers_object_stays_unfitted(rng):
    fields = {"a": rng.standard_normal((60, 8)), "b": rng.standard_normal((60, 5))}
    strategy = S.PCA(3)
    dr = DimensionReduction.introspect(producer_of(fields), strategies=strategy)
    assert dr.fields == ["a", "b"]
    assert dr.strategies["a"] is not dr.strategies["b"] and strategy.state.count == 0
    out = next(iter(pipeline(producer_of(fields), dr)(60)))
    for name in fields:
        exact = SKPCA(3, svd_solver="full").fit(fields[name]).transform(fields[name])
        np.testing.assert_allclose(out.fields[name], exact, atol=1e-10)
    assert isinstance(strategy, DimensionReductionStrategyType)
    assert OneOrManyDimStrategies is not None


def test_mapping_reduces_named_fields_and_passes_the_others_unchanged(rng):
    fields = {"a": rng.standard_normal((40, 6)), "c": rng.standard_normal((40, 4, 4))}
    given = {"a": S.StandardPCA(2)}
    dr = DimensionReduction.introspect(producer_of(fields, meta=True), strategies=given)
    batches = list(pipeline(producer_of(fields, meta=True), dr)(15))
    assert [b.batch_size for b in batches] == [15, 15, 10]
    assert not hasattr(given["a"]._pca, "components_")  # the caller's copy is not fitted
    c = np.concatenate([b.fields["c"] for b in batches])
    np.testing.assert_array_equal(c, fields["c"])  # 3-D, but not reduced: untouched
    ids = [i for b in batches for i in b.metadata[Batch.StdKeys.IDENTIFIER]]
    assert ids == list(range(40))
    assert np.concatenate([b.fields["a"] for b in batches]).shape == (40, 2)


class _ByPosition:
    """A strategy written for DNIKit's protocol only (no introscope hooks): one-shot means."""

    def __init__(self, target_dimensions: int = 1) -> None:
        self.target_dimensions = target_dimensions
        self._rows: list[np.ndarray] = []

    def default_batch_size(self) -> int:
        return 10

    def check_batch_size(self, batch_size: int) -> None:
        pass

    def fit_incremental(self, data: np.ndarray) -> None:
        self._rows.append(np.asarray(data))

    def fit_complete(self) -> None:
        self._embedding = np.concatenate(self._rows).mean(axis=1, keepdims=True)

    @property
    def is_one_shot(self) -> bool:
        return True

    def transform(self, data: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform_one_shot(self) -> np.ndarray:
        return self._embedding

    def _clone(self) -> _ByPosition:
        return _ByPosition(self.target_dimensions)


def test_user_strategy_with_dnikits_protocol_is_sliced_by_position(rng):
    x = rng.standard_normal((25, 3))
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies={"a": _ByPosition()})
    out = collect(pipeline(producer_of({"a": x}), dr), 4, "a")
    np.testing.assert_allclose(out, x.mean(axis=1, keepdims=True))
    longer = producer_of({"a": np.concatenate([x, x])})
    with pytest.raises(IntroscopeValueError, match="field 'a'.*embedded only 25 rows"):
        collect(pipeline(longer, dr), 10, "a")


# --- t-SNE, PaCMAP, UMAP: the fitted rows ----------------------------------------------------


def test_tsne_projects_its_fitting_rows_in_any_order_and_rejects_other_data(rng):
    x = rng.standard_normal((60, 5))
    x[10] = x[3]  # a duplicated row keeps its own embedding when piped in order
    strategy = S.TSNE(2, perplexity=10, max_iter=250, random_state=0)
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=strategy)
    embedding = dr.strategies["a"].transform_one_shot()
    assert embedding.shape == (60, 2)
    for batch_size in (1, 7, 60):
        np.testing.assert_array_equal(
            collect(pipeline(producer_of({"a": x}), dr), batch_size, "a"), embedding
        )
    order = rng.permutation(60)
    order = order[order != 10]  # row 10 equals row 3: by content it maps to one of the two
    shuffled = collect(pipeline(producer_of({"a": x[order]}), dr), 9, "a")
    np.testing.assert_array_equal(shuffled, embedding[order])
    # The same rows in the same order, off in the last bits (a model's outputs at another
    # batch size): matched by position, as DNIKit does.
    noisy = x * (1 + 1e-6 * rng.standard_normal(x.shape))
    np.testing.assert_array_equal(
        collect(pipeline(producer_of({"a": noisy}), dr), 13, "a"), embedding
    )
    other = x.copy()
    other[42] += 1e-2
    # The tolerance is each fitted row's own: an outlier elsewhere does not widen it.
    outlier = x.copy()
    outlier[0, 0] = 1e4
    dr_out = DimensionReduction.introspect(producer_of({"a": outlier}), strategies=strategy)
    moved = outlier.copy()
    moved[42] += 1e-2
    with pytest.raises(IntroscopeValueError, match="not among the 60 rows"):
        collect(pipeline(producer_of({"a": moved}), dr_out), 10, "a")
    with pytest.raises(IntroscopeValueError, match=r"field 'a' \(batch 4\).*not among the 60 rows"):
        collect(pipeline(producer_of({"a": other}), dr), 10, "a")
    with pytest.raises(IntroscopeValueError, match="t-SNE embeds only the data it was fitted on"):
        dr.strategies["a"].transform(rng.standard_normal((3, 5)))


def test_pacmap_projects_its_fitting_rows_and_rejects_other_data(rng):
    x = rng.standard_normal((80, 6))
    strategy = S.PaCMAP(2, n_neighbors=5, random_state=0, num_iters=(20, 20, 40))
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=strategy)
    embedding = dr.strategies["a"].transform_one_shot()
    np.testing.assert_array_equal(collect(pipeline(producer_of({"a": x}), dr), 13, "a"), embedding)
    with pytest.raises(IntroscopeValueError, match="PaCMAP embeds only the data it was fitted on"):
        collect(pipeline(producer_of({"a": x + 1.0}), dr), 13, "a")


def test_umap_fitted_rows_do_not_depend_on_batch_size_and_new_rows_are_transformed(rng):
    x = np.concatenate([rng.normal(0, 1, (60, 6)), rng.normal(6, 1, (60, 6))])
    strategy = S.UMAP(2, n_neighbors=8, random_state=0, n_epochs=50, n_jobs=1)
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=strategy)
    fitted = dr.strategies["a"]._umap.embedding_
    for batch_size in (5, 120):
        np.testing.assert_array_equal(
            collect(pipeline(producer_of({"a": x}), dr), batch_size, "a"), fitted
        )
    mixed = np.concatenate([x[:3], x[100:103] + 0.01])
    out = collect(pipeline(producer_of({"a": mixed}), dr), 6, "a")
    np.testing.assert_array_equal(out[:3], fitted[:3])
    assert np.all(np.isfinite(out[3:])) and not np.allclose(out[3:], fitted[100:103])
    # New rows near the second cluster land nearer its embedding than the first cluster's.
    centre0, centre1 = fitted[:60].mean(axis=0), fitted[60:].mean(axis=0)
    d0 = np.linalg.norm(out[3:] - centre0, axis=1)
    d1 = np.linalg.norm(out[3:] - centre1, axis=1)
    assert np.all(d1 < d0)


def test_missing_umap_or_pacmap_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("umap", "pacmap") else real(name, *a),
    )
    for make in (S.UMAP, S.PaCMAP):
        with pytest.raises(MissingDependencyError, match=r"introscope\[dimreduction\]") as info:
            make(2)
        assert isinstance(info.value, ImportError)  # DNIKit's tests skip on ImportError


# --- bad input -------------------------------------------------------------------------------


def test_non_2d_field_names_the_field_and_the_fix(rng):
    src = producer_of(
        {"conv": rng.standard_normal((10, 3, 4, 4)), "fc": rng.standard_normal((10, 4))}
    )
    with pytest.raises(IntroscopeValueError, match=r"field 'conv' has shape \(10, 3, 4, 4\)") as e:
        DimensionReduction.introspect(src, strategies=S.PCA(2))
    assert "Flattener" in str(e.value) and "Pooler" in str(e.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_names_field_and_batch_at_fit_and_in_the_pipeline(rng, bad):
    x = rng.standard_normal((30, 4))
    dirty = x.copy()
    dirty[23, 1] = bad
    with pytest.raises(IntroscopeValueError, match=r"field 'a'.*NaN or Inf.*batch 2.*row 3"):
        DimensionReduction.introspect(producer_of({"a": dirty}), strategies=S.PCA(2), batch_size=10)
    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=S.PCA(2))
    with pytest.raises(IntroscopeValueError, match=r"field 'a'.*NaN or Inf.*batch 1"):
        collect(pipeline(producer_of({"a": dirty}), dr), 20, "a")


@pytest.mark.parametrize("make", [S.PCA, S.StandardPCA])
def test_target_above_features_or_samples(rng, make):
    with pytest.raises(
        IntroscopeValueError, match=r"field 'a'.*target_dimensions=5 exceeds the 4 features"
    ):
        DimensionReduction.introspect(
            producer_of({"a": rng.standard_normal((20, 4))}), strategies=make(5)
        )
    with pytest.raises(
        IntroscopeValueError, match=r"field 'b'.*target_dimensions=5 exceeds the 3 samples"
    ):
        DimensionReduction.introspect(
            producer_of({"b": rng.standard_normal((3, 8))}), strategies={"b": make(5)}
        )


def test_argument_and_field_set_errors(rng):
    x = rng.standard_normal((20, 4))
    with pytest.raises(IntroscopeValueError, match="target_dimensions must be a positive int"):
        S.PCA(0)
    with pytest.raises(IntroscopeValueError, match="strategies for field 'a' must be"):
        DimensionReduction.introspect(producer_of({"a": x}), strategies={"a": "pca"})
    with pytest.raises(IntroscopeValueError, match="empty mapping"):
        DimensionReduction.introspect(producer_of({"a": x}), strategies={})
    with pytest.raises(
        IntroscopeValueError, match=r"\['typo'\] named in strategies are not in batch 0"
    ):
        DimensionReduction.introspect(producer_of({"a": x}), strategies={"typo": S.PCA(2)})
    with pytest.raises(IntroscopeValueError, match="batch_size must be a positive int"):
        DimensionReduction.introspect(producer_of({"a": x}), strategies=S.PCA(2), batch_size=0)
    with pytest.raises(IntroscopeValueError, match="pass the algorithm's options either"):
        S.TSNE(2, _parameters={"perplexity": 5}, random_state=0)

    def changing(batch_size):
        yield Batch({"a": x[:10]})
        yield Batch({"a": x[10:], "b": x[10:]})

    with pytest.raises(IntroscopeValueError, match="batch 1 has fields"):
        DimensionReduction.introspect(changing, strategies=S.PCA(2))

    def widening(batch_size):
        yield Batch({"a": x[:10]})
        yield Batch({"a": rng.standard_normal((10, 5))})

    with pytest.raises(IntroscopeValueError, match=r"field 'a' \(batch 1\).*5 features"):
        DimensionReduction.introspect(widening, strategies=S.PCA(2))

    dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=S.PCA(2))
    with pytest.raises(KeyError, match="batch 0 has no field 'a'"):
        collect(pipeline(producer_of({"b": x}), dr), 5, "b")
    with pytest.raises(
        IntroscopeValueError, match=r"field 'a' \(batch 0\).*3 features.*fitted on 4"
    ):
        collect(pipeline(producer_of({"a": x[:, :3]}), dr), 5, "a")
    with pytest.raises(IntroscopeError, match="no batch"):
        DimensionReduction.introspect(lambda bs: iter(()), strategies=S.PCA(2))


def test_default_batch_sizes_follow_dnikit(rng):
    assert S.PCA(2).default_batch_size() == 500
    assert S.PCA(200).default_batch_size() == 1000
    assert S.StandardPCA(2).default_batch_size() == 1024
    seen: list[int] = []

    def recording(batch_size):
        seen.append(batch_size)
        yield Batch({"a": rng.standard_normal((30, 4)), "b": rng.standard_normal((30, 4))})

    DimensionReduction.introspect(recording, strategies={"a": S.PCA(2), "b": S.StandardPCA(2)})
    DimensionReduction.introspect(recording, strategies=S.PCA(3))
    assert seen == [1024, 500]


def test_multi_introspect_with_pfa_threaded_and_as_one_loop(rng):
    x = correlated(rng, 300, 12)
    src = producer_of({"a": x})
    threaded, pfa = multi_introspect(
        functools.partial(DimensionReduction.introspect, strategies=S.PCA(3)),
        PFA.introspect,
        producer=src,
        batch_size=50,
    )
    one_loop, pfa2 = multi_introspect(
        DimensionReduction.pca_accumulator(target_dimensions=3),
        PFA.introspect,
        producer=src,
        batch_size=50,
    )
    assert isinstance(pfa, PFA) and isinstance(pfa2, PFA)
    exact = SKPCA(3, svd_solver="full").fit(x).transform(x)
    for dr in (threaded, one_loop):
        np.testing.assert_allclose(collect(pipeline(src, dr), 64, "a"), exact, atol=1e-9)


def test_pca_fit_memory_does_not_grow_with_samples():
    import tracemalloc

    def peak(batches: int) -> int:
        def produce(batch_size):
            gen = np.random.default_rng(5)
            for _ in range(batches):
                yield Batch({"a": gen.standard_normal((batch_size, 64)).astype(np.float32)})

        tracemalloc.start()
        DimensionReduction.introspect(produce, strategies=S.PCA(8), batch_size=256)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(4), peak(64)  # 1,024 and 16,384 samples (4 MiB of responses)
    assert large < small + (256 << 10), (small, large)


def test_zero_features_and_too_few_samples_for_umap_are_clear_errors():
    with pytest.raises(IntroscopeValueError, match=r"shape \(20, 0\).*0 features per sample"):
        DimensionReduction.introspect(StubProducer({"e": np.zeros((20, 0))}), strategies=S.PCA(1))
    pytest.importorskip("umap")
    x = np.random.default_rng(0).random((3, 5))
    with pytest.raises(IntroscopeValueError, match="needs at least 4 samples to fit, got 3"):
        DimensionReduction.introspect(StubProducer({"e": x}), strategies=S.UMAP(2))


def _two_groups(offset, n=4000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * (0.9 ** np.arange(d))
    x[n // 10 :] += offset
    return x.astype(np.float32)


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_pca_warns_when_float32_products_cannot_resolve_the_kept_components(offset):
    import warnings

    from introscope.introspectors.dimension_reduction import PCAState

    x = _two_groups(offset)
    state = PCAState()
    for lo in range(0, len(x), 256):
        state.update(x[lo : lo + 256])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        state.result(target_dimensions=3)
        # survives a save and load (the flag is in the state dict)
        PCAState.from_state_dict(state.state_dict()).result(target_dimensions=3)
    messages = [str(w.message) for w in seen if "precision='float64'" in str(w.message)]
    assert len(messages) == (2 if offset else 0), messages
    if offset:
        assert seen[0].filename == __file__  # points at the caller
        assert "component 3" in messages[0]
    # float64 products (or float64 data) never warn, and are exact
    exact = PCAState(precision="float64")
    exact.update(x)
    wide = PCAState()
    wide.update(x.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = [s.result(target_dimensions=3) for s in (exact, wide)]
    np.testing.assert_allclose(np.abs(fits[0].components), np.abs(fits[1].components), atol=1e-9)


def test_pca_precision_warning_can_be_turned_off_and_survives_clone():
    import warnings

    x = _two_groups(1000.0)
    data = producer_from_batches(Batch({"e": x}))
    quiet = DimensionReduction.Strategy.PCA(3, warn_precision=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DimensionReduction.introspect(data, strategies=quiet, batch_size=256)
    with pytest.warns(UserWarning, match="precision='float64'"):
        DimensionReduction.introspect(
            data, strategies=DimensionReduction.Strategy.PCA(3), batch_size=256
        )


@pytest.mark.parametrize(("n", "d", "k"), [(2, 16, 2), (3, 16, 3), (100, 8, 8)])
def test_pca_does_not_warn_about_zero_variance_components(n, d, k):
    import warnings

    from introscope.introspectors.dimension_reduction import PCAState

    x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    x[:, 0] = 0.0  # a dead unit
    state = PCAState()
    state.update(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state.result(target_dimensions=k)


@pytest.mark.parametrize("shape", [(700, 600), (6000, 40)])
def test_standard_pca_is_exact_and_the_same_on_every_run(rng, shape):
    # scikit-learn's default solver (DNIKit's) is an unseeded randomized SVD at (700, 600) with
    # 10 components: two runs differed; the tall shape takes covariance_eigh, as the default.
    x = correlated(rng, *shape)
    runs = []
    for _ in range(2):
        dr = DimensionReduction.introspect(producer_of({"a": x}), strategies=S.StandardPCA(10))
        runs.append(collect(pipeline(producer_of({"a": x}), dr), 512, "a"))
    np.testing.assert_array_equal(runs[0], runs[1])
    exact = SKPCA(10, svd_solver="full").fit(x).transform(x)
    signs = np.sign(np.sum(runs[0] * exact, axis=0))
    assert np.max(np.abs(runs[0] * signs - exact)) < 1e-8 * np.max(np.abs(exact))
