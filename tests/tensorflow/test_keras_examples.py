"""``TFModelExamples`` and ``TFDatasetExamples``: DNIKit's names, offline-safe behaviour."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

from introscope.base import Batch, ResponseInfo, TrainTestSplitProducer, pipeline  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.tensorflow import TFDatasetExamples, TFModelExamples, TFModelWrapper  # noqa: E402
from introscope.tensorflow._keras import import_keras  # noqa: E402

keras = import_keras()


@pytest.fixture(scope="module")
def mobilenet() -> TFModelWrapper:
    # weights=None: the architecture only, nothing downloaded; small input and width keep it fast.
    return TFModelExamples.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25)


def test_mobilenet_architecture_and_seed_snippet(mobilenet: TFModelWrapper) -> None:
    dnikit_model = mobilenet.model
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    # MobileNet v1: conv1, then 13 depthwise + 13 pointwise convolutions, then the 1x1 classifier
    assert len(conv_response_names) == 28
    assert conv_response_names[:3] == ["conv1", "conv_dw_1", "conv_pw_1"]
    assert mobilenet.response_infos is dnikit_model.response_infos

    images = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)

    def dataset(batch_size: int):  # noqa: ANN202
        yield Batch({"images": images})

    stages = mobilenet(["conv1", "conv_pw_13"])
    assert isinstance(stages, list) and len(stages) == 2  # preprocessing, model
    batches = list(pipeline(dataset, *stages)(4))
    assert batches[0].fields["conv1"].shape == (3, 16, 16, 8)
    assert batches[0].fields["conv_pw_13"].shape == (3, 1, 1, 256)
    # The preprocessing scales pixels to [-1, 1] before the model sees them.
    scaled = images.astype(np.float32) / 127.5 - 1.0
    (input_name,) = dnikit_model.input_layers
    direct = dnikit_model.backend.run_inference({input_name: scaled}, frozenset(["conv1"]))
    np.testing.assert_allclose(batches[0].fields["conv1"], direct["conv1"], rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*input_shape.*:UserWarning")
def test_mobilenet_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.applications import mobilenet as module

    def offline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        # What keras.utils.get_file raises when the host cannot be reached.
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    monkeypatch.setattr(module.file_utils, "get_file", offline)
    with pytest.raises(IntroscopeError, match=r"weights=None.*"):
        TFModelExamples.MobileNet(include_top=False, input_shape=(32, 32, 3), alpha=0.25)


def test_wrapper_with_model_only_is_one_stage(mobilenet: TFModelWrapper) -> None:
    wrapper = TFModelWrapper(model=mobilenet.model)
    stage = wrapper("conv1")
    assert not isinstance(stage, list)


def _split(n_train: int = 6, n_test: int = 4, shape=(4, 4, 3), classes: int = 10):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 255, size=(n_train, *shape)).astype(np.uint8)
    x_test = rng.integers(0, 255, size=(n_test, *shape)).astype(np.uint8)
    y_train = (np.arange(n_train) % classes).reshape(-1, 1)
    y_test = (np.arange(n_test) % classes).reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)


def test_datasets_are_train_test_split_producers() -> None:
    cifar = TFDatasetExamples.CIFAR10(split_dataset=_split(), max_samples=8)
    assert isinstance(cifar, TrainTestSplitProducer)
    batches = list(cifar(5))
    assert [b.batch_size for b in batches] == [5, 3]
    labels = batches[0].metadata[Batch.StdKeys.LABELS]["label"]
    assert [int(v) for v in labels] == [0, 1, 2, 3, 4]
    # DNIKit's string labels: "cat" is CIFAR-10 class 3, "ship" class 8 (absent here).
    cats = cifar.subset(labels=["cat"])
    assert isinstance(cats, type(cifar))
    got = [int(v) for b in cats(10) for v in b.metadata[Batch.StdKeys.LABELS]["label"]]
    assert got == [3, 3]
    with pytest.raises(LookupError, match="'horse-ish'"):
        cifar.subset(labels="horse-ish")


def test_cifar100_label_modes_and_mnist() -> None:
    coarse = TFDatasetExamples.CIFAR100(split_dataset=_split(classes=20), label_mode="coarse")
    assert coarse.str_to_label_idx()[1] == "fish"
    fish = coarse.subset(labels="fish")
    assert fish.label_mode == "coarse"
    assert fish.max_samples == 2  # label 1: train sample 1 and test sample 1
    fine = TFDatasetExamples.CIFAR100(split_dataset=_split(classes=100))
    assert len(fine.str_to_label_idx()) == 100
    with pytest.raises(ValueError, match="label_mode"):
        TFDatasetExamples.CIFAR100(split_dataset=_split(), label_mode="medium")
    mnist = TFDatasetExamples.MNIST(split_dataset=_split(shape=(28, 28)))
    assert next(iter(mnist(3))).fields["samples"].shape == (3, 28, 28)
    with pytest.raises(IntroscopeError, match="no string class names"):
        mnist.subset(labels="seven")


def test_dataset_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline() -> None:
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- offline")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(IntroscopeError, match=r"MNIST.*network.*split_dataset="):
        TFDatasetExamples.MNIST()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_mobilenet_preprocessing_leaves_float_inputs_alone(
    mobilenet: TFModelWrapper, dtype: type
) -> None:
    # Keras' preprocess_input scales float arrays in place: the batch's (read-only) data must
    # neither make it fail nor be changed.
    images = np.random.default_rng(3).integers(0, 256, size=(2, 32, 32, 3)).astype(dtype)
    original = images.copy()
    batches = list(pipeline(lambda bs: iter([Batch({"images": images})]), *mobilenet(["conv1"]))(2))
    np.testing.assert_array_equal(images, original)
    scaled = images.astype(np.float32) / 127.5 - 1.0
    (input_name,) = mobilenet.model.input_layers
    direct = mobilenet.model.backend.run_inference({input_name: scaled}, frozenset(["conv1"]))
    np.testing.assert_allclose(batches[0].fields["conv1"], direct["conv1"], rtol=1e-5, atol=1e-5)
