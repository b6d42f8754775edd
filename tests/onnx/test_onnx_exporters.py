"""The ONNX adapter on both of torch 2.13's exporters: the dynamo one (default) and the legacy one.

Names differ (``relu``/``relu_1``/``getitem`` vs ``/2/Relu_output_0``) and the dynamo exporter
folds BatchNorm into the convolution, but the DNIKit kind-selection idiom picks the same layers
and IUA gives the numbers of the torch model itself.
"""

import warnings

import numpy as np
import pytest

from introscope.base import Batch, ResponseInfo, pipeline

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from introscope.introspectors import IUA  # noqa: E402
from introscope.onnx import load_onnx_model  # noqa: E402
from introscope.torch import load_torch_model_from_memory  # noqa: E402

Kind = ResponseInfo.LayerKind


def _net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 3),
        torch.nn.ReLU(),
    )
    with torch.no_grad():
        net[1].running_mean.fill_(0.2)
    return net.eval()


@pytest.fixture(scope="module", params=[True, False], ids=["dynamo", "legacy"])
def exported(request, tmp_path_factory):
    net = _net()
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    x = torch.randn(2, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if request.param:
            torch.onnx.export(
                net,
                (x,),
                str(path),
                dynamo=True,
                input_names=["x"],
                dynamic_shapes=({0: torch.export.Dim("N")},),
            )
        else:
            torch.onnx.export(
                net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}}
            )
    return request.param, net, load_onnx_model(path)


def test_kind_selection_finds_the_same_layers_with_both_exporters(exported):
    dynamo, _, model = exported
    infos = model.response_infos()
    convs = [i.name for i in infos.values() if i.layer.kind == Kind.CONV_2D]
    relus = [i.name for i in infos.values() if i.layer.kind == Kind.RELU]
    pools = [i.name for i in infos.values() if i.layer.kind == Kind.MAX_POOLING_2D]
    assert len(convs) == 1 and len(relus) == 2 and len(pools) == 1
    if dynamo:
        assert relus == ["relu", "relu_1"]
    else:
        assert relus[0] == "/2/Relu_output_0"
    # the activations carry the channel layout of the convolution they follow
    assert infos[relus[0]].channel_axis == 1 and infos[relus[1]].channel_axis is None


def test_iua_on_the_export_equals_iua_on_the_torch_model(exported, rng):
    _, net, model = exported
    x = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    infos = model.response_infos
    relus = [i.name for i in infos.values() if i.layer.kind == Kind.RELU]
    data = lambda bs: (Batch({"x": x[i : i + bs]}) for i in range(0, len(x), bs))  # noqa: E731
    onnx_iua = IUA.introspect(pipeline(data, model(relus)), batch_size=16)
    tmodel = load_torch_model_from_memory(net, example_input=x[:2])
    torch_iua = IUA.introspect(pipeline(data, tmodel(["2", "6"])), batch_size=16)
    for onnx_name, torch_name in zip(relus, ["2", "6"]):
        np.testing.assert_array_equal(
            np.asarray(onnx_iua.results[onnx_name].unit_inactive_count),
            np.asarray(torch_iua.results[torch_name].unit_inactive_count),
        )
