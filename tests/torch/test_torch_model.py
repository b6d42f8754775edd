"""The torch adapter: response naming, captured values, modes, devices and bad input."""

import numpy as np
import pytest

from introscope.base import Batch, ResponseInfo, pipeline
from introscope.exceptions import IntroscopeError

torch = pytest.importorskip("torch")
from introscope.torch import load_torch_model_from_memory  # noqa: E402

Kind = ResponseInfo.LayerKind


def run(model, names, x, field="images"):
    batch = Batch({field: x})
    out = list(pipeline(lambda bs: iter([batch]), model(names))(len(x)))
    assert len(out) == 1
    return out[0]


def reference(module, x):
    """Every intermediate of the test Net computed by hand, in eval mode."""
    module.eval()
    with torch.no_grad():
        t = torch.from_numpy(x)
        stem = module.stem(t)
        bn = module.bn(stem)
        act = torch.relu(bn)
        conv = module.block.conv(act)
        relu0 = torch.relu(conv)
        relu1 = torch.relu(relu0 + act)
        seq, _ = module.lstm(relu1.mean(1))
        fc = module.fc(seq[:, -1])
    return {k: v.numpy() for k, v in locals().items() if isinstance(v, torch.Tensor)}


def test_response_names_kinds_and_shapes(net):
    model = load_torch_model_from_memory(net, example_input=np.zeros((3, 1, 8, 8), np.float32))
    infos = model.response_infos
    assert list(infos) == [
        "stem",
        "bn",
        "act",
        "block.conv",
        "block.relu#0",
        "block.relu#1",
        "block",
        "lstm[0]",
        "fc",
        "drop",
        "output",
    ]  # execution order; "unused" never runs; the LSTM's (layers, batch, hidden) state is left out
    assert infos["stem"].layer.kind == Kind.CONV_2D
    assert infos["bn"].layer.kind == Kind.BATCH_NORM_2D
    assert infos["block.relu#1"].layer == ResponseInfo.Layer("block.relu", Kind.RELU, "ReLU")
    assert infos["lstm[0]"].layer.kind == Kind.LSTM
    assert infos["fc"].layer.kind == Kind.LINEAR == Kind.DENSE
    assert infos["drop"].layer.kind == Kind.DROPOUT
    assert infos["block"].layer.typename == "Block"
    assert infos["stem"].shape == (None, 2, 8, 8)
    assert infos["lstm[0]"].shape == (None, 8, 4)
    assert infos["output"].shape == (None, 3)
    assert infos["output"].dtype == np.float32
    assert model.response_infos() is infos  # the seeds call it too
    (inp,) = model.input_layers.values()
    assert (inp.name, inp.shape, inp.dtype, inp.layer.kind) == (
        "x",
        (None, 1, 8, 8),
        np.float32,
        Kind.PLACEHOLDER,
    )


def test_captured_values_equal_direct_computation(net, images):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    names = ["stem", "bn", "act", "block.conv", "block.relu#0", "block.relu#1", "lstm[0]", "fc"]
    out = run(model, names + ["output"], images)
    ref = reference(net, images)
    expected = dict(
        zip(names, [ref[k] for k in ["stem", "bn", "act", "conv", "relu0", "relu1", "seq", "fc"]])
    )
    for name, value in expected.items():
        np.testing.assert_allclose(out.fields[name], value, rtol=1e-6, atol=1e-6, err_msg=name)
    # bn is followed by an in-place ReLU: the capture must predate it
    assert (out.fields["bn"] < 0).any()
    # eval mode: dropout is the identity
    np.testing.assert_allclose(out.fields["output"], ref["fc"], rtol=1e-6, atol=1e-6)
    assert list(out.fields) == names + ["output"]


def test_training_flags_restored_and_input_untouched(net, images):
    net.train()
    net.block.eval()
    model = load_torch_model_from_memory(net, example_input=images[:2])
    x = images.copy()
    run(model, ["output"], x)
    assert (
        net.training and net.bn.training and not net.block.training and not net.block.conv.training
    )
    np.testing.assert_array_equal(x, images)


def test_stops_after_last_requested_response(net, images):
    calls = []
    net.fc.register_forward_hook(lambda *a: calls.append("fc"))
    model = load_torch_model_from_memory(net, example_input=images[:2])
    calls.clear()
    out = run(model, ["stem"], images)
    assert calls == []  # nothing after stem ran
    np.testing.assert_allclose(out.fields["stem"], reference(net, images)["stem"], rtol=1e-6)
    calls.clear()
    run(model, ["stem", "output"], images)
    assert calls == ["fc"]


def test_multi_call_module_has_numbered_responses_only(net, images):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    with pytest.raises(IntroscopeError, match=r"'block\.relu'.*did you mean.*block\.relu#"):
        model(["block.relu"])


def test_unknown_response_lists_close_matches(net, images):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    with pytest.raises(IntroscopeError, match=r"'stemm'.*did you mean 'stem'"):
        model("stemm")


