"""ONNX graphs built with ``onnx.helper``: inputs that are not batched, the shape fallbacks when no
dry run is possible, the chunk check of fixed-batch graphs, and errors for names."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.onnx import OnnxBackend, load_onnx_model  # noqa: E402

TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper
RNG = np.random.default_rng(11)


def _model(nodes, inputs, outputs, inits=()) -> onnx.ModelProto:  # noqa: ANN001
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _info(name: str, shape, dtype=TensorProto.FLOAT):  # noqa: ANN001, ANN202
    return helper.make_tensor_value_info(name, dtype, shape)


def _scaled() -> onnx.ModelProto:
    """y = relu(x * scale) with a scalar input ``scale``."""
    nodes = [helper.make_node("Mul", ["x", "scale"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    return _model(nodes, [_info("x", ["N", 3]), _info("scale", [])], [_info("y", ["N", 3])])


def test_scalar_input_is_refused_naming_it_and_the_fix() -> None:
    match = r"input 'scale' is a scalar.*not batched.*fixed_inputs=\{'scale': value\}"
    with pytest.raises(IntroscopeError, match=match):
        load_onnx_model(_scaled())


def test_fixed_inputs_feed_an_input_that_is_not_batched() -> None:
    model = load_onnx_model(_scaled(), fixed_inputs={"scale": 2.0})  # a float: cast to float32
    assert list(model.input_layers) == ["x"] and list(model.response_infos) == ["x", "h", "y"]
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    out = model.backend.run_inference({"x": x}, frozenset(["h", "y"]))
    np.testing.assert_array_equal(out["h"], 2 * x)
    np.testing.assert_array_equal(out["y"], np.maximum(2 * x, 0))
    with pytest.raises(IntroscopeError, match=r"got \['scale', 'x'\].*'scale' given in fixed"):
        model.backend.run_inference({"x": x, "scale": np.float32(1)}, frozenset(["y"]))
    with pytest.raises(IntroscopeError, match=r"'scale' is given once in fixed_inputs"):
        model(["scale"])
    with pytest.raises(IntroscopeError, match=r"fixed_inputs 'scal' \(did you mean 'scale'\?\)"):
        load_onnx_model(_scaled(), fixed_inputs={"scal": 1.0})
    with pytest.raises(IntroscopeError, match=r"fixed_inputs\['scale'\] has shape \(2,\)"):
        load_onnx_model(_scaled(), fixed_inputs={"scale": [1.0, 2.0]})


def test_input_with_a_fixed_first_dimension_beside_a_batched_one() -> None:
    table = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [
        helper.make_node("ReduceSum", ["table", "axes"], ["row"], keepdims=1),
        helper.make_node("Add", ["x", "row"], ["y"]),
    ]
    proto = _model(
        nodes,
        [_info("x", ["N", 3]), _info("table", [2, 3])],
        [_info("y", ["N", 3])],
        [numpy_helper.from_array(np.array([0], np.int64), "axes")],
    )
    with pytest.raises(IntroscopeError, match=r"'table' has the fixed size 2 on dimension 0.*'x'"):
        load_onnx_model(proto)
    model = load_onnx_model(proto, fixed_inputs={"table": table})
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    got = model.backend.run_inference({"x": x}, frozenset(["y"]))["y"]
    np.testing.assert_allclose(got, x + table.sum(0))


def test_no_dry_run_possible_unknown_shapes_are_left_out() -> None:
    # an input of unknown rank: no dry run, and shape inference knows nothing downstream
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    model = load_onnx_model(_model(nodes, [_info("x", None)], [_info("y", None)]))
    assert list(model.response_infos) == ["x"]
    match = r"'r' is not a response: its shape is unknown.*dry run because input 'x' has an unknown"
    with pytest.raises(IntroscopeError, match=match):
        model(["r"])


def test_dry_run_failing_falls_back_on_inferred_shapes() -> None:
    # the Reshape to (5, -1) fails with batch sizes 2 and 3: the inferred shapes decide
    nodes = [
        helper.make_node("Relu", ["x"], ["h"]),
        helper.make_node("Reshape", ["h", "five"], ["r"]),
        helper.make_node("Neg", ["r"], ["y"]),
    ]
    five = numpy_helper.from_array(np.array([5, -1], np.int64), "five")
    model = load_onnx_model(_model(nodes, [_info("x", ["N", 4])], [_info("y", [5, 4])], [five]))
    assert list(model.response_infos) == ["x", "h"]
    with pytest.raises(IntroscopeError, match=r"'y' is not a response: its inferred shape is \(5,"):
        model(["y"])
    x = RNG.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.backend.run_inference({"x": x}, frozenset(["h"]))["h"], np.maximum(x, 0)
    )


def test_tensors_without_type_information_are_classified_by_the_dry_run(monkeypatch) -> None:  # noqa: ANN001
    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no shape inference today")

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
        helper.make_node("Transpose", ["t"], ["y"], perm=[1, 0]),
    ]
    proto = _model(nodes, [_info("x", ["N", 2])], [_info("y", None)])
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", fail)
    model = load_onnx_model(proto)
    infos = model.response_infos
    assert list(infos) == ["x", "r", "y"]
    assert infos["r"].shape == (None, 2) and infos["r"].dtype == np.float32
    with pytest.raises(IntroscopeError, match=r"'t' is not a response.*\(2, 2\) and \(2, 3\)"):
        model(["t"])


def _transposed(batch: int, seq: int) -> onnx.ModelProto:
    """(batch, seq, 2) -> Transpose (seq, batch, 2) -> Relu -> Transpose back."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["tx"], perm=[1, 0, 2]),
        helper.make_node("Relu", ["tx"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0, 2]),
    ]
    return _model(nodes, [_info("x", [batch, seq, 2])], [_info("y", [batch, seq, 2])])


