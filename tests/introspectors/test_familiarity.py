"""Familiarity: DNIKit's API, scores equal to scikit-learn's, the fit buffer, sampling, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from introscope.base import Batch, pipeline
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import (
    Familiarity,
    FamiliarityResult,
    GMMCovarianceType,
)
from introscope.introspectors._state_contract import StateError
from introscope.introspectors.familiarity import (
    DEFAULT_SEED,
    GMM,
    FitData,
    GMMDistribution,
)
from introscope.samples import StubProducer


def _blobs(rng: np.random.Generator, n: int, d: int, centres: int = 4, dtype=np.float64):
    means = rng.normal(scale=4.0, size=(centres, d))
    pick = rng.integers(0, centres, size=n)
    return (means[pick] + rng.normal(size=(n, d))).astype(dtype)


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"emb": _blobs(rng, 400, 12), "small": _blobs(rng, 400, 2, 3)}


def _scores(fam: Familiarity, producer, field: str, batch_size: int = 33) -> list[float]:
    return [
        r.score
        for batch in pipeline(producer, fam)(batch_size)
        for r in batch.metadata[fam.meta_key][field]
    ]


# -- API --------------------------------------------------------------------------------------------
def test_strategy_defaults_and_names() -> None:
    s = Familiarity.Strategy.GMM()
    assert Familiarity.Strategy.GMM is GMM
    assert (s.gaussian_count, s.convergence_threshold, s.max_iterations) == (5, 1e-3, 200)
    assert s.covariance_type is GMMCovarianceType.DIAG
    assert s._random_state is None and s.random_state is None and s.max_fit_samples is None
    assert GMM.metadata_key.name == "GMM"
    assert (GMMCovarianceType.FULL.value, GMMCovarianceType.DIAG.value) == ("full", "diag")
    assert FamiliarityResult(-1.5).score == -1.5 and FamiliarityResult(-1.5).percentile is None


def test_stage_writes_one_result_per_element_and_keeps_fields(data) -> None:
    source = StubProducer(data)
    fam = Familiarity.introspect(source, batch_size=64)
    assert list(fam.distributions) == ["emb", "small"]
    seen = 0
    for batch in pipeline(source, fam)(50):
        assert set(batch.fields) == {"emb", "small"}
        np.testing.assert_array_equal(batch.fields["emb"], data["emb"][seen : seen + 50])
        for field in ("emb", "small"):
            results = batch.metadata[fam.meta_key][field]
            assert isinstance(results, list) and len(results) == batch.batch_size
            assert all(isinstance(r, FamiliarityResult) for r in results)
        seen += batch.batch_size
    assert seen == 400


@pytest.mark.parametrize("cov", [GMMCovarianceType.DIAG, GMMCovarianceType.FULL])
@pytest.mark.parametrize("k", [1, 3])
def test_fit_and_scores_equal_sklearn(data, cov: GMMCovarianceType, k: int) -> None:
    source = StubProducer(data)
    strategy = GMM(gaussian_count=k, covariance_type=cov, _random_state=np.random.RandomState(4))
    fam = Familiarity.introspect(source, strategy=strategy, batch_size=128)
    shared = np.random.RandomState(4)
    new = np.random.default_rng(9).normal(scale=3.0, size=(70, 12))
    for field in ("emb", "small"):  # one RandomState, advanced field after field
        sk = GaussianMixture(k, covariance_type=cov.value, tol=1e-3, max_iter=200,
                             random_state=shared).fit(data[field])  # fmt: skip
        dist = fam.distributions[field]
        assert isinstance(dist, GMMDistribution)
        np.testing.assert_array_equal(dist.means, sk.means_)
        np.testing.assert_array_equal(dist.covariances, sk.covariances_)
        np.testing.assert_array_equal(dist.weights, sk.weights_)
        if field == "emb":
            np.testing.assert_allclose(fam.score("emb", new), sk.score_samples(new), rtol=1e-12)
        fit_scores = sk.score_samples(data[field])
        got = _scores(fam, source, field)
        np.testing.assert_allclose(got, fit_scores, rtol=1e-12)
        # the percentile is the share of fit samples scoring at most this score
        results = [r for b in pipeline(source, fam)(400) for r in b.metadata[fam.meta_key][field]]
        want = [100.0 * np.mean(fit_scores <= s + 1e-12 * abs(s)) for s in fit_scores]
        np.testing.assert_allclose([r.percentile for r in results], want, atol=1e-9)


@pytest.mark.parametrize("cov", [GMMCovarianceType.DIAG, GMMCovarianceType.FULL])
def test_float32_fit_scores_in_float64(cov: GMMCovarianceType) -> None:
    rng = np.random.default_rng(4)
    x = _blobs(rng, 600, 24, dtype=np.float32)
    fam = Familiarity.introspect(StubProducer({"x": x}), strategy=GMM(covariance_type=cov))
    dist = fam.distributions["x"]
    assert dist.means.dtype == np.float32  # scikit-learn's float32 fit, kept as is
    xs = x[:50].astype(np.float64)
    per_component = []
    for w, mu, cov_k in zip(dist.weights, dist.means, dist.covariances, strict=True):
        c = np.diag(cov_k) if cov is GMMCovarianceType.DIAG else cov_k
        c = c.astype(np.float64)
        c = np.tril(c) + np.tril(c, -1).T  # a float32 fit's matrix is symmetric to rounding only
        diff = xs - mu.astype(np.float64)
        maha = np.einsum("ij,ij->i", diff @ np.linalg.inv(c), diff)
        logdet = np.linalg.slogdet(c)[1]
        per_component.append(np.log(np.float64(w)) - 0.5 * (24 * np.log(2 * np.pi) + logdet + maha))
    exact = np.logaddexp.reduce(np.array(per_component), axis=0)
    np.testing.assert_allclose(fam.score("x", x[:50]), exact, rtol=1e-11)


def test_rarest_percent_selects_the_outliers() -> None:
    rng = np.random.default_rng(3)
    fit = _blobs(rng, 2000, 6)
    fam = Familiarity.introspect(StubProducer({"x": fit}))
    pct = np.array([r.percentile for r in fam.distributions["x"].compute_familiarity_score(fit)])
    assert pct.min() == pytest.approx(100 / 2000) and pct.max() == 100.0
    assert np.sum(pct <= 1.0) == 20  # the rarest 1 % of the fit data
    far = fam.distributions["x"].compute_familiarity_score(fit[:3] + 50.0)
    assert all(r.percentile == 0.0 for r in far)


# -- seeds ------------------------------------------------------------------------------------------
def test_default_is_seeded_and_repeatable(data) -> None:
    source = StubProducer(data)
    a = Familiarity.introspect(source)
    b = Familiarity.introspect(source)
    c = Familiarity.introspect(source, strategy=GMM(random_state=DEFAULT_SEED))
    d = Familiarity.introspect(
        source, strategy=GMM(_random_state=np.random.RandomState(DEFAULT_SEED))
    )
    other = Familiarity.introspect(source, strategy=GMM(random_state=DEFAULT_SEED + 1))
    ref = a.distributions["emb"].means
    for fam in (b, c, d):
        np.testing.assert_array_equal(fam.distributions["emb"].means, ref)
    for fam in (b, c):  # an int seed starts every field's fit afresh (as DNIKit's)
        np.testing.assert_array_equal(
            fam.distributions["small"].means, a.distributions["small"].means
        )
    alone = Familiarity.introspect(
        lambda bs: (Batch({"small": b.fields["small"]}) for b in source(bs)),
        strategy=GMM(random_state=DEFAULT_SEED),
    )
    np.testing.assert_array_equal(
        alone.distributions["small"].means, a.distributions["small"].means
    )
    assert not np.array_equal(other.distributions["emb"].means, ref)


def test_random_state_arguments() -> None:
    with pytest.raises(IntroscopeValueError, match="not both"):
        GMM(random_state=1, _random_state=1)
    with pytest.raises(IntroscopeValueError, match="Generator"):
        GMM(random_state=np.random.default_rng(0))
    with pytest.raises(IntroscopeValueError, match="gaussian_count"):
        GMM(gaussian_count=0)
    with pytest.raises(IntroscopeValueError, match="covariance_type"):
        GMM(covariance_type="tied")  # type: ignore[arg-type]
    with pytest.raises(IntroscopeValueError, match="max_fit_samples"):
        GMM(max_fit_samples=0)
    with pytest.raises(IntroscopeValueError, match="convergence_threshold"):
        GMM(convergence_threshold=-1.0)
    assert GMM(covariance_type="full").covariance_type is GMMCovarianceType.FULL  # type: ignore[arg-type]


# -- the fit buffer ---------------------------------------------------------------------------------
def test_fit_buffer_is_one_array_of_the_responses_dtype() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(1000, 7)).astype(np.float32)
    buf = FitData("x")
    for start, stop in [(0, 1), (1, 10), (10, 11), (11, 400), (400, 1000)]:
        buf.update(rows[start:stop])
    out = buf.data()
    assert out.dtype == np.float32 and out.flags.c_contiguous and not out.flags.writeable
    np.testing.assert_array_equal(out, rows)
    assert buf.nbytes == rows.nbytes  # trimmed to the rows held
    buf.update(rows[:5])  # copy on write: the array handed out is unchanged
    np.testing.assert_array_equal(out, rows)
    np.testing.assert_array_equal(buf.data(), np.concatenate([rows, rows[:5]]))


def test_fit_buffer_merge_and_state_dict() -> None:
    rows = np.arange(60.0).reshape(20, 3)
    a, b = FitData("x"), FitData("x", offset=12)
    a.update(rows[:12])
    b.update(rows[12:])
    merged = a.merged(b)
    np.testing.assert_array_equal(merged.data(), rows)
    back = FitData.from_state_dict(merged.state_dict())
    np.testing.assert_array_equal(back.data(), rows)
    assert back.n_seen == 20
    np.testing.assert_array_equal(a.data(), rows[:12])  # inputs unchanged


@pytest.mark.parametrize("batch_size", [1, 7, 100, 5000])
def test_sample_is_uniform_seeded_and_independent_of_batch_size(batch_size: int) -> None:
    n, k = 5000, 500
    rows = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    buf = FitData("x", max_samples=k, seed=5)
    for i in range(0, n, batch_size):
        buf.update(rows[i : i + batch_size])
    picked = buf.data()[:, 0]
    ref = FitData("x", max_samples=k, seed=5)
    ref.update(rows)
    np.testing.assert_array_equal(picked, ref.data()[:, 0])
    assert len(picked) == k and len(np.unique(picked)) == k
    assert np.all(np.diff(picked) > 0)  # rows kept in stream order
    # uniform: each decile of the stream holds about a tenth of the sample (binomial sd ~ 6.7)
    counts = np.bincount((picked // (n / 10)).astype(int), minlength=10)
    assert counts.min() > 50 - 25 and counts.max() < 50 + 25
    other = FitData("x", max_samples=k, seed=6)
    other.update(rows)
    assert not np.array_equal(other.data()[:, 0], picked)


def test_sample_shards_merge_to_the_single_stream_sample() -> None:
    rows = np.random.default_rng(2).normal(size=(3000, 4))
    whole = FitData("x", max_samples=300, seed=1)
    whole.update(rows)
    parts = []
    for start, stop in [(0, 1000), (1000, 1100), (1100, 3000)]:
        part = FitData("x", max_samples=300, seed=1, offset=start)
        part.update(rows[start:stop])
        parts.append(part)
    merged = parts[2].merged(parts[0]).merged(parts[1])
    np.testing.assert_array_equal(merged.data(), whole.data())
    restored = FitData.from_state_dict(parts[0].state_dict()).merged(parts[1]).merged(parts[2])
    np.testing.assert_array_equal(restored.data(), whole.data())
    assert FitData("x", max_samples=300, seed=1).merged(parts[0]).n_seen == 1000  # empty side
    again = FitData("x", max_samples=300, seed=1)  # rows 0..9 again, without an offset
    again.update(rows[:10])
    with pytest.raises(IntroscopeValueError, match="overlapping"):
        again.merged(parts[0])


def test_max_fit_samples_fits_on_the_sample(data) -> None:
    source = StubProducer(data)
    fam = Familiarity.introspect(source, strategy=GMM(max_fit_samples=100, random_state=2))
    dist = fam.distributions["emb"]
    assert len(dist.fit_scores) == 100
    buf = FitData("emb", max_samples=100, seed=2)
    buf.update(data["emb"])
    sk = GaussianMixture(5, covariance_type="diag", tol=1e-3, max_iter=200,
                         random_state=np.random.RandomState(2)).fit(buf.data())  # fmt: skip
    np.testing.assert_array_equal(dist.means, sk.means_)
    everything = Familiarity.introspect(source, strategy=GMM(max_fit_samples=10_000))
    assert len(everything.distributions["emb"].fit_scores) == 400


def test_distribution_state_dict_round_trip(data) -> None:
    fam = Familiarity.introspect(StubProducer(data), strategy=GMM(covariance_type="full"))  # type: ignore[arg-type]
    dist = fam.distributions["emb"]
    back = GMMDistribution.from_state_dict(dist.state_dict())
    np.testing.assert_array_equal(back.score_samples(data["emb"]), dist.score_samples(data["emb"]))
    np.testing.assert_array_equal(back.fit_scores, dist.fit_scores)


# -- bad input --------------------------------------------------------------------------------------
def test_non_2d_responses_name_field_and_processors() -> None:
    images = StubProducer({"conv": np.zeros((10, 4, 4, 3))})
    with pytest.raises(IntroscopeValueError, match=r"'conv'.*batch 0.*Pooler.*Flattener"):
        Familiarity.introspect(images)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_responses_are_refused(bad: float) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3))
    x[37, 1] = bad
    with pytest.raises(IntroscopeValueError, match=r"'f'.*batch 1.*NaN or Inf.*element 17"):
        Familiarity.introspect(StubProducer({"f": x}), batch_size=20)
    fam = Familiarity.introspect(StubProducer({"f": x[:30]}), strategy=GMM(gaussian_count=2))
    with pytest.raises(IntroscopeValueError, match=r"'f'.*batch 1.*NaN or Inf"):
        list(pipeline(StubProducer({"f": x}), fam)(20))


def test_too_few_samples_names_the_field() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(IntroscopeValueError, match=r"'few' has 4 samples.*5 Gaussian"):
        Familiarity.introspect(StubProducer({"few": x}))


def test_scoring_checks_width_and_fields(data) -> None:
    fam = Familiarity.introspect(StubProducer(data), strategy=GMM(gaussian_count=2))
    with pytest.raises(IntroscopeValueError, match=r"'emb'.*5 features.*fitted on 12"):
        list(pipeline(StubProducer({"emb": np.zeros((3, 5)), "small": np.zeros((3, 2))}), fam)(2))
    with pytest.raises(KeyError, match=r"'other'.*no fitted distribution"):  # as DNIKit's
        list(pipeline(StubProducer({"other": np.zeros((3, 2))}), fam)(2))


def test_changing_fields_between_batches_is_an_error() -> None:
    def producer(batch_size: int):
        yield Batch({"a": np.zeros((6, 2)), "b": np.zeros((6, 2))})
        yield Batch({"a": np.zeros((6, 2))})

    with pytest.raises(IntroscopeValueError, match=r"batch 1 has fields \['a'\]"):
        Familiarity.introspect(producer)


def test_width_change_during_fit_is_an_error() -> None:
    def producer(batch_size: int):
        yield Batch({"a": np.zeros((6, 2))})
        yield Batch({"a": np.zeros((6, 3))})

    with pytest.raises(IntroscopeValueError, match=r"'a' \(batch 1\) has 3 features"):
        Familiarity.introspect(producer)


# -- the accumulator contract ------------------------------------------------------------------------
def test_accumulator_shards_merge_save_and_finalize(data, tmp_path) -> None:
    from introscope.introspectors._accumulator import accumulate

    strategy = GMM(gaussian_count=3, random_state=5)
    whole = Familiarity.introspect(StubProducer(data), strategy=strategy)
    first = strategy.accumulator()
    second = first.spawn()
    accumulate(StubProducer({k: v[:150] for k, v in data.items()}), first, batch_size=64,
               finalize=False)  # fmt: skip
    accumulate(StubProducer({k: v[150:] for k, v in data.items()}), second, batch_size=64,
               finalize=False)  # fmt: skip
    first.save(tmp_path / "part.npz")
    restored = type(first).load(tmp_path / "part.npz")  # the strategy is saved with it
    for acc in (first.merge(second), restored.merge(second)):
        fam = acc.finalize()
        for field in data:
            np.testing.assert_array_equal(
                fam.distributions[field].means, whole.distributions[field].means
            )
    assert first.merge(second).nbytes == sum(a.nbytes for a in data.values())


def test_saved_accumulator_keeps_its_strategy_and_finalize_checks_its_options(
    data, tmp_path
) -> None:
    from introscope.introspectors import GMMCovarianceType

    strategy = GMM(gaussian_count=2, covariance_type=GMMCovarianceType.FULL, random_state=3)
    acc = strategy.accumulator()
    for field, x in data.items():
        acc.update(field, x)
    acc.save(tmp_path / "fam.npz")
    loaded = type(acc).load(tmp_path / "fam.npz")  # no strategy passed again
    assert loaded.strategy == strategy
    for field in data:
        got, want = loaded.finalize().distributions[field], acc.finalize().distributions[field]
        np.testing.assert_array_equal(got.means, want.means)
        assert got.covariances.ndim == 3  # full covariances, as saved
    with pytest.raises(
        IntroscopeValueError, match=r"finalize\(\) takes only strategy=.*'gaussians'"
    ):
        loaded.finalize(gaussians=3)
    # A RandomState cannot be saved: the loaded state says to pass the strategy again.
    shared = GMM(gaussian_count=2, random_state=np.random.RandomState(0))
    custom = shared.accumulator()
    custom.update("emb", data["emb"])
    custom.save(tmp_path / "custom.npz")
    restored = type(custom).load(tmp_path / "custom.npz")
    with pytest.raises(
        IntroscopeValueError, match=r"cannot be restored.*finalize\(strategy=\.\.\.\)"
    ):
        restored.finalize()
    assert list(restored.finalize(strategy=GMM(gaussian_count=2)).distributions) == ["emb"]


def test_sampled_shards_with_offsets_merge_to_the_one_stream_sample(data) -> None:
    strategy = GMM(gaussian_count=2, max_fit_samples=60)
    x = data["emb"]
    whole = Familiarity.accumulator(strategy=strategy)
    whole.update("emb", x)
    first = Familiarity.accumulator(strategy=strategy)
    second = first.spawn(offset=150)
    first.update("emb", x[:150])
    second.update("emb", x[150:])
    np.testing.assert_array_equal(
        first.merge(second).states["emb"].data(), whole.states["emb"].data()
    )
    third = Familiarity.accumulator(strategy=strategy, offset=150)
    third.update("emb", x[150:])
    np.testing.assert_array_equal(third.states["emb"].data(), second.states["emb"].data())
    clash = Familiarity.accumulator(strategy=strategy)
    clash.update("emb", x[150:])
    with pytest.raises(StateError, match=r"Familiarity.accumulator\(strategy=\.\.\., offset="):
        first.merge(clash)


def test_accumulator_names_response_and_batch() -> None:
    acc = GMM().accumulator()
    with pytest.raises(
        IntroscopeValueError, match=r"^Familiarity: response 'r' \(batch 2\) has shape"
    ):
        acc.update("r", np.zeros((3, 2, 2)), where="batch 2")


def test_multi_introspect_runs_familiarity_in_the_shared_pass(data) -> None:
    from introscope.base import Introspector, PipelineStage, multi_introspect
    from introscope.introspectors import IUA

    calls = []
    source = StubProducer(data)

    def producer(batch_size: int):
        calls.append(batch_size)
        return source(batch_size)

    fam, iua = multi_introspect(Familiarity.introspect, IUA.introspect, producer=producer)
    alone = Familiarity.introspect(source)
    assert len(calls) == 1 and isinstance(fam, Familiarity) and iua is not None
    assert isinstance(fam, PipelineStage) and isinstance(fam, Introspector)
    for field in data:
        np.testing.assert_array_equal(
            fam.distributions[field].means, alone.distributions[field].means
        )


def test_responses_too_large_for_float64_arithmetic_are_an_error_not_nan_scores() -> None:
    x = np.random.default_rng(0).normal(size=(60, 3)) * 1e200  # finite; squares overflow
    with pytest.raises(IntroscopeValueError, match=r"NaN or Inf parameters.*rescale"):
        Familiarity.introspect(StubProducer({"e": x}), strategy=GMM(gaussian_count=2))
