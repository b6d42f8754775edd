"""What a new user feeds a PyTorch model: float64 and integer data, names before the first run,
the channel layout of activations (issue: models and data as a new user brings them)."""

import numpy as np
import pytest

from introscope.base import ResponseInfo, pipeline
from introscope.exceptions import IntroscopeError
from introscope.processors import Transposer
from introscope.samples import StubImageDataset

torch = pytest.importorskip("torch")
nn = torch.nn

from introscope.introspectors import IUA  # noqa: E402
from introscope.torch import load_torch_model_from_memory  # noqa: E402


def _cnn(in_channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
        nn.ReLU(),
    )


class _Seq(nn.Module):
    """Embedding -> Linear on (N, L, D) -> GELU: features are the last axis."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 5)
        self.act = nn.GELU()

    def forward(self, tokens):
        return self.act(self.proj(self.emb(tokens)))


def test_float64_data_is_fed_to_a_float32_module_as_float32(rng):
    net = _cnn()
    x = rng.normal(size=(4, 3, 6, 6))  # float64, as numpy and scikit-learn give
    model = load_torch_model_from_memory(net)
    (batch,) = list(pipeline(lambda bs: iter([_batch(x)]), model(["output"]))(4))
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(batch.fields["output"], ref, rtol=1e-6, atol=1e-7)
    assert model.input_layers["input"].dtype == np.float32


def test_float64_example_input_and_later_float64_batches(rng):
    net = _cnn()
    x = rng.normal(size=(3, 3, 6, 6))
    model = load_torch_model_from_memory(net, example_input=x[:2])
    (batch,) = list(pipeline(lambda bs: iter([_batch(x)]), model(["0"]))(3))
    assert batch.fields["0"].dtype == np.float32


def test_cast_inputs_false_feeds_data_unchanged(rng):
    net = _cnn()
    x = rng.normal(size=(2, 3, 6, 6))
    with pytest.raises(IntroscopeError, match=r"float64|double"):
        load_torch_model_from_memory(net, example_input=x, cast_inputs=False)
    net64 = _cnn().double()  # a float64 module keeps float64 data with or without casting
    model = load_torch_model_from_memory(net64, example_input=x.astype(np.float32))
    (batch,) = list(pipeline(lambda bs: iter([_batch(x)]), model(["output"]))(2))
    assert batch.fields["output"].dtype == np.float64


def test_integer_inputs_stay_integer_and_a_failure_says_to_cast(rng):
    tokens = rng.integers(0, 10, size=(3, 7))
    model = load_torch_model_from_memory(_Seq(), example_input=tokens)
    assert model.input_layers["tokens"].dtype == np.int64
    (batch,) = list(pipeline(lambda bs: iter([_batch(tokens, "tokens")]), model(["act"]))(3))
    assert batch.fields["act"].shape == (3, 7, 5)
    ints = rng.integers(0, 3, size=(2, 3, 6, 6))  # integer images into a conv net
    with pytest.raises(IntroscopeError, match=r"integer inputs \(input\).*astype\(np.float32\)"):
        load_torch_model_from_memory(_cnn(), example_input=ints)


def test_names_are_not_listed_before_the_module_has_run():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.r = nn.ReLU()

        def forward(self, x):
            return self.r(self.r(x) - 1)

    model = load_torch_model_from_memory(Twice())
    with pytest.raises(IntroscopeError, match="example_input="):
        list(model.response_infos)
    model.dry_run(np.zeros((2, 3, 4, 4), dtype=np.float32))
    assert [n for n in model.response_infos] == ["r#0", "r#1", "output"]
    info = model.response_infos["r#0"]
    assert info.shape == (None, 3, 4, 4) and info.channel_axis == 1


def test_dry_run_on_a_producer_uses_its_first_batch(rng):
    x = rng.normal(size=(5, 3, 6, 6)).astype(np.float32)
    model = load_torch_model_from_memory(_cnn())
    model.dry_run(lambda bs: iter([_batch(x[:bs])]))
    assert model.response_infos["3"].shape == (None, 6, 6, 6)


def test_activations_get_the_channel_layout_of_what_they_follow(rng):
    model = load_torch_model_from_memory(_cnn(), example_input=np.zeros((2, 3, 6, 6), np.float32))
    axes = {n: i.channel_axis for n, i in model.response_infos.items()}
    # conv -> ReLU, conv -> BN -> ReLU: channels first; after Flatten/Linear: no positions
    assert axes["0"] == 1 and axes["1"] == 1 and axes["3"] == 1 and axes["4"] == 1
    assert axes["7"] is None and axes["8"] is None
    seq = load_torch_model_from_memory(_Seq(), example_input=rng.integers(0, 10, size=(2, 4)))
    seq_axes = {n: i.channel_axis for n, i in seq.response_infos.items()}
    assert seq_axes["proj"] == -1 and seq_axes["act"] == -1  # (N, L, D): features last


def test_seed_snippets_on_a_torch_model_fed_stub_images():
    """The seed's IUA snippet, on StubImageDataset's float64 NHWC images and a torch CNN."""
    dataset = pipeline(
        StubImageDataset(24, image_width=6, image_height=6), Transposer(dim=(0, 3, 1, 2))
    )
    dnikit_model = load_torch_model_from_memory(_cnn()).dry_run(dataset)

    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    relus = [i.name for i in response_infos.values() if i.layer.kind == ResponseInfo.LayerKind.RELU]
    producer = pipeline(dataset, dnikit_model(conv_response_names + relus))
    iua = IUA.introspect(producer, batch_size=128, response_infos=dnikit_model.response_infos)
    assert conv_response_names == ["0", "2"]
    # the ReLUs after convolutions get the per-channel view from their recorded layout
    x = np.concatenate([b.fields["images"] for b in dataset(24)]).astype(np.float32)
    with torch.no_grad():
        act = _cnn()[:2].eval()(torch.from_numpy(x)).numpy()
    expected = np.isclose(act, 0, rtol=1e-5, atol=1e-8).sum(axis=0)
    np.testing.assert_array_equal(
        np.asarray(iua.results["1"].unit_inactive_count).reshape(expected.shape), expected
    )
    assert response_infos["1"].channel_axis == 1


def _batch(x, name="input"):
    from introscope.base import Batch

    return Batch({name: x})
