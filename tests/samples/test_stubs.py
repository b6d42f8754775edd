"""StubProducer, StubImageDataset, StubGatedAdditionDataset."""

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch, concatenate_batches
from introscope.exceptions import IntroscopeError
from introscope.samples import StubGatedAdditionDataset, StubImageDataset, StubProducer


def test_stub_producer_rebatches_fields_and_metadata():
    key, labels = Batch.MetaKey("id"), Batch.DictMetaKey("labels")
    data = {"a": np.arange(7.0), "b": np.arange(14).reshape(7, 2)}
    producer = StubProducer(data, metadata={key: list("abcdefg"), labels: {"c": [0, 1] * 3 + [0]}})
    batches = list(producer(3))
    assert [b.batch_size for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(batches[1].fields["b"], data["b"][3:6])
    assert batches[2].metadata[key] == ["g"]
    assert batches[1].metadata[labels]["c"] == [1, 0, 1]
    assert concatenate_batches(batches) == next(iter(producer(100)))
    assert list(producer(3)) == batches


def test_stub_producer_errors():
    with pytest.raises(IntroscopeError, match="same size"):
        StubProducer({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(IntroscopeError, match="batch_size"):
        list(StubProducer({"a": np.ones(3)})(0))


def test_stub_image_dataset_shapes_and_determinism():
    ds = StubImageDataset(5, image_width=4, image_height=3, channel_count=2)
    batches = list(ds(2))
    assert [b.fields["images"].shape for b in batches] == [(2, 3, 4, 2)] * 2 + [(1, 3, 4, 2)]
    assert batches[0].fields["images"].dtype == np.float64
    whole = next(iter(ds(5))).fields["images"]
    # The images do not depend on the batch size and repeat on every pass.
    np.testing.assert_array_equal(np.concatenate([b.fields["images"] for b in batches]), whole)
    np.testing.assert_array_equal(next(iter(ds(5))).fields["images"], whole)
    other = next(iter(StubImageDataset(5, 4, 3, 2, seed=1)(5))).fields["images"]
    assert not np.array_equal(other, whole)
    assert abs(whole.mean()) < 0.5 and 0.5 < whole.std() < 1.5
    assert next(iter(StubImageDataset(1)(1))).fields["images"].shape == (1, 480, 640, 3)
    assert list(StubImageDataset(0)(4)) == []
    with pytest.raises(ValueError, match="image_width"):
        StubImageDataset(3, image_width=0)


def test_gated_addition_structure():
    ds = StubGatedAdditionDataset(7, minimum_sequence_length=5, maximum_sequence_length=9)
    batches = list(ds(3))
    assert [b.batch_size for b in batches] == [3, 3, 1]
    for batch in batches:
        x, target, lengths = (batch.fields[k] for k in ("x", "target", "sequence_length"))
        assert x.shape == (batch.batch_size, 9, 2) and x.dtype == np.float32
        assert target.dtype == np.float32 and lengths.min() >= 5 and lengths.max() <= 9
        for i in range(batch.batch_size):
            marked = np.flatnonzero(x[i, :, 1])
            assert len(marked) == 2 and marked.max() < lengths[i]
            assert target[i] == pytest.approx(0.5 + x[i, marked, 0].sum() / 4, abs=1e-6)
    assert list(ds(3)) == batches  # a second pass yields the same batches
    with pytest.raises(ValueError, match="minimum_sequence_length"):
        StubGatedAdditionDataset(3, minimum_sequence_length=1, maximum_sequence_length=4)
    with pytest.raises(ValueError, match="must be <="):
        StubGatedAdditionDataset(3, minimum_sequence_length=6, maximum_sequence_length=4)


def test_gated_addition_matches_dnikit(tmp_path):
    script = """
from dnikit.samples import StubGatedAdditionDataset
result = [
    {k: v.astype(float).ravel().tolist() for k, v in b.fields.items()}
    for b in StubGatedAdditionDataset(5, 4, 7)(2)
]
"""
    ref = run_dnikit(script, {}, tmp_path)
    mine = list(StubGatedAdditionDataset(5, 4, 7)(2))
    assert len(mine) == len(ref)
    for batch, expected in zip(mine, ref):
        for name, values in expected.items():
            np.testing.assert_array_equal(batch.fields[name].astype(float).ravel(), values)