def test_dict_output_and_none_entries():
    from torch_nets import DictHead

    model = load_torch_model_from_memory(DictHead(), example_input=np.zeros((2, 4), np.float32))
    assert list(model.response_infos) == ["lin", "output[logits]", "output[probs]"]
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    out = run(model, ["output[probs]", "lin"], x)
    np.testing.assert_allclose(out.fields["output[probs]"].sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        out.fields["output[probs]"],
        torch.from_numpy(out.fields["lin"].copy()).softmax(-1).numpy(),
        rtol=1e-6,
    )


def test_two_inputs_by_name():
    from torch_nets import TwoInputs

    module = TwoInputs()
    rng = np.random.default_rng(2)
    example = {"right": np.zeros((1, 5), np.float32), "left": np.zeros((1, 3), np.float32)}
    model = load_torch_model_from_memory(module, example_input=example)
    assert list(model.input_layers) == ["left", "right"]
    left, right = (
        rng.normal(size=(4, 3)).astype(np.float32),
        rng.normal(size=(4, 5)).astype(np.float32),
    )
    batch = Batch({"right": right, "left": left})
    (out,) = list(pipeline(lambda bs: iter([batch]), model("output"))(4))
    with torch.no_grad():
        ref = module(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    np.testing.assert_allclose(out.fields["output"], ref, rtol=1e-6)
    bad = Batch({"l": left, "r": right})
    with pytest.raises(IntroscopeError, match=r"expects inputs named \['left', 'right'\]"):
        list(pipeline(lambda bs: iter([bad]), model("output"))(4))


def test_first_batch_dry_run_without_example(net, images):
    model = load_torch_model_from_memory(net)
    infos = model.response_infos  # a view that is filled in by the first batch
    # before any forward pass no name is listed: "block.relu" would be wrong (it runs twice)
    with pytest.raises(IntroscopeError, match=r"known only after it has run once.*example_input"):
        "block.relu" in infos  # noqa: B015
    with pytest.raises(IntroscopeError, match="dry_run"):
        list(model.input_layers)
    out = run(model, ["stem", "block.relu#1"], images)
    assert infos["stem"].shape == (None, 2, 8, 8)  # the earlier view reads the real infos now
    ref = reference(net, images)
    np.testing.assert_allclose(out.fields["block.relu#1"], ref["relu1"], rtol=1e-6, atol=1e-6)
    assert model.response_infos["stem"].shape == (None, 2, 8, 8)
    assert model.input_layers["x"].shape == (None, 1, 8, 8)
    assert "block.relu" not in model.response_infos


def test_backend_names_missing_inputs_before_the_dry_run(net, images):
    backend = load_torch_model_from_memory(net).backend
    with pytest.raises(IntroscopeError, match=r"expects inputs \['x'\] but got \['y'\]"):
        backend.run_inference({"y": images}, frozenset(["stem"]))
    assert not backend.ready


def test_input_dtype_is_converted_within_kind(net, images):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    a = run(model, ["output"], images.astype(np.float64)).fields["output"]
    b = run(model, ["output"], images).fields["output"]
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-6)
    pixels = np.round(images * 255).astype(np.uint8)  # integers into a float net: exact
    np.testing.assert_array_equal(
        run(model, ["output"], pixels).fields["output"],
        run(model, ["output"], pixels.astype(np.float32)).fields["output"],
    )


def test_integer_inputs_that_the_models_dtype_cannot_hold_are_refused():
    ident = torch.nn.Sequential(torch.nn.Identity())
    floats = load_torch_model_from_memory(ident, example_input=torch.ones(2, 2))
    big = np.array([[2**24 + 1, 3], [5, 7]], dtype=np.int64)  # float32 would give 2**24
    with pytest.raises(IntroscopeError, match=r"int64 values in \[3, 16777217\].*float32"):
        run(floats, ["output"], big)
    exact = run(floats, ["output"], big - 2).fields["output"]  # 2**24 - 1 is exact
    assert exact.dtype == np.float32 and exact[0, 0] == 2**24 - 1
    ints = load_torch_model_from_memory(ident, example_input=torch.ones(2, 2, dtype=torch.int64))
    ids = np.array([[2**63 + 5, 1], [2, 3]], dtype=np.uint64)  # would wrap to negative int64
    with pytest.raises(IntroscopeError, match=r"uint64 values.*int64"):
        run(ints, ["output"], ids)
    assert run(ints, ["output"], ids % 100).fields["output"].tolist() == [[13, 1], [2, 3]]


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, 1, 9, 9), np.float32), r"per-element shape \(1, 9, 9\).*\(1, 8, 8\)"),
        (np.array([["a"] * 64] * 2).reshape(2, 1, 8, 8), "must be numeric"),
        (np.zeros((2, 1, 8, 8), np.complex64), "cannot be converted"),
    ],
)
def test_bad_batches(net, images, x, match):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    with pytest.raises(IntroscopeError, match=match):
        run(model, ["stem"], x)


