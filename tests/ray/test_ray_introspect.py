"""introscope.ray on a local 2-CPU Ray cluster: parity with a single-process run, the default
pool on a small machine, a worker killed mid-run, and the errors."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("torch")

import introscope.ray as iray  # noqa: E402
from introscope.base import Batch, PipelineStage, pipeline  # noqa: E402
from introscope.exceptions import IntroscopeValueError, MissingDependencyError  # noqa: E402
from introscope.introspectors import IUA, PFA, DimensionReduction  # noqa: E402
from introscope.processors import Pooler  # noqa: E402
from introscope.ray._codec import decode_state, encode_state  # noqa: E402
from introscope.samples import load_digits_cnn, load_digits_split  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    # Stages and factories defined here travel to the workers by value (tests/ is not on
    # the workers' import path).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    iray.init_local(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _producer(columns: dict[str, np.ndarray]):
    n = len(next(iter(columns.values())))

    def produce(batch_size: int):
        for s in range(0, n, batch_size):
            yield Batch({k: v[s : s + batch_size] for k, v in columns.items()})

    return produce


def _assert_iua_equal(got: IUA, want: IUA) -> None:
    assert list(got.results) == list(want.results)
    for name in want.results:
        a, b = got.results[name], want.results[name]
        assert a == b, name  # every array exactly, per-sample counts in row order
        assert a.num_samples == b.num_samples > 0
    assert got.channel_results.keys() == want.channel_results.keys()
    for name in want.channel_results:
        assert got.channel_results[name] == want.channel_results[name]


def _assert_pfa_equal(got: PFA, want: PFA, rtol: float) -> None:
    assert list(got.failed_responses) == list(want.failed_responses)
    assert got.covariances.keys() == want.covariances.keys() and got.covariances
    for name, ref in want.covariances.items():
        cov = got.covariances[name].covariances
        err = np.max(np.abs(cov - ref.covariances)) / np.max(np.abs(ref.covariances))
        assert err <= rtol, (name, err)
        assert np.array_equal(got.covariances[name].inactive_units, ref.inactive_units)
    for strategy in (PFA.Strategy.KL(), PFA.Strategy.Energy(0.9)):
        mine, theirs = got.get_recipe(strategy=strategy), want.get_recipe(strategy=strategy)
        assert mine.keys() == theirs.keys()
        for name in theirs:
            a, b = mine[name], theirs[name]
            assert a.recommended_output_count == b.recommended_output_count, name
            assert list(a.maximally_correlated_units) == list(b.maximally_correlated_units)
            assert a.number_inactive_units == b.number_inactive_units
            for field in type(b.diagnostics).__dataclass_fields__:
                assert getattr(a.diagnostics, field) == pytest.approx(
                    getattr(b.diagnostics, field), rel=max(1e-9, 100 * rtol)
                )


def test_local_cluster_listens_on_loopback(cluster):
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert ray.cluster_resources()["CPU"] == 2
    psutil = pytest.importorskip("psutil")
    # Ray's processes (GCS, raylet, workers, agents) are this process's descendants.
    pids = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = set()
    for proc in map(psutil.Process, pids):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}

    def loopback(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback

    assert listening and all(map(loopback, listening)), listening


def test_responses_dataset_matches_single_process(cluster):
    rng = np.random.default_rng(0)
    n = 1000
    relu = np.maximum(rng.normal(size=(n, 24)), 0).astype(np.float32)
    relu[:, 5] = 0  # a dead unit
    relu[rng.random(n) < 0.3, 7] = 0
    shifted = (rng.normal(size=(n, 9)) * 3 + 1e3).astype(np.float64)  # large mean, float64
    columns = {"relu": relu, "shifted": shifted, "ignored": rng.normal(size=(n, 3))}
    ds = cluster.data.range(n, override_num_blocks=7).map_batches(
        lambda b: {k: v[b["id"]] for k, v in columns.items()}, batch_size=None
    )
    (iua, pfa64, pfa, pca), stats = iray.introspect(
        ds,
        [IUA, PFA.accumulator(precision="float64"), PFA, DimensionReduction.Strategy.PCA(3)],
        responses=["relu", "shifted"],
        batch_size=64,
        return_stats=True,
    )
    ref = _producer({"relu": relu, "shifted": shifted})
    _assert_iua_equal(iua, IUA.introspect(ref, batch_size=100))
    _assert_pfa_equal(pfa64, PFA.introspect(ref, batch_size=100, precision="float64"), 1e-12)
    # float32 Gram blocks about per-block shifts: covariances within float32 rounding
    _assert_pfa_equal(pfa, PFA.introspect(ref, batch_size=100), 1e-6)
    want_pca = DimensionReduction.introspect(ref, strategies=DimensionReduction.Strategy.PCA(3))
    assert pca.fields == want_pca.fields == ["relu", "shifted"]
    for name in pca.fields:
        a, b = pca.strategies[name], want_pca.strategies[name]
        assert np.allclose(a.explained_variance_, b.explained_variance_, rtol=1e-6, atol=0)
        signs = np.sign(np.sum(a.components_ * b.components_, axis=1, keepdims=True))
        assert np.allclose(a.components_ * signs, b.components_, atol=1e-5)
    assert stats.rows == n and stats.blocks >= 7  # Ray may split a block, never drop rows
    assert [len(s) for s in stats.state_bytes] == [stats.blocks] * 4
    assert stats.merges == [stats.blocks - 1] * 4  # one partial state per block, merged pairwise
    # a PFA state is O(units^2) whatever the block's rows; IUA's grows with them
    assert len(set(stats.state_bytes[1])) == 1
    # one node: every state was made on the driver's node and nothing crossed between nodes
    assert stats.states_by_node == {ray.get_runtime_context().get_node_id(): 4 * stats.blocks}
    assert stats.remote_bytes == stats.combiner_remote_bytes == stats.driver_remote_bytes == 0


def test_pfa_state_ships_the_upper_triangle_and_round_trips():
    rng = np.random.default_rng(1)
    acc = PFA.accumulator(precision="float64")
    x = rng.normal(size=(300, 64)) + 5
    acc.update("f", x)
    entry = iray.PFAEntry(PFA.accumulator(precision="float64"))
    packed = encode_state(entry.state_dict(acc))
    full = encode_state(acc.state_dict())
    assert len(packed) < 0.6 * len(full)
    back = entry.from_state_dict(decode_state(packed))
    assert np.array_equal(back.covariance("f"), acc.covariance("f"))
    assert back.count("f") == 300


class _ExitOnce(PipelineStage):
    """Kills the worker process the first time it sees a batch (marker file: only once)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def _get_batch_processor(self):
        def process(batch: Batch) -> Batch:
            if not os.path.exists(self.marker):
                pathlib.Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)
            return batch

        return process


