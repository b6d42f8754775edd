"""Batch: fields, elements, builder, metadata, equality, pickling and the errors of misuse."""

import pickle

import numpy as np
import pytest

from introscope.base import Batch, concatenate_batches
from introscope.exceptions import IntroscopeError

ID = Batch.StdKeys.IDENTIFIER
LABELS = Batch.StdKeys.LABELS
NAME = Batch.MetaKey("name")


def _batch(n: int = 4) -> Batch:
    b = Batch.Builder(
        {
            "x": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
            "y": np.arange(n, dtype=np.int64) * 10,
        }
    )
    b.metadata[ID] = [f"id{i}" for i in range(n)]
    b.metadata[LABELS] = {"color": ["red", "blue"] * (n // 2), "size": list(range(n))}
    return b.make_batch()


def test_fields_and_batch_size():
    x = np.arange(6.0).reshape(3, 2)
    batch = Batch({"x": x, "y": np.array([1, 2, 3])})
    assert batch.batch_size == 3
    assert list(batch.fields) == ["x", "y"]
    np.testing.assert_array_equal(batch.fields["x"], x)
    np.testing.assert_array_equal(batch.fields["y"], [1, 2, 3])
    assert batch.snapshots == {}
    assert not batch.metadata


def test_fields_are_read_only_and_the_callers_array_is_frozen_like_dnikit():
    x = np.zeros((2, 2))
    batch = Batch({"x": x})
    with pytest.raises(ValueError, match="read-only"):
        batch.fields["x"][0, 0] = 1.0
    with pytest.raises(TypeError):
        batch.fields["z"] = x  # the mapping itself is read-only
    # no copy is made, and the caller cannot change the batch behind its back through `x`
    assert batch.fields["x"] is x
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0] = 5.0
    assert batch.fields["x"][0, 0] == 0.0


def test_a_producer_that_refills_its_buffer_fails_loudly():
    buffer = np.zeros((2, 3))

    def producer(batch_size):
        for i in range(3):
            buffer[...] = i  # reuses one array for every batch
            yield Batch({"x": buffer})

    with pytest.raises(ValueError, match="read-only"):
        list(producer(2))


def test_mismatched_sizes_error_names_every_field():
    with pytest.raises(IntroscopeError, match=r"field 'a': 3.*field 'b': 2"):
        Batch({"a": np.zeros(3), "b": np.zeros(2)})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "without fields"),
        ({"a": [1, 2]}, "must be a numpy.ndarray"),
        ({"a": np.float64(1.0)}, "numpy.ndarray"),
        ({"a": np.array(1.0)}, "0-d"),
        ({1: np.zeros(2)}, "field names must be str"),
    ],
)
def test_invalid_fields(fields, message):
    with pytest.raises(IntroscopeError, match=message):
        Batch(fields)


def test_metadata_size_must_match_fields():
    b = Batch.Builder({"x": np.zeros(3)})
    b.metadata[ID] = [1, 2]
    with pytest.raises(IntroscopeError, match="metadata.*IDENTIFIER.*2"):
        b.make_batch()


def test_metadata_read_views():
    batch = _batch()
    assert batch.metadata[ID] == ["id0", "id1", "id2", "id3"]
    labels = batch.metadata[LABELS]
    assert labels == {"color": ["red", "blue", "red", "blue"], "size": [0, 1, 2, 3]}
    assert ID in batch.metadata and NAME not in batch.metadata
    assert batch.metadata.get(NAME, "none") == "none"
    with pytest.raises(KeyError, match="name"):
        batch.metadata[NAME]
    # MetaKey and DictMetaKey of the same name are distinct keys
    assert Batch.DictMetaKey("IDENTIFIER") not in batch.metadata


def test_metadata_value_types_are_checked():
    b = Batch.Builder({"x": np.zeros(2)})
    with pytest.raises(TypeError, match="sequence"):
        b.metadata[NAME] = "ab"
    with pytest.raises(TypeError, match="mapping"):
        b.metadata[LABELS] = [1, 2]
    with pytest.raises(TypeError, match="MetaKey"):
        b.metadata["plain string"] = [1, 2]


