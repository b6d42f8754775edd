"""TrainTestSplitProducer: layout, metadata, max_samples, subset and shuffle."""

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch, TrainTestSplitProducer
from introscope.exceptions import IntroscopeError

LABELS = Batch.StdKeys.LABELS
IDS = Batch.StdKeys.IDENTIFIER


def split():
    x_train = np.arange(6 * 2 * 2, dtype=float).reshape(6, 2, 2, 1)
    y_train = np.array([0, 1, 2, 0, 1, 2]).reshape(6, 1)
    x_test = -np.arange(4 * 2 * 2, dtype=float).reshape(4, 2, 2, 1) - 1
    y_test = np.array([2, 2, 0, 1]).reshape(4, 1)
    return (x_train, y_train), (x_test, y_test)


def collect(producer, batch_size=4):
    batches = list(producer(batch_size))
    samples = np.concatenate([b.fields["samples"] for b in batches])
    ids = [i for b in batches for i in b.metadata[IDS]] if batches[0].metadata else []
    labels = [v for b in batches for v in b.metadata[LABELS]["label"]] if ids else []
    datasets = [v for b in batches for v in b.metadata[LABELS]["dataset"]] if ids else []
    return batches, samples, ids, labels, datasets


def test_layout_and_metadata():
    (x_train, _), (x_test, _) = split()
    batches, samples, ids, labels, datasets = collect(TrainTestSplitProducer(split()))
    assert [b.batch_size for b in batches] == [4, 4, 2]
    # Size-1 dimensions after the batch dimension are squeezed, as in DNIKit.
    assert samples.shape == (10, 2, 2)
    np.testing.assert_array_equal(samples, np.concatenate([x_train, x_test])[..., 0])
    assert ids == list(range(10))
    assert labels == [0, 1, 2, 0, 1, 2, 2, 2, 0, 1]
    assert datasets == [0] * 6 + [1] * 4


def test_no_metadata_and_max_samples():
    batches = list(TrainTestSplitProducer(split(), attach_metadata=False)(10))
    assert not batches[0].metadata
    batches, samples, ids, _, _ = collect(TrainTestSplitProducer(split(), max_samples=5), 2)
    assert [b.batch_size for b in batches] == [2, 2, 1] and ids == [0, 1, 2, 3, 4]
    assert TrainTestSplitProducer(split(), max_samples=100).max_samples == 10


def test_one_empty_side_and_single_sample():
    (x_train, y_train), _ = split()
    producer = TrainTestSplitProducer(((x_train, y_train), (np.empty((0,)), np.empty((0,)))))
    _, samples, _, _, datasets = collect(producer)
    assert samples.shape == (6, 2, 2) and datasets == [0] * 6
    one = TrainTestSplitProducer(((np.empty((0,)), np.empty((0,))), (x_train[:1], y_train[:1])))
    batch = next(iter(one(4)))
    assert batch.fields["samples"].shape == (1, 2, 2)  # the batch axis survives
    assert list(batch.metadata[LABELS]["dataset"]) == [1]


def test_subset_by_labels_and_datasets():
    producer = TrainTestSplitProducer(split())
    _, samples, ids, labels, datasets = collect(producer.subset(labels=2))
    assert labels == [2, 2, 2, 2] and datasets == [0, 0, 1, 1]
    assert ids == [0, 1, 2, 3]  # identifiers index the subset, as in DNIKit
    (x_train, _), (x_test, _) = split()
    np.testing.assert_array_equal(samples[0], x_train[2, ..., 0])
    np.testing.assert_array_equal(samples[2], x_test[0, ..., 0])
    _, _, _, labels, datasets = collect(producer.subset(labels=[0, 1], datasets="test"))
    assert labels == [0, 1] and datasets == [1, 1]
    _, _, _, labels, _ = collect(producer.subset(datasets=["train"], max_samples=4))
    assert labels == [0, 1, 2, 0]
    assert producer.subset(labels=np.int64(0)).max_samples == 3


def test_subset_errors():
    producer = TrainTestSplitProducer(split())
    with pytest.raises(ValueError, match="labels=...\\) is empty"):
        producer.subset(labels=[])
    with pytest.raises(ValueError, match="'train' and 'test'"):
        producer.subset(datasets="validation")
    with pytest.raises(IntroscopeError, match="both empty"):
        producer.subset(labels=7)


def test_shuffle_is_a_permutation_and_seedable():
    producer = TrainTestSplitProducer(split())
    producer.shuffle(seed=3)
    _, samples, ids, labels, _ = collect(producer)
    assert sorted(ids) == list(range(10)) and ids != list(range(10))
    _, plain, _, plain_labels, _ = collect(TrainTestSplitProducer(split()))
    np.testing.assert_array_equal(samples, plain[ids])
    assert labels == [plain_labels[i] for i in ids]
    again = TrainTestSplitProducer(split())
    again.shuffle(seed=3)
    assert collect(again)[2] == ids
    np.random.seed(5)
    producer.shuffle()
    first = collect(producer)[2]
    np.random.seed(5)
    producer.shuffle()
    assert collect(producer)[2] == first
    # A subset does not inherit the shuffle.
    assert collect(producer.subset(datasets="train"))[2] == list(range(6))


def test_bad_input():
    with pytest.raises(TypeError, match="split_dataset"):
        TrainTestSplitProducer((np.ones(3), np.ones(3)))
    (x_train, y_train), (x_test, y_test) = split()
    with pytest.raises(IntroscopeError, match="x_train has 6 samples but y_train has 5"):
        TrainTestSplitProducer(((x_train, y_train[:5]), (x_test, y_test)))
    with pytest.raises(IntroscopeError, match="items have shape"):
        TrainTestSplitProducer(((x_train, y_train), (x_test[:, :1], y_test)))
    empty = (np.empty((0,)), np.empty((0,)))
    with pytest.raises(IntroscopeError, match="both empty"):
        TrainTestSplitProducer((empty, empty))


def test_matches_dnikit(tmp_path):
    (x_train, y_train), (x_test, y_test) = split()
    script = """
from dnikit.base import Batch, TrainTestSplitProducer
arr = arrays
p = TrainTestSplitProducer(((arr["xa"], arr["ya"]), (arr["xb"], arr["yb"])), max_samples=9)
out = []
for prod in (p, p.subset(labels=[2, 0]), p.subset(datasets="test")):
    for b in prod(4):
        out.append([list(b.fields["samples"].shape), b.fields["samples"].ravel().tolist(),
                    [int(i) for i in b.metadata[Batch.StdKeys.IDENTIFIER]],
                    [int(v) for v in b.metadata[Batch.StdKeys.LABELS]["label"]],
                    [int(v) for v in b.metadata[Batch.StdKeys.LABELS]["dataset"]]])
result = out
"""
    ref = run_dnikit(script, {"xa": x_train, "ya": y_train, "xb": x_test, "yb": y_test}, tmp_path)
    p = TrainTestSplitProducer(split(), max_samples=9)
    mine = []
    for prod in (p, p.subset(labels=[2, 0]), p.subset(datasets="test")):
        for b in prod(4):
            mine.append(
                [
                    list(b.fields["samples"].shape),
                    b.fields["samples"].ravel().tolist(),
                    [int(i) for i in b.metadata[IDS]],
                    [int(v) for v in b.metadata[LABELS]["label"]],
                    [int(v) for v in b.metadata[LABELS]["dataset"]],
                ]
            )
    assert mine == ref
