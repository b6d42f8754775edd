"""Keras adapter: channel axes follow the layer graph; models built with dict inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.tensorflow import KerasBackend, load_tf_model_from_memory  # noqa: E402
from introscope.tensorflow._keras import import_keras  # noqa: E402

keras = import_keras()
layers = keras.layers


def _axes(model) -> dict:  # noqa: ANN001
    return {info.name: info.channel_axis for info in KerasBackend(model).get_response_infos()}


def test_permute_then_dense_has_features_last() -> None:
    # An audio-style stem: channels_first Conv1D, Permute to (batch, time, channels), Dense.
    x = keras.Input((2, 50), name="wave")
    c = layers.Conv1D(8, 5, data_format="channels_first", name="stem")(x)  # (B, 8, 46)
    t = layers.Permute((2, 1), name="to_time_major")(c)  # (B, 46, 8)
    d = layers.Dense(16, name="proj")(t)  # (B, 46, 16)
    r = layers.ReLU(name="proj_relu")(d)
    model = keras.Model(x, r)
    assert _axes(model) == {
        "wave": None,
        "stem": 1,
        "to_time_major": -1,  # Permute moves the channels (axis 1) to the end
        "proj": -1,
        "proj_relu": -1,  # the ReLU takes the Dense output's layout, not the Conv1D's
    }

    from introscope.introspectors import IUA

    loaded = load_tf_model_from_memory(model=model)
    wave = np.random.default_rng(0).normal(size=(8, 2, 50)).astype(np.float32)
    producer = pipeline(producer_from_batches(Batch({"wave": wave})), loaded(["proj_relu"]))
    iua = IUA.introspect(producer, batch_size=8, response_infos=loaded.response_infos)
    assert iua.channel_results["proj_relu"].unit_inactive_count_array.shape == (16,)  # features


def test_branches_with_different_layouts_keep_their_own() -> None:
    # model.layers lists cf_relu after the channels_last conv: the layout must come from the graph
    x = keras.Input((3, 8, 8), name="x")
    a = layers.Conv2D(4, 3, data_format="channels_first", name="cf_conv")(x)
    perm = layers.Permute((2, 3, 1), name="perm")(x)
    b = layers.Conv2D(5, 1, data_format="channels_last", name="cl_conv")(perm)
    ra = layers.ReLU(name="cf_relu")(a)
    rb = layers.ReLU(name="cl_relu")(b)
    model = keras.Model(x, [ra, rb])
    order = [layer.name for layer in model.layers]
    assert order.index("cl_conv") < order.index("cf_relu")
    assert _axes(model) == {
        "x": None,
        "cf_conv": 1,
        "perm": None,  # a permuted input: the input's layout is not known
        "cl_conv": -1,
        "cf_relu": 1,
        "cl_relu": -1,
    }


def test_layouts_through_merges_ops_reshapes_and_nested_models() -> None:
    x = keras.Input((3, 8, 8), name="x")
    c = layers.Conv2D(3, 1, data_format="channels_first", name="conv")(x)
    act = keras.ops.relu(c)  # a keras.ops node (not a response) keeps the layout
    bn = layers.BatchNormalization(axis=1, name="bn")(act)
    added = layers.Add(name="add")([bn, x])  # the input's unknown layout does not override
    flat = layers.Reshape((3, 64), name="regroup")(added)  # reinterprets axes: unknown
    after = layers.ReLU(name="after_regroup")(flat)
    squeezed = layers.GlobalAveragePooling2D(data_format="channels_first", name="gap")(added)
    excite = layers.Reshape((3, 1, 1), name="excite")(squeezed)  # a feature vector: channels
    inner_in = keras.Input((3, 8, 8))
    inner = keras.Model(inner_in, layers.ReLU()(inner_in), name="inner")  # element-wise only
    nested = inner(added)
    model = keras.Model(x, [after, excite, nested])
    axes = _axes(model)
    assert axes["bn"] == axes["add"] == axes["excite"] == axes["inner"] == 1
    assert axes["regroup"] is None and axes["after_regroup"] is None
    assert axes["gap"] is None  # rank 2: no channel axis


def test_time_distributed_and_conv_lstm_channels_first() -> None:
    video = keras.Input((5, 3, 8, 8), name="video")
    frames = layers.TimeDistributed(
        layers.Conv2D(4, 3, data_format="channels_first"), name="frames"
    )(video)  # (B, T, C, H, W)
    seq = layers.ConvLSTM2D(2, 3, data_format="channels_first", return_sequences=True, name="cl")(
        frames
    )
    last = layers.ConvLSTM2D(2, 3, data_format="channels_first", name="last")(seq)
    axes = _axes(keras.Model(video, last))
    assert axes == {"video": None, "frames": 2, "cl": 2, "last": 1}


def test_dict_inputs_are_named_by_their_keys() -> None:
    a = keras.Input((3,))
    b = keras.Input((2,))
    h = layers.Concatenate(name="cat")([a, b])
    with pytest.warns(UserWarning, match="keys in the dict must match"):
        net = keras.Model(
            inputs={"meta": b, "image": a},
            outputs={"logits": layers.Dense(2, name="d")(h), "aux": layers.Dense(1, name="aux")(h)},
        )
    model = load_tf_model_from_memory(model=net)
    assert list(model.input_layers) == ["image", "meta"]
    assert list(model.response_infos)[:3] == ["image", "meta", "cat"]
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4, 3)).astype(np.float32)
    meta = rng.normal(size=(4, 2)).astype(np.float32)
    data = producer_from_batches(Batch({"image": image, "meta": meta}))
    got = peek_first_batch(pipeline(data, model(["d"])), batch_size=4).fields["d"]
    want = keras.ops.convert_to_numpy(net({"image": image, "meta": meta}, training=False)["logits"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    wrong = producer_from_batches(Batch({"input_layer": image, "meta": meta}))
    with pytest.raises(IntroscopeError, match=r"'image', 'meta'"):
        peek_first_batch(pipeline(wrong, model(["d"])), batch_size=4)
