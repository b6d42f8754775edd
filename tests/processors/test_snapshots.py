"""SnapshotSaver, SnapshotRemover and PipelineDebugger."""

import numpy as np
import pytest

from introscope.base import Batch, peek_first_batch, pipeline
from introscope.exceptions import IntroscopeError
from introscope.processors import (
    FieldRenamer,
    PipelineDebugger,
    Processor,
    SnapshotRemover,
    SnapshotSaver,
)
from introscope.samples import StubProducer

ID = Batch.MetaKey("id")


def producer():
    return StubProducer(
        {"a": np.arange(4.0), "b": np.arange(4.0) * 10}, metadata={ID: ["p", "q", "r", "s"]}
    )


def test_snapshot_saver_keeps_state_before_later_stages():
    out = peek_first_batch(
        pipeline(producer(), SnapshotSaver(), Processor(lambda x: x + 1), FieldRenamer({"a": "z"})),
        4,
    )
    snap = out.snapshots["snapshot"]
    np.testing.assert_array_equal(snap.fields["a"], np.arange(4.0))
    np.testing.assert_array_equal(snap.fields["b"], np.arange(4.0) * 10)
    assert snap.metadata[ID] == ["p", "q", "r", "s"]
    np.testing.assert_array_equal(out.fields["z"], np.arange(4.0) + 1)
    # Slicing the batch slices its snapshots too.
    assert out.elements[1:3].snapshots["snapshot"].fields["a"].tolist() == [1.0, 2.0]


def test_snapshot_saver_fields_keep_and_omit():
    keep = peek_first_batch(pipeline(producer(), SnapshotSaver("s1", fields="a")), 4)
    assert list(keep.snapshots["s1"].fields) == ["a"]
    omit = peek_first_batch(pipeline(producer(), SnapshotSaver("s2", fields="a", keep=False)), 4)
    assert list(omit.snapshots["s2"].fields) == ["b"]
    with pytest.raises(IntroscopeError, match="SnapshotSaver: the batch has no field 'c'"):
        peek_first_batch(pipeline(producer(), SnapshotSaver(fields="c")), 4)


def test_snapshot_remover():
    stages = [SnapshotSaver("one"), SnapshotSaver("two"), SnapshotSaver("three")]
    base = pipeline(producer(), stages)
    assert sorted(peek_first_batch(base, 2).snapshots) == ["one", "three", "two"]
    assert not peek_first_batch(pipeline(base, SnapshotRemover()), 2).snapshots
    out = peek_first_batch(pipeline(base, SnapshotRemover("two")), 2)
    assert sorted(out.snapshots) == ["one", "three"]
    out = peek_first_batch(pipeline(base, SnapshotRemover(["two", "one"], keep=True)), 2)
    assert sorted(out.snapshots) == ["one", "two"]
    with pytest.raises(IntroscopeError, match="no snapshot 'four'"):
        peek_first_batch(pipeline(base, SnapshotRemover("four")), 2)


def test_pipeline_debugger_prints_first_batch_of_each_pass(capsys):
    debug = PipelineDebugger(label="here", dump_fields=True, fields="a")
    piped = pipeline(producer(), SnapshotSaver(), debug)
    batches = list(piped(2))
    assert len(batches) == 2 and batches[0].fields["a"].tolist() == [0.0, 1.0]
    text = capsys.readouterr().out
    assert text.count("here Batch(batch_size=2)") == 1
    assert "a: (2,) float64\n[0. 1.]" in text
    assert "b: (2,) float64\n" in text and "[ 0. 10.]" not in text
    assert "snapshot: ['a', 'b']" in text and "MetaKey('id')" in text
    list(piped(2))
    assert capsys.readouterr().out.count("here Batch") == 1
    list(pipeline(producer(), PipelineDebugger(first_only=False))(1))
    assert capsys.readouterr().out.count("Batch(batch_size=1)") == 4