def _digits_model():
    return load_digits_cnn(seed=0)


def _digits_inputs(cluster, x: np.ndarray, blocks: int):
    # Read tasks (ray.data.range) feed the actors, as in the stall seen with 1-CPU actors.
    ds = cluster.data.range(len(x), override_num_blocks=blocks)
    return ds.map_batches(lambda b: {"x": x[b["id"]]}, batch_size=None)


def _digits_reference(x: np.ndarray, responses, stages, batch_size: int, atol: float = 1e-8):
    model = _digits_model()
    producer = pipeline(_producer({"x": x}), model(responses), *stages)
    return (
        IUA.introspect(producer, batch_size=batch_size, atol=atol),
        PFA.introspect(producer, batch_size=batch_size, precision="float64"),
    )


def test_model_default_pool_does_not_deadlock_on_two_cpus(cluster):
    (_, _), (x, _) = load_digits_split()
    x = x[:300]
    responses = ["fc1", "relu3"]
    got = iray.introspect(
        _digits_inputs(cluster, x, 5),
        [IUA, PFA.accumulator(precision="float64")],
        model=_digits_model,
        responses=responses,
        batch_size=32,
    )
    want = _digits_reference(x, responses, [], 32)
    _assert_iua_equal(got[0], want[0])
    # The workers run the model on each block's batches (32 and 28 rows of a 60-row block), the
    # reference on 32-row batches: some CPUs (an Intel Xeon here) round float32 products of
    # different batch sizes differently, so the responses differ by an ulp, the covariances by
    # ~1e-8. The sums themselves are float64 and exact to 1e-12 (tests above, same responses).
    _assert_pfa_equal(got[1], want[1], 1e-6)
    assert got[0].results["relu3"].dead_units() == want[0].results["relu3"].dead_units()