def test_response_without_batch_dimension_is_refused():
    class Weird(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x).T  # (features, batch)

    # (2, 2) on the example of 2 elements: the dry run's second pass (3 elements) shows that
    # dimension 0 is not the batch, so the output is left out, and asking for it says why.
    model = load_torch_model_from_memory(Weird(), example_input=np.zeros((2, 2), np.float32))
    assert "output" not in model.response_infos and "lin" in model.response_infos
    with pytest.raises(IntroscopeError, match=r"shape was \(2, 2\), whose dimension 0 does not"):
        run(model, ["output"], np.zeros((3, 2), np.float32))


def test_two_layer_lstm_state_is_not_taken_for_a_batched_response():
    # nn.LSTM(num_layers=2) returns h and c of shape (2, batch, hidden): on a dry run of 2
    # elements their dimension 0 looks like the batch.
    class Seq(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(5, 2)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    x = np.random.default_rng(0).standard_normal((8, 6, 3)).astype(np.float32)
    model = load_torch_model_from_memory(Seq(), example_input=x[:2])
    assert list(model.response_infos) == ["lstm[0]", "fc", "output"]
    assert run(model, ["lstm[0]", "fc"], x).fields["fc"].shape == (8, 2)


def test_module_error_is_wrapped(images):
    model = load_torch_model_from_memory(torch.nn.Linear(4, 2))
    with pytest.raises(
        IntroscopeError, match=r"Linear failed on inputs \(input: \(5, 1, 8, 8\) float32\)"
    ):
        run(model, ["output"], images)


def test_cuda_without_cuda_and_bad_device(net):
    if not torch.cuda.is_available():
        with pytest.raises(IntroscopeError, match="CUDA is not available"):
            load_torch_model_from_memory(net, device="cuda")
    with pytest.raises(IntroscopeError, match="device must be a torch device"):
        load_torch_model_from_memory(net, device="gpu-please")


def test_not_a_module():
    with pytest.raises(IntroscopeError, match="needs a torch.nn.Module"):
        load_torch_model_from_memory(lambda x: x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(net, images):  # pragma: no cover - no GPU on the CI machine
    cpu = run(load_torch_model_from_memory(net, example_input=images[:2]), ["bn", "output"], images)
    model = load_torch_model_from_memory(net, example_input=images[:2], device="cuda")
    gpu = run(model, ["bn", "output"], images)
    for name in ("bn", "output"):
        np.testing.assert_allclose(gpu.fields[name], cpu.fields[name], rtol=1e-4, atol=1e-5)


def test_conv_responses_record_channels_first(net, images):
    model = load_torch_model_from_memory(net, example_input=images[:2])
    axes = {name: info.channel_axis for name, info in model.response_infos.items()}
    kinds = {name: info.layer.kind for name, info in model.response_infos.items()}
    convs = [n for n, k in kinds.items() if k == ResponseInfo.LayerKind.CONV_2D]
    assert convs and all(axes[n] == 1 for n in convs)
    dense = [n for n, k in kinds.items() if k == ResponseInfo.LayerKind.DENSE]
    assert dense and all(axes[n] is None for n in dense)


def test_a_module_on_a_sequence_input_gets_no_channel_axis() -> None:
    """(batch, time, features) computed from the input: no guessed channel axis (it was 1, the
    time axis); rank-4 inputs stay NCHW, and Conv1d outputs are channels-first."""
    import torch

    class Seq(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = torch.nn.Parameter(torch.zeros(5, 4))
            self.relu = torch.nn.ReLU()
            self.conv = torch.nn.Conv1d(5, 3, 1)
            self.relu_c = torch.nn.ReLU()

        def forward(self, x):  # noqa: ANN001, ANN201
            h = self.relu(x + self.pos)
            return self.relu_c(self.conv(h))

    class Img(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = torch.nn.ReLU()

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.relu(x - 0.5)

    seq = load_torch_model_from_memory(Seq(), example_input=torch.zeros(2, 5, 4))
    axes = {n: i.channel_axis for n, i in seq.response_infos.items()}
    assert axes["relu"] is None and axes["conv"] == 1 and axes["relu_c"] == 1
    img = load_torch_model_from_memory(Img(), example_input=torch.zeros(2, 3, 4, 4))
    assert img.response_infos["relu"].channel_axis == 1

    class Chomp(torch.nn.Module):  # a TCN's trim: a new rank-3 shape after a Conv1d
        def forward(self, x):  # noqa: ANN001, ANN201
            return x[:, :, :-2]

    tcn = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, padding=2), Chomp(), torch.nn.ReLU())
    tcn_axes = load_torch_model_from_memory(tcn, example_input=torch.zeros(2, 4, 16))
    assert [i.channel_axis for i in tcn_axes.response_infos.values()][1:] == [1, 1, 1]

    # The monitor follows the same layouts: no channel view for the sequence ReLU.
    from introscope.introspectors import IUA

    with IUA.monitor(Seq(), ["relu", "relu_c"]) as mon:
        mon._model(torch.rand(3, 5, 4))
    assert set(mon.result.channel_results) == {"relu_c"}
