"""Torch adapter edge cases: train-mode models, non-contiguous outputs, integer token inputs."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch, ResponseInfo, pipeline

torch = pytest.importorskip("torch")

from introscope.torch import load_torch_model_from_memory  # noqa: E402


def _collect(model, names, x, batch_size=4):
    def producer(bs):
        for i in range(0, len(x), bs):
            yield Batch({"x": x[i : i + bs]})

    out = {n: [] for n in names}
    for batch in pipeline(producer, model(names))(batch_size):
        for n in names:
            out[n].append(batch.fields[n])
    return {n: np.concatenate(v) for n, v in out.items()}


def test_train_mode_model_gives_eval_responses_and_keeps_its_statistics() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(8, 3),
    )
    with torch.no_grad():  # non-trivial running statistics
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((10, 5)).astype(np.float32)
    got = _collect(load_torch_model_from_memory(net), ["1", "3", "output"], x)
    assert net.training and all(m.training for m in net)
    for k, v in net.state_dict().items():  # running stats and batch counter untouched
        assert torch.equal(v, before[k]), k
    net.eval()
    with torch.no_grad():
        t = torch.from_numpy(x)
        bn = net[1](net[0](t))
        ref = net(t)

    # Eval-mode responses: batch statistics or an active dropout would differ by O(1). Not
    # bit for bit: the adapter runs batches of 4, and a CPU's kernels for 4 and 10 rows may
    # round a float32 product differently (one ulp on an Intel Xeon).
    def same(a: np.ndarray, b: torch.Tensor) -> None:
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)

    same(got["1"], bn)
    same(got["3"], torch.relu(bn))  # dropout is the identity
    same(got["output"], ref)


class _Permute(torch.nn.Module):
    def forward(self, x):  # noqa: ANN001, ANN201
        return x.permute(0, 2, 3, 1)[:, ::2]  # a strided, non-contiguous view


class _ViewNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)
        self.perm = _Permute()

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.perm(self.conv(x))


def test_non_contiguous_outputs_are_captured_exactly() -> None:
    from introscope.introspectors import IUA

    torch.manual_seed(1)
    net = _ViewNet()
    x = np.random.default_rng(1).standard_normal((6, 2, 4, 5)).astype(np.float32)
    model = load_torch_model_from_memory(net, example_input=x[:2])
    assert model.response_infos["perm"].shape == (None, 2, 5, 3)
    got = _collect(model, ["perm"], x)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got["perm"], ref)
    iua = IUA.introspect(pipeline(lambda bs: iter([Batch({"p": got["perm"]})])), batch_size=6)
    flat = np.abs(ref.reshape(6, -1)) <= 1e-8
    np.testing.assert_array_equal(iua.results["p"].inactive, flat.sum(1))


class _Tokens(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, ids):  # noqa: ANN001, ANN201
        return self.fc(self.emb(ids).mean(1))


def test_int64_token_ids_feed_an_embedding() -> None:
    torch.manual_seed(2)
    net = _Tokens()
    ids = np.random.default_rng(2).integers(0, 10, (7, 3))
    model = load_torch_model_from_memory(net)
    got = _collect(model, ["emb", "output"], ids)
    with torch.no_grad():
        emb = net.emb(torch.from_numpy(ids)).numpy()
        ref = net(torch.from_numpy(ids)).numpy()
    assert model.input_layers["ids"].dtype == np.int64
    np.testing.assert_array_equal(got["emb"], emb)
    np.testing.assert_array_equal(got["output"], ref)
    # int32 ids after an int64 first batch are converted within the integer kind
    got32 = _collect(model, ["output"], ids.astype(np.int32))
    np.testing.assert_array_equal(got32["output"], ref)


def test_bfloat16_model_gets_its_inputs_in_bfloat16() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    net = net.to(torch.bfloat16).eval()
    x = np.random.default_rng(0).standard_normal((6, 3, 6, 6)).astype(np.float32)
    model = load_torch_model_from_memory(net, example_input=x[:2])
    got = _collect(model, ["1"], x)["1"]
    with torch.no_grad():
        want = net[:2](torch.from_numpy(x).to(torch.bfloat16)).float().numpy()
    assert got.dtype == np.float32  # numpy has no bfloat16: responses come as float32
    np.testing.assert_array_equal(got, want)


def test_scripted_submodule_that_already_ran_with_autograd_still_runs() -> None:
    # TorchScript specialises its graph while autograd is on; inference_mode then fails in
    # the interpreter ("Inference tensors cannot be saved for backward"): no_grad is used.
    inner = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()))
    net = torch.nn.Sequential(inner, torch.nn.Linear(4, 2))
    warm = torch.randn(3, 4, requires_grad=True)
    for _ in range(2):
        net(warm).sum().backward()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    model = load_torch_model_from_memory(net, example_input=x[:2])
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_collect(model, ["output"], x)["output"], want, rtol=1e-6)


def test_meta_device_model_is_refused_with_a_clear_error() -> None:
    from introscope.exceptions import IntroscopeError
    from introscope.introspectors import IUA

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).to("meta")
    with pytest.raises(IntroscopeError, match="'meta' device, which hold no data"):
        load_torch_model_from_memory(net, example_input=np.zeros((2, 4), np.float32))
    with pytest.raises(IntroscopeError, match="IUA.monitor: module '1' returned a tensor on"):
        with IUA.monitor(net):
            net(torch.zeros(2, 4, device="meta"))


def test_a_compiled_model_keeps_the_names_of_the_original() -> None:
    from introscope.introspectors import IUA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval()
    compiled = torch.compile(net, backend="eager")
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    model = load_torch_model_from_memory(compiled, example_input=x[:2])
    assert list(model.response_infos) == ["0", "1", "output"]  # not "_orig_mod.0", ...
    np.testing.assert_allclose(
        _collect(model, ["1"], x)["1"], net(torch.from_numpy(x)).detach().numpy(), rtol=1e-6
    )
    with IUA.monitor(compiled, ["1"]) as mon, torch.no_grad():
        compiled(torch.from_numpy(x))
    assert mon.result.results["1"].num_samples == 6


def test_a_module_that_caches_a_tensor_can_be_trained_after_introspection() -> None:
    # A cache built during a forward (a rotary table, a mask) must not be an inference tensor,
    # or the next training step fails ("Inference tensors cannot be saved for backward").
    class Cached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.table = None

        def forward(self, x):  # noqa: ANN001, ANN201
            if self.table is None:
                self.table = torch.linspace(0.0, 1.0, 4)
            return torch.relu(self.fc(x) * self.table)

    net = Cached()
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)
    model = load_torch_model_from_memory(net, example_input=x[:2])
    _collect(model, ["fc"], x)
    net.train()
    net(torch.from_numpy(x)).sum().backward()  # raised before
    assert net.fc.weight.grad is not None


def test_embedding_outputs_are_features_last() -> None:
    # (N, L, D) from nn.Embedding: D embedding dimensions, L positions (not channels-first).
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(20, 6)
            self.act = torch.nn.ReLU()

        def forward(self, t):  # noqa: ANN001, ANN201
            return self.act(self.emb(t)).mean(1)

    tokens = np.random.default_rng(0).integers(0, 20, (4, 11)).astype(np.int64)
    model = load_torch_model_from_memory(Net(), example_input=tokens[:2])
    assert model.response_infos["emb"].channel_axis == -1
    assert model.response_infos["act"].channel_axis == -1
    assert model.response_infos["emb"].layer.kind is ResponseInfo.LayerKind.EMBEDDING


def test_namedtuple_outputs_are_named_by_field_and_packed_sequences_give_no_response() -> None:
    import collections

    Out = collections.namedtuple("Out", ["logits", "feats"])
    pack = torch.nn.utils.rnn.pack_padded_sequence

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4, batch_first=True)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):  # noqa: ANN001, ANN201
            packed, h = self.rnn(pack(x, [x.shape[1]] * x.shape[0], batch_first=True))
            return Out(self.fc(h[-1]), h[-1])

    x = np.random.default_rng(0).standard_normal((5, 6, 3)).astype(np.float32)
    model = load_torch_model_from_memory(Net(), example_input=x[:2])
    names = list(model.response_infos)
    assert "output[logits]" in names and "output[feats]" in names
    assert not any(n.startswith("rnn[0]") for n in names)  # the PackedSequence
    got = _collect(model, ["output[logits]"], x)["output[logits]"]
    assert got.shape == (5, 2)


def test_responses_are_listed_in_the_order_the_calls_ran() -> None:
    # A shared module's calls stay where they ran (as the monitors list them), not grouped.
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = torch.nn.ReLU()
            self.a = torch.nn.Linear(3, 4)
            self.b = torch.nn.Linear(4, 2)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.act(self.b(self.act(self.a(x))))

    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    model = load_torch_model_from_memory(Shared(), example_input=x[:2])
    names = [n for n in model.response_infos if n != "x"]
    assert names == ["a", "act#0", "b", "act#1", "output"]
