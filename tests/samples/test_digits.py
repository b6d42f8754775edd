"""The bundled digits data and the tiny CNN (healthy and dying-ReLU variants)."""

import numpy as np
import pytest

from introscope.base import Batch, ResponseInfo, TrainTestSplitProducer, pipeline
from introscope.samples import (
    digits_cnn_accuracy,
    load_digits_cnn,
    load_digits_dataset,
    load_digits_split,
    train_digits_cnn,
)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # The session's base temp dir: every test module that trains shares these weights.
    path = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def healthy(cache_dir):
    return train_digits_cnn(cache=cache_dir)


@pytest.fixture(scope="module")
def dying(cache_dir):
    return train_digits_cnn(dying_relu=True, cache=cache_dir)


def test_split_shapes_and_values():
    (x_train, y_train), (x_test, y_test) = load_digits_split()
    assert x_train.shape == (1347, 8, 8) and x_test.shape == (450, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    assert np.bincount(y_test).min() >= 43  # stratified: ~45 of each digit (174 of 1797 are 8s)
    (again, _), _ = load_digits_split()
    np.testing.assert_array_equal(again, x_train)


def test_dataset_producer():
    data = load_digits_dataset()
    assert isinstance(data, TrainTestSplitProducer)
    test = data.subset(datasets="test")
    batches = list(test(200))
    assert [b.batch_size for b in batches] == [200, 200, 50]
    labels = batches[0].metadata[Batch.StdKeys.LABELS]
    (_, _), (x_test, y_test) = load_digits_split()
    np.testing.assert_array_equal(batches[0].fields["samples"], x_test[:200])
    np.testing.assert_array_equal(np.asarray(labels["label"]), y_test[:200])
    assert set(labels["dataset"]) == {1}


def test_healthy_cnn_accuracy(healthy):
    assert digits_cnn_accuracy(healthy) >= 0.95
    assert not healthy.training


def _dead_channel_fraction(module, name):
    (_, _), (x_test, _) = load_digits_split()
    from introscope.torch import load_torch_model_from_memory

    m = load_torch_model_from_memory(module, example_input=x_test[:2])
    (batch,) = list(pipeline(lambda bs: iter([Batch({"x": x_test})]), m(name))(len(x_test)))
    act = batch.fields[name]
    fires = (act > 0).any(axis=tuple(i for i in range(act.ndim) if i != 1))
    return 1.0 - fires.mean()


def test_dying_relu_variant_has_many_dead_units(healthy, dying):
    for name in ("relu1", "relu2"):
        assert _dead_channel_fraction(dying, name) >= 0.5
        assert _dead_channel_fraction(healthy, name) <= 0.2
    assert digits_cnn_accuracy(dying) < digits_cnn_accuracy(healthy)


def test_training_is_deterministic_and_cache_round_trips(healthy, cache_dir):
    files = sorted(p.name for p in cache_dir.iterdir())
    assert "digits_cnn-healthy-seed0-v1.npz" in files
    assert not [f for f in files if f.endswith(".tmp")]
    with np.load(cache_dir / "digits_cnn-healthy-seed0-v1.npz", allow_pickle=False) as data:
        assert set(data.files) == set(healthy.state_dict())
    fresh = train_digits_cnn(cache=False)
    for key, value in healthy.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_damaged_cache_file_is_replaced(tmp_path, healthy, caplog):
    bad = tmp_path / "digits_cnn-healthy-seed0-v1.npz"
    bad.write_bytes(b"not an npz")
    model = train_digits_cnn(cache=tmp_path)
    assert "ignoring unreadable cached weights" in caplog.text
    np.testing.assert_array_equal(
        model.state_dict()["fc2.bias"].numpy(), healthy.state_dict()["fc2.bias"].numpy()
    )
    with np.load(bad, allow_pickle=False) as data:
        assert "fc2.bias" in data.files


def test_seed_conv_selection_snippet_runs_as_written(cache_dir):
    dnikit_model = load_digits_cnn(cache=cache_dir)
    dataset = load_digits_dataset(max_samples=70)
    # --- the seed's snippet, unchanged ---
    response_infos = dnikit_model.response_infos()
    conv_response_names = [
        info.name
        for info in response_infos.values()
        if info.layer.kind == ResponseInfo.LayerKind.CONV_2D
    ]
    producer = pipeline(dataset, dnikit_model(conv_response_names))
    # ---
    assert conv_response_names == ["conv1", "conv2"]
    batches = list(producer(32))
    assert [b.batch_size for b in batches] == [32, 32, 6]
    assert batches[0].fields["conv1"].shape == (32, 16, 8, 8)
    assert batches[0].fields["conv2"].shape == (32, 32, 8, 8)
    assert Batch.StdKeys.LABELS in batches[0].metadata
