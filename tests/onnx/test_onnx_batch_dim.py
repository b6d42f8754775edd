"""Only tensors whose dimension 0 is the batch are responses, on torch's legacy ONNX exports.

An LSTM + MultiheadAttention export computes sequence-first tensors (7, N, 6): with a batch of 7
they used to pass the batch-size check and return rows that mix samples. A dry run at load finds
them; a graph exported for a fixed batch size is checked by changing one sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from introscope.base import Batch, pipeline, producer_from_batches  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.onnx import load_onnx_model  # noqa: E402

SEQ = 7


class _Seq(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 6, batch_first=True)
        self.att = torch.nn.MultiheadAttention(6, 2, batch_first=True)
        self.fc = torch.nn.Linear(6, 2)

    def forward(self, x):  # noqa: ANN001, ANN201
        h, _ = self.lstm(x)
        a, _ = self.att(h, h, h)
        return self.fc(torch.relu(a))


def _export(net, x, path, **kwargs) -> None:  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], **kwargs)


@pytest.fixture(scope="module")
def seq_net():  # noqa: ANN201
    torch.manual_seed(0)
    return _Seq().eval()


@pytest.fixture(scope="module")
def dynamic_seq(seq_net, tmp_path_factory):  # noqa: ANN001, ANN201
    path = tmp_path_factory.mktemp("seq") / "seq.onnx"
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    _export(seq_net, torch.rand(2, SEQ, 4), path, output_names=["y"], dynamic_axes=axes)
    return load_onnx_model(path, providers=["CPUExecutionProvider"])


def _torch(net, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_sequence_first_tensors_are_not_responses(dynamic_seq, seq_net) -> None:  # noqa: ANN001
    infos = dynamic_seq.response_infos
    names = [n for n in infos if n != "x"]
    assert names[-1] == "y" and "/Relu_output_0" in names
    assert "/lstm/LSTM_output_0" not in infos and "/att/Gemm_output_0" not in infos
    # the dry run also gives the sizes ONNX shape inference left unknown
    assert infos["/Relu_output_0"].shape == (None, SEQ, 6)
    assert all(info.shape for info in infos.values())
    # with a batch as long as the sequence, every response is still per sample: changing only
    # the last sample changes only the last row
    x = np.random.default_rng(0).random((SEQ, SEQ, 4), dtype=np.float32)
    changed = x.copy()
    changed[-1] += 1
    a = dynamic_seq.backend.run_inference({"x": x}, frozenset(names))
    b = dynamic_seq.backend.run_inference({"x": changed}, frozenset(names))
    for name in names:
        assert a[name].shape[0] == SEQ
        np.testing.assert_array_equal(a[name][:-1], b[name][:-1], err_msg=name)
    np.testing.assert_allclose(a["y"], _torch(seq_net, x), rtol=1e-5, atol=1e-5)
    # and the whole model runs as a pipeline stage (it used to fail on a sequence-first tensor)
    data = producer_from_batches(Batch({"x": x[:3]}))
    batch = next(iter(pipeline(data, dynamic_seq())(3)))
    assert set(batch.fields) == set(infos)


def test_asking_for_a_sequence_first_tensor_says_why(dynamic_seq) -> None:  # noqa: ANN001
    name = "/lstm/LSTM_output_0"
    match = r"'/lstm/LSTM_output_0' is not a response.*\(7, 1, 2, 6\) and \(7, 1, 3, 6\).*"
    match += r"dimension 0 does not follow the batch.*batch_first=True"
    with pytest.raises(IntroscopeError, match=match):
        dynamic_seq([name])
    x = np.zeros((SEQ, SEQ, 4), np.float32)
    with pytest.raises(IntroscopeError, match=r"dimension 0 does not follow the batch"):
        dynamic_seq.backend.run_inference({"x": x}, frozenset([name]))
    with pytest.raises(IntroscopeError, match=r"only from tensor shapes"):
        dynamic_seq(["/lstm/Shape_output_0"])


def test_fixed_batch_export_lists_only_batch_first_tensors(seq_net, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "static3.onnx"
    _export(seq_net, torch.rand(3, SEQ, 4), path, output_names=["y"])
    model = load_onnx_model(path, providers=["CPUExecutionProvider"])
    names = [n for n in model.response_infos if n != "x"]
    assert names[-1] == "y" and "/lstm/LSTM_output_0" not in names
    with pytest.raises(IntroscopeError, match=r"not the batch size 3 the graph was exported for"):
        model(["/lstm/LSTM_output_0"])
    x = np.random.default_rng(1).random((8, SEQ, 4), dtype=np.float32)  # 3 + 3 + 2 (padded)
    out = model.backend.run_inference({"x": x}, frozenset(names))
    assert all(out[n].shape[0] == 8 for n in names)
    np.testing.assert_allclose(out["y"], _torch(seq_net, x), rtol=1e-5, atol=1e-5)


def test_output_batch_symbol_other_than_the_inputs(tmp_path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    path = tmp_path / "symbol.onnx"
    axes = {"x": {0: "batch"}, "logits": {0: "batch_size"}}
    _export(net, torch.rand(2, 3), path, output_names=["logits"], dynamic_axes=axes)
    model = load_onnx_model(path, providers=["CPUExecutionProvider"])
    assert list(model.response_infos)[-1] == "logits"
    assert model.response_infos["logits"].shape == (None, 2)
    x = np.random.default_rng(2).random((5, 3), dtype=np.float32)
    got = model.backend.run_inference({"x": x}, frozenset(["logits"]))["logits"]
    np.testing.assert_allclose(got, _torch(net, x), rtol=1e-5, atol=1e-6)
