"""One small CNN through the PyTorch, ONNX and Keras 3 adapters: IUA must agree on every unit.

The network is defined in PyTorch, exported with ``torch.onnx.export`` and rebuilt in Keras 3
(channels-last, the Keras default) with the same weights. Unit mapping between layouts:

* PyTorch and ONNX responses of conv layers are NCHW, so their units have shape (C, H, W);
  Keras' are NHWC, units (H, W, C). Unit (c, h, w) of PyTorch is unit (h, w, c) of Keras, so
  ``keras_counts.transpose(2, 0, 1)`` must equal the PyTorch counts element for element.
* Conv kernels map as ``torch (out, in, kh, kw) -> keras (kh, kw, in, out)``; dense kernels as
  ``torch (out, in) -> keras (in, out)``. Global average pooling before the dense layers keeps
  the dense units in the same order in both layouts (a Flatten of NCHW vs NHWC would not).
* Per-sample inactive counts and per-channel counts do not depend on the layout.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from introscope.base import Batch, ResponseInfo, pipeline  # noqa: E402
from introscope.introspectors import IUA  # noqa: E402
from introscope.onnx import load_onnx_model  # noqa: E402
from introscope.tensorflow import load_tf_model_from_memory  # noqa: E402
from introscope.tensorflow._keras import import_keras  # noqa: E402
from introscope.torch import load_torch_model_from_memory  # noqa: E402

N_SAMPLES = 12
# (torch module path, keras layer name, onnx node name): the responses compared
CONV_LAYERS = [("0", "conv1", "/0/Conv"), ("3", "conv2", "/3/Conv")]
OTHER_LAYERS = [("1", "relu1", "/1/Relu"), ("4", "relu2", "/4/Relu"), ("8", "relu3", "/8/Relu")]


def _torch_net() -> torch.nn.Module:
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),  # 0
        nn.ReLU(),  # 1
        nn.MaxPool2d(2),  # 2
        nn.Conv2d(6, 8, 3),  # 3
        nn.ReLU(),  # 4
        nn.AdaptiveAvgPool2d(1),  # 5
        nn.Flatten(),  # 6
        nn.Linear(8, 5),  # 7
        nn.ReLU(),  # 8
        nn.Linear(5, 3),  # 9
    ).eval()
    with torch.no_grad():
        # Dead units by construction, so the counts compared are not all zero.
        net[0].bias[0] = -50.0
        net[3].bias[2] = -50.0
        net[7].bias[1] = -50.0
    return net


def _keras_net(net: torch.nn.Module):  # noqa: ANN202
    keras = import_keras()
    layers = keras.layers
    inp = keras.Input((10, 10, 3), name="images")
    x = layers.Conv2D(6, 3, padding="same", name="conv1")(inp)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(8, 3, padding="valid", name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(5, name="fc1")(x)
    x = layers.ReLU(name="relu3")(x)
    out = layers.Dense(3, name="fc2")(x)
    model = keras.Model(inp, out)

    def np_(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    for name, index in (("conv1", 0), ("conv2", 3)):
        conv = net[index]
        model.get_layer(name).set_weights([np_(conv.weight).transpose(2, 3, 1, 0), np_(conv.bias)])
    for name, index in (("fc1", 7), ("fc2", 9)):
        linear = net[index]
        model.get_layer(name).set_weights([np_(linear.weight).T, np_(linear.bias)])
    return model


def _producer(images: np.ndarray):  # noqa: ANN202
    def produce(batch_size: int):  # noqa: ANN202
        for start in range(0, len(images), batch_size):
            yield Batch({"images": images[start : start + batch_size]})

    return produce


def _conv_names(dnikit_model) -> list[str]:  # noqa: ANN001
    # The seed's selection snippet, as written.
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    return conv_response_names


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(7)
    images_nchw = rng.normal(size=(N_SAMPLES, 3, 10, 10)).astype(np.float32)
    net = _torch_net()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) takes ~0.2 s here; the dynamo exporter ~5 s.
        torch.onnx.export(
            net,
            (torch.from_numpy(images_nchw[:2]),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}},
            dynamo=False,
        )
    return {
        "images_nchw": images_nchw,
        "images_nhwc": np.ascontiguousarray(images_nchw.transpose(0, 2, 3, 1)),
        "torch": load_torch_model_from_memory(net, example_input=images_nchw[:2]),
        "onnx": load_onnx_model(path),
        "keras": load_tf_model_from_memory(model=_keras_net(net)),
        "net": net,
    }


def _onnx_response(model, node_name: str) -> str:  # noqa: ANN001
    return next(i.name for i in model.response_infos.values() if i.layer.name == node_name)


def test_seed_snippet_selects_the_same_conv_layers(setup: dict) -> None:
    assert _conv_names(setup["torch"]) == [t for t, _, _ in CONV_LAYERS]
    assert _conv_names(setup["keras"]) == [k for _, k, _ in CONV_LAYERS]
    onnx_model = setup["onnx"]
    assert _conv_names(onnx_model) == [_onnx_response(onnx_model, o) for _, _, o in CONV_LAYERS]


def test_responses_match_before_counting(setup: dict) -> None:
    # The rebuilt models compute the same function; IUA differences could only come from here.
    net = setup["net"]
    x = setup["images_nchw"]
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    onnx_out = setup["onnx"].backend.run_inference({"images": x}, frozenset(["logits"]))
    keras_out = setup["keras"].backend.run_inference(
        {"images": setup["images_nhwc"]}, frozenset(["fc2"])
    )
    np.testing.assert_allclose(onnx_out["logits"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras_out["fc2"], expected, rtol=1e-4, atol=1e-5)
    # Pre-activations are far from 0 relative to float error, so counts must agree exactly.
    conv_names = frozenset(["conv1", "conv2", "fc1"])
    pre = setup["keras"].backend.run_inference({"images": setup["images_nhwc"]}, conv_names)
    for name in conv_names:
        assert np.min(np.abs(pre[name])) > 1e-6


def _iua(model, images: np.ndarray, names: list[str], channel_axis: int) -> IUA:  # noqa: ANN001
    producer = pipeline(_producer(images), model(names))
    return IUA.introspect(producer, batch_size=5, channel_axis=channel_axis)


def test_iua_agrees_across_the_three_adapters(setup: dict) -> None:
    onnx_model = setup["onnx"]
    layers = CONV_LAYERS + OTHER_LAYERS
    torch_names = [t for t, _, _ in layers]
    keras_names = [k for _, k, _ in layers]
    onnx_names = [_onnx_response(onnx_model, o) for _, _, o in layers]

    by_torch = _iua(setup["torch"], setup["images_nchw"], torch_names, channel_axis=1)
    by_onnx = _iua(onnx_model, setup["images_nchw"], onnx_names, channel_axis=1)
    by_keras = _iua(setup["keras"], setup["images_nhwc"], keras_names, channel_axis=-1)

    nontrivial = 0
    for t_name, k_name, o_name in zip(torch_names, keras_names, onnx_names):
        rt, ro, rk = by_torch.results[t_name], by_onnx.results[o_name], by_keras.results[k_name]
        keras_units = rk.unit_inactive_count_array
        if keras_units.ndim == 3:  # (H, W, C) -> (C, H, W)
            keras_units = keras_units.transpose(2, 0, 1)
        np.testing.assert_array_equal(ro.unit_inactive_count_array, rt.unit_inactive_count_array)
        np.testing.assert_array_equal(keras_units, rt.unit_inactive_count_array)
        for r in (ro, rk):
            np.testing.assert_array_equal(r.inactive_array, rt.inactive_array)
            assert r.mean_inactive == pytest.approx(rt.mean_inactive)
            assert r.std_inactive == pytest.approx(rt.std_inactive)
        if t_name in by_torch.channel_results:
            ct = by_torch.channel_results[t_name].unit_inactive_count_array
            np.testing.assert_array_equal(
                by_onnx.channel_results[o_name].unit_inactive_count_array, ct
            )
            np.testing.assert_array_equal(
                by_keras.channel_results[k_name].unit_inactive_count_array, ct
            )
        counts = rt.unit_inactive_count_array
        nontrivial += int(0 < counts.sum() < counts.size * N_SAMPLES)
    # The dead channels planted by the -50 biases are seen through every adapter.
    assert by_torch.results["1"].unit_inactive_count_array[0].min() == N_SAMPLES
    assert by_keras.results["relu1"].unit_inactive_count_array[..., 0].min() == N_SAMPLES
    assert by_onnx.results[onnx_names[3]].unit_inactive_count_array[2].min() == N_SAMPLES
    assert nontrivial >= 3