def test_elements_int_slice_list_and_mask():
    batch = _batch(4)
    e = batch.elements[1]
    np.testing.assert_array_equal(e.fields["x"], [3.0, 4.0, 5.0])
    assert e.fields["y"] == 10
    assert e.metadata[ID] == "id1"
    assert dict(e.metadata[LABELS]) == {"color": "blue", "size": 1}
    assert batch.elements[-1].metadata[ID] == "id3"
    with pytest.raises(IndexError):
        batch.elements[4]

    sliced = batch.elements[1:3]
    assert isinstance(sliced, Batch) and sliced.batch_size == 2
    np.testing.assert_array_equal(sliced.fields["y"], [10, 20])
    assert sliced.metadata[ID] == ["id1", "id2"]

    picked = batch.elements[[3, 0]]
    np.testing.assert_array_equal(picked.fields["y"], [30, 0])
    assert picked.metadata[LABELS]["size"] == [3, 0]

    masked = batch.elements[np.array([True, False, False, True])]
    assert masked.metadata[ID] == ["id0", "id3"]
    with pytest.raises(IndexError, match="mask"):
        batch.elements[np.array([True, False])]

    assert len(batch.elements) == 4
    assert [el.metadata[ID] for el in batch.elements] == ["id0", "id1", "id2", "id3"]


def test_builder_copies_and_does_not_touch_its_base():
    base = _batch(2)
    b = Batch.Builder(base=base)
    b.fields["z"] = np.array([7, 8])
    del b.fields["x"]
    b.metadata[ID] = ["a", "b"]
    b.metadata[LABELS]["color"][0] = "green"
    new = b.make_batch()
    assert list(new.fields) == ["y", "z"]
    assert new.metadata[ID] == ["a", "b"]
    assert new.metadata[LABELS]["color"] == ["green", "blue"]
    # base unchanged
    assert list(base.fields) == ["x", "y"]
    assert base.metadata[ID] == ["id0", "id1"]
    assert base.metadata[LABELS]["color"] == ["red", "blue"]
    with pytest.raises(IntroscopeError, match="base="):
        Batch.Builder(base)


def test_metadata_only_batch():
    b = Batch.Builder()
    b.metadata[ID] = [1, 2, 3]
    batch = b.make_batch()
    assert batch.batch_size == 3
    assert dict(batch.fields) == {}
    assert batch.elements[2].metadata[ID] == 3
    with pytest.raises(IntroscopeError, match="at least one field or one metadata"):
        Batch.Builder().make_batch()


def test_snapshots_do_not_nest():
    inner = _batch(2)
    b = Batch.Builder(base=inner)
    b.snapshots["before"] = inner
    with_snap = b.make_batch()
    b2 = Batch.Builder(base=with_snap)
    b2.snapshots["again"] = with_snap
    twice = b2.make_batch()
    assert set(twice.snapshots) == {"before", "again"}
    assert twice.snapshots["again"].snapshots == {}
    assert twice.snapshots["again"] == inner
    assert twice.elements[1].snapshots["before"].metadata[ID] == "id1"


def test_equality():
    a, b = _batch(), _batch()
    assert a == b and not (a != b)
    assert a != Batch({"x": a.fields["x"]})
    changed = Batch.Builder(base=a)
    changed.fields["y"] = np.array([0, 10, 20, 31])
    assert a != changed.make_batch()
    dtype = Batch.Builder(base=a)
    dtype.fields["y"] = a.fields["y"].astype(np.int32)
    assert a != dtype.make_batch()
    meta = Batch.Builder(base=a)
    meta.metadata[ID] = ["id0", "id1", "id2", "other"]
    assert a != meta.make_batch()
    assert a != "not a batch"
    with pytest.raises(TypeError):
        hash(a)