@pytest.mark.parametrize("with_model", [True, False], ids=["actor", "task"])
def test_worker_killed_mid_run_is_retried_without_loss(cluster, tmp_path, with_model):
    (_, _), (x, _) = load_digits_split()
    x = x[:240]
    marker = str(tmp_path / "killed")
    pooled = [Pooler(dim=(2, 3), method=Pooler.Method.MAX)]
    want = _digits_reference(x, ["relu2"], pooled, 16, atol=0.05)
    if with_model:
        got, stats = iray.introspect(
            _digits_inputs(cluster, x, 6),
            [IUA(atol=0.05), PFA.accumulator(precision="float64")],
            model=_digits_model,
            responses="relu2",
            batch_size=16,
            concurrency=2,  # two actors on two CPUs: sized to leave the read tasks a CPU
            stages=[*pooled, _ExitOnce(marker)],
            combine=2,  # pairs of block states merged on the workers first
            return_stats=True,
        )
        assert stats.blocks >= 6 and stats.rows == len(x)
        assert len(stats.state_bytes[0]) == len(stats.state_bytes[1]) < stats.blocks
        assert sum(stats.states_by_node.values()) == 2 * len(stats.state_bytes[0])
        assert stats.remote_bytes == 0  # one node
    else:
        # the responses themselves as the dataset; the killed worker is a task
        reference = pipeline(_producer({"x": x}), _digits_model()(["relu2"]))
        relu2 = np.concatenate([b.fields["relu2"] for b in reference(64)])
        ds = cluster.data.from_numpy(relu2).rename_columns({"data": "relu2"}).repartition(6)
        got, stats = iray.introspect(
            ds,
            [IUA(atol=0.05), PFA.accumulator(precision="float64")],
            batch_size=16,
            stages=[*pooled, _ExitOnce(marker)],
            combine=3,
            return_stats=True,
        )
        assert stats.blocks >= 6 and len(stats.state_bytes[0]) < stats.blocks
    assert os.path.exists(marker)  # a worker did die
    _assert_iua_equal(got[0], want[0])
    _assert_pfa_equal(got[1], want[1], 1e-12)
    assert got[0].results["relu2"].num_samples == len(x)  # none lost, none counted twice


def test_application_errors_are_not_retried(cluster):
    ds = cluster.data.from_numpy(np.ones((20, 3, 4), np.float32)).rename_columns({"data": "r"})
    with pytest.raises(IntroscopeValueError, match=r"PFA: response 'r' \(batch 0\).*2-D"):
        iray.introspect(ds, [PFA], batch_size=8)


def test_bad_arguments(cluster):
    ds = cluster.data.from_numpy(np.ones((4, 3), np.float32))
    with pytest.raises(IntroscopeValueError, match="must be a ray.data.Dataset"):
        iray.introspect(np.ones((4, 3)), [IUA])
    with pytest.raises(IntroscopeValueError, match="introspectors is empty"):
        iray.introspect(ds, [])
    with pytest.raises(IntroscopeValueError, match=r"introspectors\[1\]"):
        iray.introspect(ds, [IUA, "PFA"])
    with pytest.raises(IntroscopeValueError, match="concurrency"):
        iray.introspect(ds, [IUA], concurrency=(3, 1))
    with pytest.raises(IntroscopeValueError, match="batch_size"):
        iray.introspect(ds, [IUA], batch_size=0)
    with pytest.raises(IntroscopeValueError, match="model must be a zero-argument function"):
        iray.introspect(ds, [IUA], model=_digits_model())


@pytest.mark.parametrize(
    ("cpus", "concurrency", "gpus", "cluster_gpus", "pool", "per_actor"),
    [
        (2, None, 0, 0, 1, 1.0),  # default on this machine: one actor, one CPU left for reads
        (2, 2, 0, 0, 2, 0.5),  # concurrency=2 on 2 CPUs: would stall with 1 CPU per actor
        (2, (1, 4), 0, 0, (1, 4), 0.25),
        (1, None, 0, 0, 1, 0.0),
        (64, None, 0, 0, 63, 1.0),
        (16, None, 1, 0, 1, 1.0),
        (16, None, 1, 8, 8, 1.0),  # one actor per GPU
        (16, None, 0.5, 2, 4, 1.0),
    ],
)
def test_actor_resources_leave_a_cpu_for_reads(
    cpus, concurrency, gpus, cluster_gpus, pool, per_actor
):
    assert iray.actor_resources(cpus, concurrency, gpus, cluster_gpus) == (pool, per_actor)


