"""The seed pages' IUA and layer-selection snippets, run as written on the bundled digits CNN.

Only the imports are renamed (``dnikit`` -> ``introscope``); the numbers are checked against a
direct count on the module's own activations.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    # Same folder as tests/samples/test_digits.py: the CNN trains once per session.
    path = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTROSCOPE_CACHE_DIR", str(path))
        from introscope.samples import load_digits_cnn, load_digits_dataset

        model = load_digits_cnn(dying_relu=True)
        dataset = load_digits_dataset().subset(datasets="test")
        yield model, dataset


def _direct_inactive_counts(model, dataset, names):
    """Per-unit inactive counts computed straight from forward hooks, without introscope."""
    x = np.concatenate([b.fields["samples"] for b in dataset(batch_size=500)])
    captured = {}
    modules = dict(model.module.named_modules())
    hooks = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach().numpy().copy())
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            model.module.eval()(torch.from_numpy(x))
    finally:
        for h in hooks:
            h.remove()
    return {n: np.isclose(captured[n], 0, rtol=1e-05, atol=1e-08).sum(axis=0) for n in names}


def test_introspect_page_snippets(digits):
    from introscope.base import ResponseInfo  # noqa: F401 - as the seed imports it

    model, _ = digits
    # "model.response_infos" as a mapping, "input_layers" and their names
    response_infos = model.response_infos
    assert "conv1" in response_infos and response_infos["conv1"].shape[1:] == (16, 8, 8)
    input_layers = model.input_layers
    input_layer_names = list(input_layers.keys())
    assert input_layer_names == ["x"]


def test_iua_page_snippets_on_the_dying_relu_cnn(digits):
    from introscope.base import ResponseInfo, pipeline
    from introscope.introspectors import IUA

    dnikit_model, dataset = digits

    # Find only conv2d layer responses
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    assert conv_response_names == ["conv1", "conv2"]
    relu_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.RELU
    ]

    producer = pipeline(
        dataset,
        # Tell the model which responses to look at
        dnikit_model(conv_response_names + relu_names),
    )

    # Run IUA analysis on responses from a producer
    iua = IUA.introspect(producer, batch_size=128)

    iua_result = IUA.introspect(producer, batch_size=64)  # introspect!
    table = IUA.show(iua_result)
    IUA.show(iua, vis_type=IUA.VisType.CHART)

    iua_results = IUA.introspect(producer=producer, batch_size=32, rtol=1e-05, atol=1e-08)

    names = conv_response_names + relu_names
    expected = _direct_inactive_counts(dnikit_model, dataset, names)
    for result in (iua, iua_result, iua_results):
        for name in names:
            r = result.results[name]
            np.testing.assert_array_equal(
                np.asarray(r.unit_inactive_count).reshape(expected[name].shape), expected[name]
            )
            assert r.mean_inactive == pytest.approx(expected[name].sum() / 450)
    # the dying-ReLU variant really has dead units after its ReLUs, and the tables say so
    assert list(table.columns) == ["response", "mean inactive", "std inactive"]  # DNIKit's
    rows = IUA.show(iua_result, details=True).set_index("response")
    assert rows.loc["relu2", "mean inactive"] > 0.8 * 2048
    assert rows.loc["relu2", "dead units"] > 1000
    assert list(table["response"]) == sorted(names)