def test_pickle_round_trip_in_memory():
    batch = _batch()
    b = Batch.Builder(base=batch)
    b.snapshots["s"] = batch
    batch = b.make_batch()
    loaded = pickle.loads(pickle.dumps(batch))
    assert loaded == batch
    assert loaded.metadata[LABELS]["size"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="read-only"):
        loaded.fields["x"][0, 0] = 1.0


def test_concatenate_batches():
    a, b = _batch(2), _batch(4)
    joined = concatenate_batches([a, b])
    assert joined.batch_size == 6
    np.testing.assert_array_equal(joined.fields["y"], [0, 10, 0, 10, 20, 30])
    assert joined.metadata[ID] == ["id0", "id1", "id0", "id1", "id2", "id3"]
    assert joined.metadata[LABELS]["size"] == [0, 1, 0, 1, 2, 3]
    with pytest.raises(IntroscopeError, match="empty"):
        concatenate_batches([])
    with pytest.raises(IntroscopeError, match="fields"):
        concatenate_batches([a, Batch({"x": np.zeros((1, 3))})])
    with pytest.raises(IntroscopeError, match="shape"):
        concatenate_batches([Batch({"x": np.zeros((1, 3))}), Batch({"x": np.zeros((1, 2))})])
    with pytest.raises(IntroscopeError, match="lacks metadata"):
        concatenate_batches([a, Batch({"x": a.fields["x"], "y": a.fields["y"]})])


def test_fields_and_snapshots_compare_array_wise() -> None:
    # DNIKit users write ``batch.fields == other.fields``: one bool, arrays compared by contents
    def make(seed: int) -> Batch:
        rng = np.random.default_rng(seed)
        builder = Batch.Builder({"a": rng.standard_normal((4, 3)), "b": np.arange(4)})
        builder.snapshots = {"origin": Batch({"a": rng.standard_normal((4, 2))})}
        return builder.make_batch()

    one, same, other = make(0), make(0), make(1)
    assert one.fields is not same.fields
    assert one.fields == same.fields and not (one.fields != same.fields)
    assert one.fields != other.fields
    assert one.snapshots == same.snapshots and one.snapshots != other.snapshots
    assert one.snapshots != one.fields  # different keys
    assert one.fields == {"a": one.fields["a"].copy(), "b": np.arange(4)}
    # same values, different dtype or shape: not equal (as Batch equality)
    assert one.fields != {"a": one.fields["a"], "b": np.arange(4, dtype=np.int8)}
    assert one.fields != {"a": one.fields["a"].reshape(4, 3, 1), "b": np.arange(4)}
    with pytest.raises(TypeError):
        one.fields["a"] = np.zeros((4, 3))  # type: ignore[index]
    assert dict(one.fields).keys() == {"a", "b"}


def test_elements_compare_by_contents() -> None:
    key = Batch.MetaKey("tag")
    builder = Batch.Builder({"a": np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])})
    builder.metadata[key] = ["x", "y", "x"]
    batch = builder.make_batch()
    first, second, third = batch.elements
    assert first == batch.elements[0]
    assert first == third  # equal fields and metadata at another index
    assert first != second
    relabelled = Batch.Builder(base=batch)
    relabelled.metadata[key] = ["z", "y", "x"]
    assert relabelled.make_batch().elements[0] != first  # metadata differs


def test_metadata_type_can_be_made_empty() -> None:
    empty = Batch.MetadataType()
    assert not empty and len(empty) == 0 and list(empty.keys()) == []
    with pytest.raises(KeyError):
        _ = empty[Batch.MetaKey("missing")]


def test_builder_fills_a_new_metakey_element_by_element_as_in_dnikit():
    key = Batch.MetaKey("score")
    builder = Batch.Builder({"x": np.zeros(3)})
    for value in (0.1, 0.2, 0.3):
        builder.metadata[key].append(value)
    assert builder.make_batch().metadata[key] == [0.1, 0.2, 0.3]
    untouched = Batch.Builder({"x": np.zeros(3)})
    _ = untouched.metadata[key]  # read but never filled: no such metadata in the batch
    assert key not in untouched.make_batch().metadata
