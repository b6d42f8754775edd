"""introscope.ray, audit 8: rows of different shapes in different blocks, introspectors given as
a string, model-input advice that works on Ray, and Ray started loopback-only when it is not
running. On a local 2-CPU Ray cluster, as tests/ray/test_ray_introspect.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("torch")

import introscope.ray as iray  # noqa: E402
from introscope.exceptions import IntroscopeError, IntroscopeValueError, StateError  # noqa: E402
from introscope.introspectors import IUA, PFA, DimensionReduction, Familiarity  # noqa: E402
from introscope.ray import _cluster  # noqa: E402
from introscope.ray._entries import AccumulatorEntry  # noqa: E402
from introscope.ray._introspect import _TreeMerger  # noqa: E402
from introscope.ray._worker import with_ray_input_hint  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    # Factories defined here travel to the workers by value (tests/ is not on their path).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    iray.init_local(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _ragged(cluster, rows):
    # from_items puts each item in its own block: the rows meet only in the driver's merge.
    return cluster.data.from_items([{"data": r} for r in rows], override_num_blocks=len(rows))


# -- F2: rows of different shapes in different blocks ----------------------------------------


@pytest.mark.parametrize(
    "introspector",
    [IUA, PFA, Familiarity.Strategy.GMM(gaussian_count=1), DimensionReduction.Strategy.PCA(1)],
    ids=["IUA", "PFA", "Familiarity", "PCA"],
)
def test_rows_of_different_lengths_in_different_blocks_say_pad_or_crop(cluster, introspector):
    ds = _ragged(cluster, [[1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(StateError) as info:
        iray.introspect(ds, [introspector])
    message = str(info.value)
    assert message.startswith(
        "introscope.ray: column 'data' has rows of lengths 2 and 3 in different blocks of the "
        "dataset (blocks 0 and 1), which cannot be merged"
    ), message
    assert "pad or crop the rows to one shape" in message
    # The accumulator's own error is kept as the cause.
    assert isinstance(info.value.__cause__, StateError)
    assert "cannot merge" in str(info.value.__cause__) or "earlier" in str(info.value.__cause__)


def test_rows_of_different_shapes_merged_on_a_combiner_say_pad_or_crop(cluster):
    ds = _ragged(cluster, [[[1.0, 0.0]] * 2, [[1.0, 0.0]] * 2, [[1.0, 0.0, 1.0]] * 2])
    with pytest.raises(StateError) as info:
        iray.introspect(ds, [IUA], combine=3)
    message = str(info.value)
    assert (
        "column 'data' has rows of shapes (2, 2) and (2, 3) in different blocks of the dataset"
        in message
    ), message
    assert "pad or crop the rows to one shape" in message
    assert "raised on a Ray worker" in message


def test_rows_of_different_lengths_later_in_the_dataset_name_their_blocks(cluster):
    # Blocks 0 and 1 merge first; block 2 then meets their merged state (first block 0).
    ds = _ragged(cluster, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0, 1.0]])
    with pytest.raises(StateError, match=r"lengths 2 and 3 .*\(blocks 0 and 2\)"):
        iray.introspect(ds, [IUA])
    ds = _ragged(cluster, [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(StateError, match=r"lengths 2 and 3 .*\(blocks 2 and 3\)"):
        iray.introspect(ds, [IUA])


def test_a_merge_error_about_something_else_is_raised_unchanged():
    # No cluster: the driver's merge tree, given states whose merge fails for another reason.
    class Refusing(AccumulatorEntry):
        def merged(self, left, right):  # noqa: ANN001, ANN201
            raise StateError("IUA: cannot merge response 'relu': something else")

    merger = _TreeMerger(Refusing(IUA()))
    merger.push(object(), {"relu": (2,)})
    with pytest.raises(StateError, match="^IUA: cannot merge response 'relu': something else$"):
        merger.push(object(), {"relu": (2,)})


def test_a_model_response_of_different_shapes_names_the_response():
    class Refusing(AccumulatorEntry):
        def merged(self, left, right):  # noqa: ANN001, ANN201
            raise StateError("IUA: cannot merge response 'conv': has units of shape ...")

    merger = _TreeMerger(Refusing(IUA()), with_model=True)
    merger.push(object(), {"fc": (4,), "conv": (3, 5)}, blocks=2)
    with pytest.raises(StateError) as info:
        merger.push(object(), {"fc": (4,), "conv": (3, 6)})
    message = str(info.value)
    assert message.startswith(
        "introscope.ray: response 'conv' has rows of shapes (3, 5) and (3, 6) in different "
        "blocks of the dataset (blocks 0 and 2)"
    ), message
    assert "feed the model input rows of one shape" in message


# -- F4: introspectors given as a string ----------------------------------------------------


def test_introspectors_given_as_a_string_are_refused_whole(cluster):
    ds = cluster.data.from_numpy(np.zeros((4, 2)))
    with pytest.raises(IntroscopeValueError) as info:
        iray.introspect(ds, "IUA")
    message = str(info.value)
    assert "introspectors is the string 'IUA'" in message, message
    assert "pass a list of introspector classes or configured instances" in message
    assert "'I'" not in message
    with pytest.raises(IntroscopeValueError, match=r"introspectors\[1\] is the string 'PFA'"):
        iray.introspect(ds, [IUA, "PFA"])
    with pytest.raises(IntroscopeValueError, match="familiarity is the string 'Familiarity'"):
        iray.score(ds, "Familiarity")


# -- F5: model-input advice that works in introscope.ray -------------------------------------


def _torch_model():
    import torch
    from introscope.torch import load_torch_model_from_memory

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    return load_torch_model_from_memory(net, example_input=np.zeros((1, 3), np.float32))


def _onnx_model():
    pytest.importorskip("onnxruntime")
    from introscope.onnx import load_onnx_model
    from onnx import TensorProto, helper, numpy_helper

    weights = np.ones((3, 2), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["h"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "w")],
    )
    return load_onnx_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _with_id(cluster):
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    return cluster.data.from_items([{"data": r, "id": i} for i, r in enumerate(x)])


def _assert_ray_advice(message: str, owner: str) -> None:
    assert "introscope.processors.FieldRenamer" not in message, message
    assert f"in {owner} the stages run after the model" in message, message
    assert "dataset.select_columns([...])" in message
    assert "dataset.drop_columns([...])" in message
    assert "dataset.rename_columns(" in message


@pytest.mark.parametrize("factory", [_torch_model, _onnx_model], ids=["torch", "onnx"])
def test_model_input_mismatch_advises_dataset_columns_not_field_renamer(cluster, factory):
    ds = _with_id(cluster)
    with pytest.raises(IntroscopeError) as info:
        iray.introspect(ds, [IUA], model=factory)
    message = str(info.value)
    assert "but the batch has fields ['data', 'id']" in message, message
    _assert_ray_advice(message, "introscope.ray.introspect")
    # The advice works: the model's input column only.
    [iua] = iray.introspect(ds.select_columns(["data"]), [IUA], model=factory)
    assert iua.results


def test_score_model_input_mismatch_advises_dataset_columns_or_keep(cluster):
    ds = _with_id(cluster)
    gmm = Familiarity.Strategy.GMM(gaussian_count=1)
    [fam] = iray.introspect(ds.drop_columns(["id"]), [gmm], model=_torch_model, responses="0")
    with pytest.raises(Exception) as info:  # noqa: PT011 - Ray's RayTaskError, read lazily
        iray.score(ds.rename_columns({"id": "label"}), fam, model=_torch_model).take_all()
    message = str(info.value)
    _assert_ray_advice(message, "introscope.ray.score")
    assert "name the other columns in keep=" in message
    scored = iray.score(ds, fam, model=_torch_model, keep=["id"]).take_all()
    assert sorted(r["id"] for r in scored) == list(range(6))


def test_ray_input_hint_leaves_the_single_process_message_and_other_errors_alone():
    from introscope.base import Batch, pipeline, producer_from_batches

    batch = Batch({"data": np.zeros((2, 3), np.float32), "id": np.arange(2)})
    with pytest.raises(IntroscopeError, match="rename fields with introscope.processors"):
        list(pipeline(producer_from_batches(batch), _onnx_model()(["h"]))(2))
    other = IntroscopeError("input 'x' has shape (2, 4); the model expects (?, 3)")
    assert with_ray_input_hint(other, "introscope.ray.introspect") is other
    base = StateError(
        "expects inputs ['x'] ...; rename fields with introscope.processors.FieldRenamer"
    )
    hinted = with_ray_input_hint(base, "introscope.ray.introspect")
    assert type(hinted) is StateError and str(hinted).startswith("expects inputs ['x'] ...; in ")


# -- F7: Ray started loopback-only when it is not running -------------------------------------


def test_ensure_started_uses_init_local_or_ray_address(monkeypatch):
    # No cluster: which start-up each case calls.
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(_cluster, "init_local", lambda **kw: calls.append(("init_local", kw)))
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(("ray.init", kw)))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _cluster.ensure_started()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    _cluster.ensure_started()
    assert calls == [("init_local", {}), ("ray.init", {})]


def test_introspect_and_score_start_ray_with_init_local(cluster, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    calls = []
    real = _cluster.init_local

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append((args, kwargs))
        return real(num_cpus=2, log_to_driver=False)  # the test machine's size, quietly

    monkeypatch.setattr(_cluster, "init_local", spy)
    rows = np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    gmm = Familiarity.Strategy.GMM(gaussian_count=1)
    [fam] = iray.introspect(cluster.data.from_numpy(rows), [gmm])
    assert calls == []  # Ray was running
    for run in ("introspect", "score"):
        # A lazy dataset outlives the Ray session it was defined in (Ray Data itself starts Ray
        # with a plain ray.init() when a dataset is made, so this is where ours is used).
        ds = cluster.data.range_tensor(3, shape=(2,)).map_batches(
            lambda b: {"data": b["data"].astype(np.float64)}, batch_size=None
        )
        ray.shutdown()
        assert not ray.is_initialized()
        if run == "introspect":
            [iua] = iray.introspect(ds, [IUA])
            assert iua.results["data"].num_samples == 3
        else:
            assert len(iray.score(ds, fam).take_all()) == 3
        assert calls == [((), {})], run  # init_local(), with its loopback-only defaults
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        calls.clear()


def test_an_accumulator_holding_data_is_refused_in_plain_words() -> None:
    from introscope.ray._entries import resolve_entries

    used = IUA()
    used.update("a", np.zeros((2, 3)))
    with pytest.raises(IntroscopeValueError, match=r"is an accumulator \(IUA\) that already"):
        resolve_entries([used])
