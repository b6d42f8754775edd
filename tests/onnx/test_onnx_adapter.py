"""The ONNX adapter on small graphs built with ``onnx.helper`` (numbers checked against numpy)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from introscope.base import Batch, ResponseInfo, pipeline  # noqa: E402
from introscope.exceptions import IntroscopeError, MissingDependencyError  # noqa: E402
from introscope.onnx import load_onnx_model  # noqa: E402

Kind = ResponseInfo.LayerKind
TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper
RNG = np.random.default_rng(3)
W_CONV = RNG.normal(size=(4, 2, 3, 3)).astype(np.float32)
B_CONV = np.array([0.1, -0.2, -100.0, 0.3], dtype=np.float32)
W_FC = RNG.normal(size=(4, 3)).astype(np.float32)


def _cnn(batch: int | str = "N") -> onnx.ModelProto:
    """x (batch, 2, 6, 6) -> Conv -> Relu -> Clip(0, 6) -> GlobalAveragePool -> Reshape -> MatMul.

    The Reshape target comes from Shape/Gather/Concat on the data: bookkeeping, not responses.
    """
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu1"),
        helper.make_node("Clip", ["relu", "zero", "six"], ["relu6"], name="clip1"),
        helper.make_node("GlobalAveragePool", ["relu6"], ["gap"], name="gap"),
        helper.make_node("Shape", ["gap"], ["gap_shape"], name="shape"),
        helper.make_node("Gather", ["gap_shape", "idx0"], ["n"], name="gather", axis=0),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["gap", "target"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "wfc"], ["logits"], name="fc"),
    ]
    inits = [
        numpy_helper.from_array(W_CONV, "w"),
        numpy_helper.from_array(B_CONV, "b"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
        numpy_helper.from_array(np.array([0], np.int64), "idx0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(W_FC, "wfc"),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_reference(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, W_CONV) + B_CONV[None, :, None, None]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("m") / "cnn.onnx"
    onnx.save(_cnn(), str(path))
    return path


@pytest.fixture(scope="module")
def model(model_path: pathlib.Path):  # noqa: ANN201
    return load_onnx_model(model_path)


def _producer(x: np.ndarray, field: str = "pixels"):  # noqa: ANN202
    def produce(batch_size: int):  # noqa: ANN202
        for start in range(0, len(x), batch_size):
            yield Batch({field: x[start : start + batch_size]})

    return produce


def test_response_infos_names_kinds_shapes(model) -> None:  # noqa: ANN001
    infos = model.response_infos
    assert list(infos) == ["x", "conv", "relu", "relu6", "gap", "flat", "logits"]
    kinds = {name: info.layer.kind for name, info in infos.items()}
    assert kinds == {
        "x": Kind.PLACEHOLDER,
        "conv": Kind.CONV_2D,
        "relu": Kind.RELU,
        "relu6": Kind.RELU6,
        "gap": Kind.AVERAGE_POOLING_2D,
        "flat": Kind.UNKNOWN,
        "logits": Kind.DENSE,
    }
    assert infos["conv"].shape == (None, 4, 6, 6)
    assert infos["gap"].shape == (None, 4, 1, 1)
    assert infos["logits"].shape == (None, 3)
    assert infos["conv"].dtype == np.float32
    assert infos["conv"].layer.name == "conv1" and infos["conv"].layer.typename == "Conv"
    assert list(model.input_layers) == ["x"]
    # ONNX is channels-first: convolution-like responses and the activations computed from
    # them record axis 1; the flattened and dense outputs have no positions
    axes = {name: info.channel_axis for name, info in infos.items()}
    assert axes["conv"] == axes["gap"] == axes["relu"] == axes["relu6"] == 1
    assert axes["flat"] is None and axes["logits"] is None
    # Shape bookkeeping (Shape -> Gather -> Concat) is not a response.
    assert not {"gap_shape", "n", "target"} & set(infos)


def test_seed_snippet_and_numbers(model) -> None:  # noqa: ANN001
    x = RNG.normal(size=(7, 2, 6, 6))  # float64: cast to the graph's float32
    dnikit_model = model
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    producer = pipeline(_producer(x), dnikit_model(conv_response_names))
    batches = list(producer(3))
    assert [b.batch_size for b in batches] == [3, 3, 1]
    conv = np.concatenate([b.fields["conv"] for b in batches])
    assert set(batches[0].fields) == {"conv"}
    np.testing.assert_allclose(conv, _conv_reference(x.astype(np.float32)), rtol=1e-4, atol=1e-4)


def test_intermediate_and_final_outputs_agree_with_numpy(model) -> None:  # noqa: ANN001
    x = RNG.normal(size=(5, 2, 6, 6)).astype(np.float32)
    out = model.backend.run_inference({"x": x}, frozenset(["relu6", "logits", "x"]))
    relu6 = np.clip(_conv_reference(x), 0, 6)
    np.testing.assert_allclose(out["relu6"], relu6, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["logits"], relu6.mean(axis=(2, 3)) @ W_FC, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out["x"], x)
    assert (out["relu6"][:, 2] == 0).all()  # the -100 bias kills channel 2


def test_sessions_cached_per_requested_set(model_path: pathlib.Path) -> None:
    m = load_onnx_model(model_path)
    x = RNG.normal(size=(2, 2, 6, 6)).astype(np.float32)
    first = m.backend.run_inference({"x": x}, frozenset(["conv"]))["conv"]
    m.backend.run_inference({"x": x}, frozenset(["conv", "gap"]))
    again = m.backend.run_inference({"x": x}, frozenset(["conv"]))["conv"]
    np.testing.assert_array_equal(first, again)
    assert len(m.backend._sessions) == 2
    for names in (["relu"], ["relu6"], ["gap"], ["flat"], ["logits"]):
        m.backend.run_inference({"x": x}, frozenset(names))
    assert len(m.backend._sessions) == 4  # bounded


def test_fixed_batch_graph_runs_any_batch_size(tmp_path: pathlib.Path, model) -> None:  # noqa: ANN001
    path = tmp_path / "b2.onnx"
    onnx.save(_cnn(batch=2), str(path))
    fixed = load_onnx_model(path)
    assert fixed.response_infos["conv"].shape == (None, 4, 6, 6)
    x = RNG.normal(size=(5, 2, 6, 6)).astype(np.float32)
    got = fixed.backend.run_inference({"x": x}, frozenset(["logits"]))["logits"]
    want = model.backend.run_inference({"x": x}, frozenset(["logits"]))["logits"]
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_model_proto_accepted(model) -> None:  # noqa: ANN001
    from_proto = load_onnx_model(_cnn())
    assert list(from_proto.response_infos) == list(model.response_infos)


def test_unknown_response_lists_close_matches(model) -> None:  # noqa: ANN001
    with pytest.raises(IntroscopeError, match=r"'rellu'.*did you mean 'relu'"):
        model(["rellu"])


def test_field_with_wrong_shape(model) -> None:  # noqa: ANN001
    producer = pipeline(_producer(np.zeros((2, 3, 6, 6), np.float32)), model("conv"))
    with pytest.raises(IntroscopeError, match=r"'pixels'.*\(3, 6, 6\).*'x' expects \(2, 6, 6\)"):
        list(producer(2))
    # Named like the input, the shape is still checked (by the backend).
    producer = pipeline(_producer(np.zeros((2, 2, 5, 6), np.float32), "x"), model("conv"))
    with pytest.raises(IntroscopeError, match=r"input 'x' has shape \(2, 2, 5, 6\)"):
        list(producer(2))


def test_field_names_must_match_for_several_fields(model) -> None:  # noqa: ANN001
    def produce(batch_size: int):  # noqa: ANN202
        yield Batch({"a": np.zeros((1, 2, 6, 6)), "b": np.zeros((1, 2, 6, 6))})

    with pytest.raises(IntroscopeError, match=r"expects inputs named \['x'\].*\['a', 'b'\]"):
        list(pipeline(produce, model("conv"))(1))


def test_non_numeric_input(model) -> None:  # noqa: ANN001
    strings = np.full((2, 2, 6, 6), "a")
    with pytest.raises(IntroscopeError, match="must be numeric"):
        list(pipeline(_producer(strings, "x"), model("conv"))(2))
    with pytest.raises(IntroscopeError, match="input 'x' has dtype complex128"):
        model.backend.run_inference({"x": np.zeros((1, 2, 6, 6), complex)}, frozenset(["conv"]))


def test_missing_and_invalid_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(IntroscopeError, match="does not exist"):
        load_onnx_model(tmp_path / "nope.onnx")
    with pytest.raises(IntroscopeError, match="is not a file"):
        load_onnx_model(tmp_path)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff\x13")
    with pytest.raises(IntroscopeError, match="junk.onnx"):
        load_onnx_model(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(IntroscopeError, match="not an ONNX model"):
        load_onnx_model(empty)
    with pytest.raises(TypeError, match="path must be"):
        load_onnx_model(42)


def test_missing_onnxruntime_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, model_path: pathlib.Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"introscope\[onnx\]"):
        load_onnx_model(model_path)


def test_import_does_not_load_onnx() -> None:
    code = "import sys, introscope.onnx; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_tensors_not_batch_first_are_not_responses() -> None:
    # (N, seq, 3) -> transpose to (seq, N, 3) -> Relu -> back to (N, seq, 3)
    nodes = [
        helper.make_node("Transpose", ["x"], ["tx"], perm=[1, 0, 2]),
        helper.make_node("Relu", ["tx"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[1, 0, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "seq", 3])],
    )
    m = load_onnx_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert list(m.response_infos) == ["x", "y"]
    x = RNG.normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        m.backend.run_inference({"x": x}, frozenset(["y"]))["y"], np.maximum(x, 0)
    )


def test_node_kinds_by_op_and_rank() -> None:
    from introscope.onnx._kinds import node_kind

    w1 = {"w": np.zeros((4, 2, 3))}
    cases = [
        (helper.make_node("Conv", ["x", "w"], ["y"]), 3, w1, Kind.CONV_1D),
        (helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1, 1]), 5, {}, Kind.CONV_3D),
        (helper.make_node("ConvTranspose", ["x", "v"], ["y"]), 4, {}, Kind.CONV_TRANSPOSE_2D),
        (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2]), 3, {}, Kind.MAX_POOLING_1D),
        (helper.make_node("GlobalAveragePool", ["x"], ["y"]), 5, {}, Kind.AVERAGE_POOLING_3D),
        (helper.make_node("BatchNormalization", list("xsbmv"), ["y"]), 2, {}, Kind.BATCH_NORM),
        (helper.make_node("BatchNormalization", list("xsbmv"), ["y"]), 4, {}, Kind.BATCH_NORM_2D),
        (helper.make_node("MatMul", ["x", "w"], ["y"]), 2, w1, Kind.DENSE),
        (helper.make_node("MatMul", ["q", "k"], ["y"]), 3, {}, Kind.UNKNOWN),
        (helper.make_node("Clip", ["x", "lo"], ["y"]), 2, {"lo": np.float32(0)}, Kind.RELU),
        (helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), 2, {}, Kind.UNKNOWN),
        (helper.make_node("LSTM", ["x", "w", "r"], ["y"]), 4, {}, Kind.LSTM),
        (helper.make_node("Add", ["x", "z"], ["y"]), 2, {}, Kind.UNKNOWN),
    ]
    for node, rank, constants, kind in cases:
        assert node_kind(node, rank, constants) == kind, node.op_type
