"""An ONNX graph with two inputs: fed by field name, in any field order."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from introscope.base import Batch, pipeline  # noqa: E402
from introscope.onnx import load_onnx_model  # noqa: E402

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def test_two_inputs_by_name_in_any_order(tmp_path) -> None:
    rng = np.random.default_rng(5)
    wa = rng.standard_normal((4, 6)).astype(np.float32)
    wb = rng.standard_normal((3, 6)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "wa"], ["ax"], name="a"),
            helper.make_node("MatMul", ["y", "wb"], ["by"], name="b"),
            helper.make_node("Add", ["ax", "by"], ["sum"], name="add"),
            helper.make_node("Relu", ["sum"], ["out"], name="relu"),
        ],
        "two",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 6])],
        [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = load_onnx_model(path)
    assert sorted(model.input_layers) == ["x", "y"]
    x = rng.standard_normal((7, 4)).astype(np.float32)
    y = rng.standard_normal((7, 3)).astype(np.float32)
    ref = np.maximum(x @ wa + y @ wb, 0)
    for order in (("x", "y"), ("y", "x")):
        arrays = {"x": x, "y": y}

        def producer(bs, order=order, arrays=arrays):
            for i in range(0, 7, bs):
                yield Batch({k: arrays[k][i : i + bs] for k in order})

        got = np.concatenate([b.fields["out"] for b in pipeline(producer, model(["out"]))(3)])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)

    def wrong(bs):
        yield Batch({"x": x, "z": y})

    with pytest.raises(Exception, match="x.*y"):
        list(pipeline(wrong, model(["out"]))(3))
