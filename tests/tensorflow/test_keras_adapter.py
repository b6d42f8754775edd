"""The Keras 3 adapter (``introscope.tensorflow``) on the torch backend, with tiny models."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

from introscope.base import Batch, ResponseInfo, pipeline  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.tensorflow import (  # noqa: E402
    load_tf_model_from_memory,
    load_tf_model_from_path,
)
from introscope.tensorflow._keras import import_keras  # noqa: E402

keras = import_keras()
layers = keras.layers
Kind = ResponseInfo.LayerKind


def _cnn():  # noqa: ANN202
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2), name="img")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Conv2D(3, 3, activation="relu", name="conv_b")(x)
    x = layers.Dropout(0.5, name="drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(2, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="cnn")


@pytest.fixture(scope="module")
def cnn():  # noqa: ANN201
    return _cnn()


def _producer(x: np.ndarray, field: str = "images"):  # noqa: ANN202
    def produce(batch_size: int):  # noqa: ANN202
        for start in range(0, len(x), batch_size):
            yield Batch({field: x[start : start + batch_size]})

    return produce


def _conv_reference(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias


def test_response_infos_cover_every_layer(cnn) -> None:  # noqa: ANN001
    model = load_tf_model_from_memory(model=cnn)
    infos = model.response_infos
    assert list(infos) == ["img", "conv", "bn", "relu", "pool", "conv_b", "drop", "gap", "fc"]
    kinds = [info.layer.kind for info in infos.values()]
    assert kinds == [
        Kind.PLACEHOLDER,
        Kind.CONV_2D,
        Kind.BATCH_NORM,
        Kind.RELU,
        Kind.MAX_POOLING_2D,
        Kind.CONV_2D,
        Kind.DROPOUT,
        Kind.AVERAGE_POOLING_2D,
        Kind.DENSE,
    ]
    assert infos["conv"].shape == (None, 8, 8, 4)
    assert infos["gap"].shape == (None, 3)
    assert infos["fc"].dtype == np.float32
    assert infos["conv"].layer.typename == "Conv2D"
    assert list(model.input_layers) == ["img"]


def test_seed_snippet_and_numbers(cnn) -> None:  # noqa: ANN001
    dnikit_model = load_tf_model_from_memory(model=cnn)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 2))  # float64, cast to float32
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    assert conv_response_names == ["conv", "conv_b"]
    producer = pipeline(_producer(x), dnikit_model(conv_response_names))
    batches = list(producer(2))
    assert [b.batch_size for b in batches] == [2, 2, 1]
    assert list(batches[0].fields) == ["conv", "conv_b"]
    conv = np.concatenate([b.fields["conv"] for b in batches])
    kernel, bias = cnn.get_layer("conv").get_weights()
    np.testing.assert_allclose(conv, _conv_reference(x, kernel, bias), rtol=1e-4, atol=1e-4)
    # Inference mode: dropout is off, so the last response equals the model's own prediction.
    fc = dnikit_model.backend.run_inference({"img": x}, frozenset(["fc"]))["fc"]
    want = keras.ops.convert_to_numpy(cnn(x.astype(np.float32), training=False))
    np.testing.assert_allclose(fc, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_from_file_gives_same_responses(cnn, tmp_path: pathlib.Path, suffix: str) -> None:  # noqa: ANN001
    path = tmp_path / f"model{suffix}"
    cnn.save(str(path))
    loaded = load_tf_model_from_path(path)
    assert list(loaded.response_infos) == list(load_tf_model_from_memory(model=cnn).response_infos)
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 2)).astype(np.float32)
    got = loaded.backend.run_inference({"img": x}, frozenset(["relu", "fc"]))
    want = load_tf_model_from_memory(model=cnn).backend.run_inference(
        {"img": x}, frozenset(["relu", "fc"])
    )
    for name in ("relu", "fc"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)


def test_load_architecture_and_weights_directory(cnn, tmp_path: pathlib.Path) -> None:  # noqa: ANN001
    (tmp_path / "arch.json").write_text(cnn.to_json())
    cnn.save_weights(str(tmp_path / "model.weights.h5"))
    loaded = load_tf_model_from_path(str(tmp_path))
    x = np.ones((2, 8, 8, 2), np.float32)
    got = loaded.backend.run_inference({"img": x}, frozenset(["conv"]))["conv"]
    want = load_tf_model_from_memory(model=cnn).backend.run_inference(
        {"img": x}, frozenset(["conv"])
    )["conv"]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_sequential_kinds_and_recurrent_layers() -> None:
    model = keras.Sequential(
        [
            keras.Input((5, 3), name="seq_in"),
            layers.Conv1D(4, 2, name="c1d"),
            layers.LSTM(3, return_sequences=True, name="lstm"),
            layers.GRU(2, name="gru"),
            layers.Dense(4, name="dense"),
            layers.Activation("tanh", name="act"),
            layers.LeakyReLU(name="leaky"),
            layers.ReLU(max_value=6, name="relu6"),
            layers.Softmax(name="soft"),
        ]
    )
    m = load_tf_model_from_memory(model=model)
    kinds = {name: info.layer.kind for name, info in m.response_infos.items()}
    assert kinds == {
        "seq_in": Kind.PLACEHOLDER,
        "c1d": Kind.CONV_1D,
        "lstm": Kind.LSTM,
        "gru": Kind.GRU,
        "dense": Kind.DENSE,
        "act": Kind.TANH,
        "leaky": Kind.LEAKY_RELU,
        "relu6": Kind.RELU6,
        "soft": Kind.SOFTMAX,
    }
    out = m.backend.run_inference({"seq_in": np.ones((3, 5, 3))}, frozenset(["lstm", "soft"]))
    assert out["lstm"].shape == (3, 4, 3)
    np.testing.assert_allclose(out["soft"].sum(axis=1), 1.0, rtol=1e-5)


def test_sequential_built_without_input() -> None:
    model = keras.Sequential([layers.Dense(3, name="d1"), layers.Dense(2, name="d2")])
    with pytest.raises(IntroscopeError, match="not built.*model.build"):
        load_tf_model_from_memory(model=model)
    model.build((None, 4))
    m = load_tf_model_from_memory(model=model)
    (input_name,) = m.input_layers  # generated by Keras: "input_layer", "input_layer_1", ...
    assert list(m.response_infos) == [input_name, "d1", "d2"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = m.backend.run_inference({input_name: x}, frozenset(["d1"]))["d1"]
    kernel, bias = model.get_layer("d1").get_weights()
    np.testing.assert_allclose(out, x @ kernel + bias, rtol=1e-5)


def test_shared_and_multi_output_layers_get_one_response_each() -> None:
    inp = keras.Input((4,), name="x")
    shared = layers.Dense(4, name="shared")
    y = shared(shared(inp))
    seq = layers.Reshape((4, 1), name="seq")(y)
    outputs = layers.LSTM(2, return_state=True, name="lstm")(seq)
    m = load_tf_model_from_memory(model=keras.Model(inp, [y, *outputs]))
    names = list(m.response_infos)
    assert names == ["x", "shared", "shared/call_1", "seq", "lstm", "lstm:1", "lstm:2"]
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    out = m.backend.run_inference({"x": x}, frozenset(["shared", "shared/call_1"]))
    kernel, bias = shared.get_weights()
    first = x @ kernel + bias
    np.testing.assert_allclose(out["shared"], first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["shared/call_1"], first @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_subclassed_model_is_a_clear_error() -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.d = layers.Dense(2)

        def call(self, x):  # noqa: ANN001, ANN201
            return self.d(x)

    with pytest.raises(IntroscopeError, match="subclassed"):
        load_tf_model_from_memory(model=Net())
    with pytest.raises(TypeError, match="keras.Model"):
        load_tf_model_from_memory(model="not a model")
    with pytest.raises(ValueError, match="TensorFlow 1 sessions"):
        load_tf_model_from_memory(session=object())


def test_bad_batches(cnn) -> None:  # noqa: ANN001
    model = load_tf_model_from_memory(model=cnn)
    with pytest.raises(IntroscopeError, match=r"'convv'.*did you mean 'conv'"):
        model("convv")
    wrong = pipeline(_producer(np.zeros((2, 8, 8, 3))), model("conv"))
    with pytest.raises(IntroscopeError, match=r"'images'.*\(8, 8, 3\).*'img' expects \(8, 8, 2\)"):
        list(wrong(2))
    nchw = pipeline(_producer(np.zeros((2, 2, 8, 8)), "img"), model("conv"))
    with pytest.raises(
        IntroscopeError, match=r"input 'img' has shape \(2, 2, 8, 8\).*\(\?, 8, 8, 2\)"
    ):
        list(nchw(2))
    text = pipeline(_producer(np.full((2, 8, 8, 2), "x")), model("conv"))
    with pytest.raises(IntroscopeError, match="must be numeric"):
        list(text(2))


def test_bad_paths(tmp_path: pathlib.Path) -> None:
    with pytest.raises(IntroscopeError, match="does not exist"):
        load_tf_model_from_path(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(IntroscopeError, match="junk.keras' exists but cannot be read as a Keras"):
        load_tf_model_from_path(junk)
    other = tmp_path / "model.txt"
    other.write_text("hello")
    with pytest.raises(IntroscopeError, match="not a Keras model file"):
        load_tf_model_from_path(other)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(IntroscopeError, match="one architecture .json"):
        load_tf_model_from_path(empty)


def test_savedmodel_needs_tensorflow(tmp_path: pathlib.Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(IntroscopeError, match=r"tensorflow.*introscope\[tensorflow\]"):
            load_tf_model_from_path(tmp_path)
    else:  # pragma: no cover - TensorFlow is not part of the test environment
        with pytest.raises(IntroscopeError):
            load_tf_model_from_path(tmp_path)


def test_keras_backend_defaults_to_torch(tmp_path: pathlib.Path) -> None:
    # Without KERAS_BACKEND, Keras would read ~/.keras/keras.json (which may say tensorflow).
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = (
        "import sys, introscope.tensorflow as t; assert 'keras' not in sys.modules\n"
        "from introscope.tensorflow._keras import import_keras\n"
        "print(import_keras().backend.backend())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "torch"


def test_missing_keras_names_the_extra(cnn, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from introscope.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "keras", None)  # makes `import keras` fail
    with pytest.raises(MissingDependencyError, match=r"introscope\[keras\]"):
        load_tf_model_from_memory(model=cnn)


@pytest.mark.parametrize(("data_format", "axis"), [("channels_first", 1), ("channels_last", -1)])
def test_channel_axis_follows_the_layers_data_format(data_format, axis):
    from introscope.introspectors import IUA

    keras.utils.set_random_seed(0)
    shape = (2, 6, 6) if data_format == "channels_first" else (6, 6, 2)
    inp = keras.Input(shape, name="img")
    x = layers.Conv2D(3, 3, padding="same", data_format=data_format, name="conv")(inp)
    x = layers.ReLU(name="relu")(x)
    model = load_tf_model_from_memory(model=keras.Model(inp, x))
    infos = model.response_infos
    assert infos["conv"].channel_axis == axis
    assert infos["relu"].channel_axis == axis  # an activation takes the conv's data format

    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, *shape)).astype(np.float32)
    if data_format == "channels_first":
        images[:, 0] = 0.0  # zero input channel: makes conv output depend on one channel only
    producer = pipeline(lambda bs: iter([Batch({"img": images})]), model(["conv"]))
    inferred = IUA.introspect(producer, response_infos=infos)
    explicit = IUA.introspect(producer, channel_axis=axis)
    # the channel view comes from the data format: 3 channels, as with the explicit axis
    assert inferred.channel_axis("conv") == explicit.channel_axis("conv")
    got, want = inferred.channel_results["conv"], explicit.channel_results["conv"]
    assert np.asarray(got.unit_inactive_count).shape == (3,)
    np.testing.assert_array_equal(got.unit_inactive_count, want.unit_inactive_count)
    np.testing.assert_array_equal(got.inactive, want.inactive)