def test_missing_ray_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"introscope\[ray\]"):
        iray.introspect(None, [IUA])


def test_familiarity_fit_sample_and_scores_match_single_process(cluster):
    from introscope.introspectors import Familiarity

    rng = np.random.default_rng(3)
    n = 600
    feats = np.concatenate(
        [rng.normal(0, 1, size=(n // 2, 4)), rng.normal(4, 0.5, size=(n // 2, 4))]
    ).astype(np.float32)[rng.permutation(n)]
    columns = {"feat": feats, "id": np.arange(n)}
    ds = cluster.data.range(n, override_num_blocks=5).map_batches(
        lambda b: {k: v[b["id"]] for k, v in columns.items()}, batch_size=None
    )
    strategy = Familiarity.Strategy.GMM(gaussian_count=3, max_fit_samples=250, random_state=7)
    (fam,), stats = iray.introspect(
        ds, [strategy], responses="feat", batch_size=50, return_stats=True
    )
    want = Familiarity.introspect(_producer({"feat": feats}), strategy=strategy, batch_size=64)
    got_state = fam.distributions["feat"].state_dict()
    want_state = want.distributions["feat"].state_dict()
    assert got_state.keys() == want_state.keys()
    for key, value in want_state.items():
        assert np.array_equal(np.asarray(got_state[key]), np.asarray(value)), key
    # every block shipped all its rows (the driver took the seeded sample)
    assert stats.rows == n and stats.merges == [stats.blocks]
    scored = iray.score(ds, fam, responses="feat", keep=["id"]).take_all()
    ids = np.array([r["id"] for r in scored])
    scores = np.array([r["feat_score"] for r in scored])
    assert sorted(ids.tolist()) == list(range(n))
    assert np.array_equal(scores, want.score("feat", feats[ids]))


def test_score_with_a_model_matches_single_process(cluster):
    """Familiarity fitted on the workers' pooled responses of the digits CNN, then scored by
    actors that load the model themselves: the same scores as one process, row for row."""
    from introscope.introspectors import Familiarity

    (_, _), (x, _) = load_digits_split()
    x = x[:200]
    pooled = [Pooler(dim=(2, 3), method=Pooler.Method.MAX)]
    ids = np.arange(len(x))
    ds = cluster.data.range(len(x), override_num_blocks=4).map_batches(
        lambda b: {"x": x[b["id"]], "id": b["id"]}, batch_size=None
    )
    strategy = Familiarity.Strategy.GMM(gaussian_count=2, random_state=1)
    (fam,) = iray.introspect(
        ds.drop_columns(["id"]),  # the model's inputs only
        [strategy],
        model=_digits_model,
        responses="relu2",
        stages=pooled,
        batch_size=32,
    )
    reference = pipeline(_producer({"x": x}), _digits_model()(["relu2"]), *pooled)
    want = Familiarity.introspect(reference, strategy=strategy, batch_size=64)
    got_state = fam.distributions["relu2"].state_dict()
    for key, value in want.distributions["relu2"].state_dict().items():
        value = np.asarray(value)
        if value.dtype.kind in "fc":  # responses computed in other batches: float rounding
            np.testing.assert_allclose(np.asarray(got_state[key]), value, rtol=1e-5, atol=1e-8)
        else:
            assert np.array_equal(np.asarray(got_state[key]), value), key
    scored = iray.score(
        ds, fam, model=_digits_model, responses="relu2", stages=pooled, keep=["id"], batch_size=32
    ).take_all()
    got_ids = np.array([r["id"] for r in scored])
    assert sorted(got_ids.tolist()) == ids.tolist()
    feats = np.concatenate([b.fields["relu2"] for b in reference(64)])
    scores = np.array([r["relu2_score"] for r in scored])
    np.testing.assert_allclose(scores, fam.score("relu2", feats[got_ids]), rtol=1e-9)


def test_combiner_counts_the_bytes_of_states_made_on_other_nodes(cluster):
    from introscope.ray._entries import resolve_entries
    from introscope.ray._worker import STATE_COLUMNS, BlockAccumulator, StateCombiner

    entries = resolve_entries([IUA, PFA])
    block = BlockAccumulator(entries, batch_size=8)
    rng = np.random.default_rng(0)
    parts = [block({"r": rng.normal(size=(20, 5)).astype(np.float32)}) for _ in range(3)]
    here = cluster.get_runtime_context().get_node_id()
    assert all(list(p["node"]) == [here, here] for p in parts)  # made in this process's node
    parts[1]["node"] = np.array(["elsewhere", "elsewhere"], dtype=object)
    part = {c: np.concatenate([p[c] for p in parts]) for c in STATE_COLUMNS}
    out = StateCombiner(entries)(part)
    assert list(out["node"]) == [here, here]
    assert out["remote_bytes"].tolist() == [len(bytes(b)) for b in parts[1]["state"]]
    assert out["rows"].tolist() == [60, 60] and out["blocks"].tolist() == [3, 3]


def _raising_factory():
    raise RuntimeError("weights not found")


def test_worker_side_failures_reach_the_driver_as_introscope_errors(cluster):
    import warnings

    from introscope.exceptions import IntroscopeError
    from introscope.introspectors import Familiarity

    torch = pytest.importorskip("torch")
    ds = cluster.data.from_numpy(np.ones((40, 3), np.float32))
    # A factory that raises inside the actor: its message, not Ray's ActorDiedError.
    with pytest.raises(IntroscopeError, match="model factory raised RuntimeError: weights not"):
        iray.introspect(ds, [IUA], model=_raising_factory)
    # A torch module is not a factory; NaN GPUs are not a number of GPUs.
    with pytest.raises(IntroscopeValueError, match="zero-argument function"):
        iray.introspect(ds, [IUA], model=torch.nn.Linear(3, 2))
    with pytest.raises(IntroscopeValueError, match="num_gpus"):
        iray.introspect(ds, [IUA], num_gpus=float("nan"))
    from introscope.ray._introspect import map_batch_rows

    assert map_batch_rows(256, 0) is None and map_batch_rows(256, 1) == 16384
    # nonfinite="warn": one summary warning on the driver, as in a single process.
    rows = np.ones((40, 3), np.float32)
    rows[5, 1] = np.nan
    bad = cluster.data.from_numpy(rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (iua,) = iray.introspect(bad, [IUA(nonfinite="warn")], batch_size=8)
    assert iua.results["data"].nonfinite == 1
    assert [w for w in caught if "NaN or Inf values counted as active" in str(w.message)]
    # score: columns are checked on the driver, not by a worker when the scores are read.
    fam = Familiarity.introspect(
        lambda bs: iter([Batch({"data": np.random.default_rng(0).normal(size=(40, 3))})]),
        strategy=Familiarity.Strategy.GMM(gaussian_count=1),
    )
    with pytest.raises(IntroscopeValueError, match=r"keep names columns \['id'\]"):
        iray.score(ds, fam, keep=["id"])
    with pytest.raises(IntroscopeValueError, match=r"has no column \['emb'\]"):
        iray.score(ds, fam, responses=["emb"])


# --- num_gpus beyond the cluster, score's factory errors, responses, error classes, lists ---


@pytest.mark.timeout(60)
def test_num_gpus_the_cluster_lacks_raises_before_submitting(cluster):
    from introscope.introspectors import Familiarity

    assert ray.cluster_resources().get("GPU", 0) == 0  # the local test cluster: CPUs only
    ds = cluster.data.from_numpy(np.ones((8, 3), np.float32))
    message = r"num_gpus=1 GPUs per worker, but the Ray cluster has 0 GPUs.*num_gpus=0"
    with pytest.raises(IntroscopeValueError, match=message):
        iray.introspect(ds, [IUA], model=_digits_model, num_gpus=1)
    with pytest.raises(IntroscopeValueError, match=r"num_gpus=0\.5 .* has 0 GPUs"):
        iray.introspect(ds, [IUA], num_gpus=0.5)  # tasks (no model) too
    fam = Familiarity.introspect(
        _producer({"data": np.random.default_rng(0).normal(size=(20, 3))}),
        strategy=Familiarity.Strategy.GMM(gaussian_count=1),
    )
    with pytest.raises(IntroscopeValueError, match=r"introscope.ray.score: num_gpus=1 .*now"):
        iray.score(ds, fam, num_gpus=1)
    from introscope.ray._introspect import check_cluster_gpus

    check_cluster_gpus(0.5, {"GPU": 0.5}, "f")  # fractional GPUs per worker fit
    check_cluster_gpus(1, {"GPU": 4.0}, "f")
    check_cluster_gpus(0, {}, "f")
    # two nodes of 1 GPU: 2 GPUs in all, but no worker of 2 GPUs fits on one node
    check_cluster_gpus(1, {"GPU": 2.0}, "f", [{"GPU": 1.0}, {"GPU": 1.0}])
    with pytest.raises(IntroscopeValueError, match="at most 1 on one node"):
        check_cluster_gpus(2, {"GPU": 2.0}, "f", [{"GPU": 1.0}, {"GPU": 1.0}])
    with pytest.raises(IntroscopeValueError, match=r"f: num_gpus=1 .* has 0\.5 GPUs"):
        check_cluster_gpus(1, {"GPU": 0.5}, "f")


def _fitted_familiarity(columns=3):
    from introscope.introspectors import Familiarity

    rows = np.random.default_rng(0).normal(size=(40, columns))
    return Familiarity.introspect(
        _producer({"data": rows}), strategy=Familiarity.Strategy.GMM(gaussian_count=1)
    )


def test_score_reports_the_model_factory_error_as_introspect_does(cluster):
    from introscope.exceptions import IntroscopeError
    from introscope.ray._score import _Scorer

    fam = _fitted_familiarity()
    kwargs = {"batch_size": 8, "responses": None, "stages": [], "keep": []}
    block = {"x": np.ones((4, 3), np.float32)}
    # In process: the actor survives its constructor and its first call raises the cause.
    with pytest.raises(IntroscopeError, match="score: the model factory raised RuntimeError"):
        _Scorer(fam, _raising_factory, **kwargs)(block)
    with pytest.raises(IntroscopeValueError, match="model\\(\\) returned a int; it must return"):
        _Scorer(fam, lambda: 3, **kwargs)(block)
    # On the cluster: the reader of the scores gets Ray's error with that message, not
    # ActorDiedError.
    ds = cluster.data.from_numpy(np.ones((10, 3), np.float32)).rename_columns({"data": "x"})
    with pytest.raises(Exception) as caught:  # noqa: PT011 - Ray's class, checked below
        iray.score(ds, fam, model=_raising_factory).take_all()
    assert not isinstance(caught.value, ray.exceptions.ActorDiedError)
    text = str(caught.value)
    assert "introscope.ray.score: the model factory raised RuntimeError: weights not found" in text


def test_responses_must_be_names(cluster):
    ds = cluster.data.from_numpy(np.ones((4, 3), np.float32))
    fam = _fitted_familiarity()
    for bad in (5, [1, 2], b"data", {"data": 1}, ["data", None]):
        with pytest.raises(IntroscopeValueError, match=r"introspect: responses must be None"):
            iray.introspect(ds, [IUA], responses=bad)
        with pytest.raises(IntroscopeValueError, match=r"score: responses must be None"):
            iray.score(ds, fam, responses=bad)
    with pytest.raises(IntroscopeValueError, match="responses is empty"):
        iray.score(ds, fam, responses=[])
    from introscope.ray._introspect import check_responses

    assert check_responses("a", "f") == ["a"]
    assert check_responses(("a", "b"), "f") == ["a", "b"]
    assert check_responses(iter(["a"]), "f") == ["a"]  # an iterator is read once
    assert check_responses(None, "f") is None


class _UserStateError(__import__("introscope.exceptions").exceptions.StateError):
    """A user's subclass: its class is not introscope's, the driver raises its base."""


class _RaisesOnMarkedBatch(PipelineStage):
    def _get_batch_processor(self):
        def process(batch: Batch) -> Batch:
            if np.any(batch.fields["data"] == 99.0):
                raise RuntimeError("boom on the marked batch")
            return batch

        return process


def test_worker_errors_keep_their_introscope_class(cluster):
    from introscope.exceptions import IntroscopeError, IntroscopeKeyError, StateError
    from introscope.introspectors import Familiarity
    from introscope.introspectors._state_contract import NonFiniteValues
    from introscope.ray._errors import error_info, rebuild_error

    rows = np.ones((20, 3), np.float32)
    rows[3, 1] = np.nan
    gmm = Familiarity.Strategy.GMM(gaussian_count=1)
    with pytest.raises(StateError) as single:
        Familiarity.introspect(_producer({"data": rows}), strategy=gmm)
    with pytest.raises(StateError, match="holds NaN or Inf.*raised on a Ray worker") as remote:
        iray.introspect(cluster.data.from_numpy(rows), [gmm])
    assert type(remote.value) is type(single.value) is StateError
    # The class travels by name, with its JSON-able attributes; nothing is unpickled.
    back = rebuild_error(decode_state(encode_state(error_info(NonFiniteValues(3, 10)))))
    assert type(back) is NonFiniteValues and (back.count, back.size) == (3, 10)
    assert str(back) == "has 3 NaN or Inf values out of 10"
    key = rebuild_error(error_info(IntroscopeKeyError("unknown 'x'")), " (on a worker)")
    assert type(key) is IntroscopeKeyError and str(key) == "unknown 'x' (on a worker)"
    user = rebuild_error(error_info(_UserStateError("mine")))
    assert type(user) is StateError and str(user) == "mine"
    for name in ("os:system", "builtins:RuntimeError", "introscope.ray:init_local", "x"):
        info = {"message": "m", "value_error": True, "classes": [name]}
        assert type(rebuild_error(info)) is IntroscopeValueError
    info = {"message": "m", "value_error": False}  # no class names: the base class
    assert type(rebuild_error(info)) is IntroscopeError
    # A user stage's own error stays Ray's, with the original message in its text.
    marked = np.ones((20, 3), np.float32)
    marked[12, 0] = 99.0
    with pytest.raises(ray.exceptions.RayTaskError) as plain:
        iray.introspect(
            cluster.data.from_numpy(marked), [IUA], stages=[_RaisesOnMarkedBatch()], batch_size=4
        )
    assert "boom on the marked batch" in str(plain.value)
    assert not isinstance(plain.value, IntroscopeError)


def test_rows_of_python_lists_are_stacked_as_from_numpy(cluster):
    from introscope.ray._worker import numeric_column

    rng = np.random.default_rng(5)
    values = np.maximum(rng.normal(size=(60, 4)), 0)
    values[:, 2] = 0
    rows = [{"data": list(map(float, r))} for r in values]
    arrays = cluster.data.from_numpy(values)  # one block
    introspectors = [IUA, PFA.accumulator(precision="float64")]
    want = iray.introspect(arrays, introspectors, batch_size=16)
    # the same blocks: the same numbers, bit for bit
    got = iray.introspect(
        cluster.data.from_items(rows, override_num_blocks=1), introspectors, batch_size=16
    )
    _assert_iua_equal(got[0], want[0])
    _assert_pfa_equal(got[1], want[1], 0)
    # a block per row (from_items' default): merged in other places, float64 rounding
    many = iray.introspect(cluster.data.from_items(rows), introspectors, batch_size=16)
    _assert_iua_equal(many[0], IUA.introspect(_producer({"data": values}), batch_size=16))
    _assert_pfa_equal(many[1], want[1], 1e-12)
    ragged = [{"data": [1.0, 2.0, 0.0]}] * 3 + [{"data": [1.0, 2.0, 0.0, 4.0]}]
    with pytest.raises(IntroscopeValueError, match=r"rows of lengths 3 and 4 \(rows 0 and 3"):
        iray.introspect(cluster.data.from_items(ragged, override_num_blocks=1), [IUA])
    named = cluster.data.from_items([{"data": [1.0, 2.0], "name": "a"}] * 4)
    with pytest.raises(IntroscopeValueError, match=r"column 'name' .*: str values.*responses="):
        iray.introspect(named, [IUA])
    (iua,) = iray.introspect(named, [IUA], responses="data")
    assert iua.results["data"].num_samples == 4
    scores = iray.score(named, _fitted_familiarity(2), responses="data").take_all()
    assert len(scores) == 4 and all(np.isfinite(r["data_score"]) for r in scores)
    # nested lists (Ray: object arrays of arrays) and what cannot be stacked, in process
    nested = np.empty(2, dtype=object)
    nested[0] = np.array([np.array([1.0, 2.0]), np.array([3.0, 4.0])], dtype=object)
    nested[1] = np.array([np.array([5.0, 6.0]), np.array([7.0, 8.0])], dtype=object)
    assert np.array_equal(numeric_column("n", nested), [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    mixed = np.array([np.ones(2), None], dtype=object)
    with pytest.raises(IntroscopeValueError, match="NoneType values"):
        numeric_column("m", mixed)
    shapes = np.array([np.ones((2, 2)), np.ones((2, 3))] + [None], dtype=object)[:2]
    with pytest.raises(IntroscopeValueError, match=r"rows of shapes \(2, 2\) and \(2, 3\)"):
        numeric_column("s", shapes)