def test_fixed_batch_as_long_as_the_sequence() -> None:
    # shapes cannot tell (3, 3, 2) from (3, 3, 2): changing one sample in a dry run does
    model = load_onnx_model(_transposed(3, 3))
    assert list(model.response_infos) == ["x", "y"]
    with pytest.raises(IntroscopeError, match=r"changing only sample 0 changed its other rows"):
        model(["r"])
    x = RNG.normal(size=(7, 3, 2)).astype(np.float32)
    got = model.backend.run_inference({"x": x}, frozenset(["y"]))["y"]
    np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_chunks_whose_tensor_does_not_start_with_the_batch_raise() -> None:
    backend = OnnxBackend(_transposed(2, 3))
    session = backend._factory.make(["tx"])
    x = np.zeros((5, 3, 2), np.float32)
    with pytest.raises(IntroscopeError, match=r"'tx' has shape \(3, 2, 2\) for a chunk of 2"):
        backend._run_in_chunks(session, ["tx"], {"x": x}, 5, 2)


def test_unknown_names_on_the_backend(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "scaled.onnx"
    onnx.save(_transposed(2, 3), str(path))
    backend = OnnxBackend(path, providers=["CPUExecutionProvider"])  # a path, as load_onnx_model
    x = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(IntroscopeError, match=r"unknown response 'yy' \(did you mean 'y'"):
        backend.run_inference({"x": x}, frozenset(["yy"]))
    with pytest.raises(IntroscopeError, match=r"'tx' is not a response"):
        backend.run_inference({"x": x}, frozenset(["tx", "y"]))
    with pytest.raises(TypeError, match="path must be"):
        OnnxBackend(42)


def test_weights_and_constants_say_what_they_are() -> None:
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32(1)))
    nodes = [
        const,
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "c"], ["y"]),
    ]
    model = load_onnx_model(_model(nodes, [_info("x", ["N", 3])], [_info("y", ["N", 2])], [w]))
    assert list(model.response_infos) == ["x", "h", "y"]
    with pytest.raises(IntroscopeError, match=r"'w' is a weight, not computed from the model"):
        model(["w"])
    with pytest.raises(IntroscopeError, match=r"'c' is a Constant node's value"):
        model(["c"])


def test_integer_feeds_that_a_cast_would_change_are_refused() -> None:
    """int64 ids beyond int32 would wrap, and beyond 2**24 would round in float32: an error."""
    from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches

    cast = _model(
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT)],
        [_info("ids", ["N", 3], TensorProto.INT32)],
        [_info("f", ["N", 3])],
    )
    ident = _model(
        [helper.make_node("Identity", ["x"], ["y"])], [_info("x", ["N", 1])], [_info("y", ["N", 1])]
    )

    def run(model, name, x, out):  # noqa: ANN001, ANN202
        batches = producer_from_batches(Batch({name: x}))
        return peek_first_batch(pipeline(batches, model([out])), batch_size=len(x)).fields[out]

    ids = np.array([[1, 2, 3]], np.int64)
    np.testing.assert_array_equal(run(load_onnx_model(cast), "ids", ids, "f"), ids)  # exact
    with pytest.raises(IntroscopeError, match=r"'ids' has int64 values in \[4294967297, .*int32"):
        run(load_onnx_model(cast), "ids", ids + 2**32, "f")
    with pytest.raises(IntroscopeError, match=r"'x' has int64 values in \[16777217, .*float32"):
        run(load_onnx_model(ident), "x", np.array([[2**24 + 1]], np.int64), "y")


def test_element_wise_ops_on_a_graph_input_get_no_channel_axis() -> None:
    """A graph input's layout is unknown (NHWC from TensorFlow, NCHW from PyTorch, or
    (batch, sequence, features)): what an element-wise op computes from it has no channel axis
    until a Conv says which one (axis 1 of an NHWC tensor is a row of pixels, not a channel)."""
    mean = np.array([0.0, 100.0, 0.0], np.float32)
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centered"]),
        helper.make_node("Relu", ["centered"], ["act"]),
        helper.make_node("Transpose", ["act"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["y"]),
    ]
    w = numpy_helper.from_array(RNG.standard_normal((2, 3, 1, 1)).astype(np.float32), "w")
    graph = _model(
        nodes,
        [_info("x", ["N", 8, 8, 3])],
        [_info("y", ["N", 2, 8, 8])],
        [numpy_helper.from_array(mean, "mean"), w],
    )
    axes = {n: i.channel_axis for n, i in load_onnx_model(graph).response_infos.items()}
    assert axes["centered"] is None and axes["act"] is None
    assert axes["conv"] == 1 and axes["y"] == 1


def test_an_onnxruntime_failure_on_a_batch_names_the_batch_and_what_to_check() -> None:
    from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches

    table = numpy_helper.from_array(RNG.standard_normal((10, 2)).astype(np.float32), "table")
    graph = _model(
        [helper.make_node("Gather", ["table", "ids"], ["emb"])],
        [_info("ids", ["N", 3], TensorProto.INT64)],
        [_info("emb", ["N", 3, 2])],
        [table],
    )
    model = load_onnx_model(graph)
    batches = producer_from_batches(Batch({"ids": np.array([[1, 2, 30]], np.int64)}))
    match = r"onnxruntime failed on a batch of 1 sample \(inputs 'ids' int64\[1, 3\]\).*Gather"
    with pytest.raises(IntroscopeError, match=match):
        peek_first_batch(pipeline(batches, model(["emb"])), batch_size=1)
