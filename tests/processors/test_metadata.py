"""MetadataRemover, MetadataRenamer and Composer."""

import numpy as np
import pytest

from introscope.base import Batch, pipeline
from introscope.exceptions import IntroscopeError
from introscope.processors import Composer, MetadataRemover, MetadataRenamer
from introscope.samples import StubProducer

ID = Batch.MetaKey("id")
PATH = Batch.MetaKey("path")
LABELS = Batch.DictMetaKey("labels")
EXTRA = Batch.DictMetaKey("extra")


def make_batch():
    builder = Batch.Builder({"x": np.arange(4.0)})
    builder.metadata[ID] = [10, 11, 12, 13]
    builder.metadata[PATH] = ["a", "b", "c", "d"]
    builder.metadata[LABELS] = {"color": ["red", "blue", "red", "green"], "size": [1, 2, 3, 4]}
    builder.metadata[EXTRA] = {"color": [0, 0, 1, 1], "flag": [True, False, True, False]}
    return builder.make_batch()


def run(stage, batch=None):
    return stage._get_batch_processor()(batch or make_batch())


def layout(batch):
    """Metadata as {key name: None (simple) or sorted entry names}."""
    md = batch.metadata
    return {
        k.name: (sorted(md[k]) if isinstance(k, Batch.DictMetaKey) else None) for k in md.keys()
    }


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, {}),
        ({"keep": True}, None),
        (
            {"meta_keys": ID},
            {"path": None, "labels": ["color", "size"], "extra": ["color", "flag"]},
        ),
        ({"meta_keys": [ID, LABELS]}, {"path": None, "extra": ["color", "flag"]}),
        (
            {"meta_keys": LABELS, "keys": "color"},
            {"id": None, "path": None, "labels": ["size"], "extra": ["color", "flag"]},
        ),
        ({"keys": "color"}, {"id": None, "path": None, "labels": ["size"], "extra": ["flag"]}),
        ({"meta_keys": ID, "keep": True}, {"id": None}),
        ({"meta_keys": LABELS, "keys": "color", "keep": True}, {"labels": ["color"]}),
        ({"keys": ["color"], "keep": True}, {"labels": ["color"], "extra": ["color"]}),
        ({"meta_keys": [ID, EXTRA], "keep": True}, {"id": None, "extra": ["color", "flag"]}),
    ],
)
def test_metadata_remover_selection(kwargs, expected):
    out = run(MetadataRemover(**kwargs))
    full = layout(make_batch())
    assert layout(out) == (full if expected is None else expected)
    np.testing.assert_array_equal(out.fields["x"], np.arange(4.0))


def test_metadata_remover_values_survive():
    out = run(MetadataRemover(meta_keys=LABELS, keys="size"))
    assert out.metadata[LABELS]["color"] == ["red", "blue", "red", "green"]
    assert out.metadata[ID] == [10, 11, 12, 13]
    # Removing the last entry of a DictMetaKey removes the key.
    out = run(MetadataRemover(meta_keys=EXTRA, keys=["color", "flag"]))
    assert EXTRA not in out.metadata


def test_metadata_remover_errors():
    with pytest.raises(ValueError, match="pass them as meta_keys"):
        MetadataRemover(keys=ID)
    with pytest.raises(TypeError, match="meta_keys"):
        MetadataRemover(meta_keys=["id"])
    missing = Batch.MetaKey("missing")
    with pytest.raises(IntroscopeError, match="no metadata MetaKey\\('missing'\\)"):
        run(MetadataRemover(meta_keys=missing))
    with pytest.raises(IntroscopeError, match="no entry \\['colour'\\]"):
        run(MetadataRemover(keys="colour"))


def test_metadata_renamer():
    out = run(MetadataRenamer({"color": "colour"}))
    assert out.metadata[LABELS]["colour"] == ["red", "blue", "red", "green"]
    assert out.metadata[EXTRA]["colour"] == [0, 0, 1, 1]
    out = run(MetadataRenamer({"color": "colour"}, meta_keys=LABELS))
    assert sorted(out.metadata[LABELS]) == ["colour", "size"]
    assert sorted(out.metadata[EXTRA]) == ["color", "flag"]
    out = run(MetadataRenamer({"color": "size", "size": "color"}, meta_keys=LABELS))
    assert out.metadata[LABELS]["size"] == ["red", "blue", "red", "green"]
    assert out.metadata[LABELS]["color"] == [1, 2, 3, 4]
    with pytest.raises(TypeError, match="are Batch.MetaKey"):
        MetadataRenamer({"a": "b"}, meta_keys=ID)
    with pytest.raises(IntroscopeError, match="no entry \\['nope'\\]"):
        run(MetadataRenamer({"nope": "x"}))


def test_composer_from_element_filter_keeps_matching_elements():
    comp = Composer.from_element_filter(lambda e: e.fields["x"] % 2 == 1)
    out = run(comp)
    np.testing.assert_array_equal(out.fields["x"], [1.0, 3.0])
    assert out.metadata[ID] == [11, 13]
    assert out.metadata[LABELS]["color"] == ["blue", "green"]


def test_composer_from_dict_metadata():
    out = run(Composer.from_dict_metadata(LABELS, "color", "red"))
    assert out.metadata[ID] == [10, 12]
    assert run(Composer.from_dict_metadata(LABELS, "nope", "red")) is None
    assert run(Composer.from_dict_metadata(Batch.DictMetaKey("other"), "c", 1)) is None
    with pytest.raises(TypeError, match="must be a Batch.DictMetaKey, got MetaKey"):
        Composer.from_dict_metadata(ID, "color", "red")


def test_composer_drops_empty_batches_in_pipeline():
    producer = StubProducer({"x": np.arange(10)})
    keep_big = Composer.from_element_filter(lambda e: e.fields["x"] >= 7)
    batches = list(pipeline(producer, keep_big)(3))
    # Batches [0,1,2] and [3,4,5] match nothing and are dropped rather than passed on empty.
    assert [b.fields["x"].tolist() for b in batches] == [[7, 8], [9]]
    halve = Composer(lambda b: b.elements[: b.batch_size // 2] if b.batch_size > 1 else None)
    nine = StubProducer({"x": np.arange(9)})  # the last batch, [8], becomes None and is dropped
    assert [b.fields["x"].tolist() for b in pipeline(nine, halve)(4)] == [[0, 1], [4, 5]]
    with pytest.raises(IntroscopeError, match="returned a int"):
        list(pipeline(producer, Composer(lambda b: 3))(4))
