"""TorchProducer (DataLoader/Dataset -> producer) and ProducerTorchDataset (producer -> Dataset)."""

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, Dataset, TensorDataset  # noqa: E402

from introscope.torch import ProducerTorchDataset, TorchProducer  # noqa: E402

LABEL = Batch.MetaKey("label")
INFO = Batch.DictMetaKey("info")


class Samples(Dataset):
    def __init__(self, n=10):
        self.x = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 3, {"name": f"s{i}", "weight": float(i)}, (i, -i)


def test_dataloader_fields_and_metadata():
    loader = DataLoader(Samples(), batch_size=4)
    producer = TorchProducer(loader, ["x", LABEL, INFO, Batch.DictMetaKey("pair")])
    batches = list(producer(4))
    assert [b.batch_size for b in batches] == [4, 4, 2]
    b = batches[1]
    np.testing.assert_array_equal(b.fields["x"], Samples().x[4:8])
    assert list(b.metadata[LABEL]) == [1, 2, 0, 1]
    assert b.elements[0].metadata[INFO] == {"name": "s4", "weight": 4.0}
    assert b.elements[3].metadata[Batch.DictMetaKey("pair")] == {"_": [7, -7]}


def test_other_batch_size_regroups_in_order():
    loader = DataLoader(Samples(10), batch_size=4)
    producer = TorchProducer(loader, ["x", LABEL, None, None])
    batches = list(producer(3))
    assert [b.batch_size for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b.fields["x"] for b in batches]), Samples().x)
    assert [v for b in batches for v in b.metadata[LABEL]] == [i % 3 for i in range(10)]


def test_dataset_is_batched_on_request():
    ds = TensorDataset(torch.arange(7.0).reshape(7, 1), torch.arange(7))
    batches = list(TorchProducer(ds, ["x", INFO])(5))
    assert [b.batch_size for b in batches] == [5, 2]
    assert list(batches[1].metadata[INFO]["_"]) == [5, 6]


def test_callable_mapping_fills_builder():
    def put(value, builder):
        builder.fields["doubled"] = value.numpy() * 2

    ds = TensorDataset(torch.ones(3, 2))
    (batch,) = list(TorchProducer(ds, [put])(3))
    np.testing.assert_array_equal(batch.fields["doubled"], np.full((3, 2), 2.0, np.float32))


def test_bad_mappings_and_loaders():
    loader = DataLoader(Samples(), batch_size=4)
    with pytest.raises(IntroscopeError, match="holds 4 value.*mapping has 2"):
        list(TorchProducer(loader, ["x", LABEL])(4))
    with pytest.raises(IntroscopeError, match="mapping must be a list"):
        TorchProducer(loader, "x")
    with pytest.raises(IntroscopeError, match="batch_size=None"):
        TorchProducer(DataLoader(Samples(), batch_size=None), ["x", None, None, None])
    with pytest.raises(IntroscopeError, match="DataLoader or Dataset"):
        TorchProducer([1, 2], ["x"])
    odd = DataLoader([1, 2], batch_size=2, collate_fn=lambda items: (set(items),))
    with pytest.raises(IntroscopeError, match="field 'x' got a set"):
        list(TorchProducer(odd, ["x"])(2))


def stub_producer(n=7):
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 4)

    def producer(batch_size):
        for start in range(0, n, batch_size):
            builder = Batch.Builder({"x": x[start : start + batch_size]})
            ids = list(range(start, min(n, start + batch_size)))
            builder.metadata[LABEL] = ids
            builder.metadata[INFO] = {"k": [f"e{i}" for i in ids]}
            yield builder.make_batch()

    return producer, x


def test_producer_dataset_round_trip():
    producer, x = stub_producer()
    ds = ProducerTorchDataset(producer, ["x", LABEL, INFO], batch_size=3)
    assert isinstance(ds, torch.utils.data.IterableDataset)
    items = list(ds)
    assert len(items) == 7
    np.testing.assert_array_equal(items[5][0], x[5])
    assert items[5][1:] == (5, "e5")  # a one-entry DictMetaKey gives its single value
    assert items[5][0].flags.writeable
    back = list(TorchProducer(DataLoader(ds, batch_size=4), ["x", LABEL, INFO])(4))
    np.testing.assert_array_equal(np.concatenate([b.fields["x"] for b in back]), x)
    assert list(back[0].metadata[INFO]["_"]) == ["e0", "e1", "e2", "e3"]


def test_producer_dataset_transforms_and_callables():
    producer, x = stub_producer(3)
    ds = ProducerTorchDataset(
        producer, ["x", lambda e: int(e.metadata[LABEL]) * 10], transforms={"x": lambda t: t + 1}
    )
    items = list(ds)
    np.testing.assert_array_equal(items[2][0], x[2] + 1)
    assert [i[1] for i in items] == [0, 10, 20]
    with pytest.raises(IntroscopeError, match="names field 'y'"):
        list(ProducerTorchDataset(producer, ["y"]))


def test_producer_dataset_shards_batches_across_workers(monkeypatch):
    producer, _ = stub_producer(7)
    ds = ProducerTorchDataset(producer, [LABEL], batch_size=2)
    seen = []
    for worker in range(2):
        info = type("Info", (), {"id": worker, "num_workers": 2})()
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        seen.append([t[0] for t in ds])
    assert seen == [[0, 1, 4, 5], [2, 3, 6]]
