"""Processor, MeanStdNormalizer, Transposer, Flattener, FieldRemover, FieldRenamer, Concatenator."""

import numpy as np
import pytest

from introscope.base import Batch, peek_first_batch, pipeline
from introscope.exceptions import IntroscopeError
from introscope.processors import (
    Concatenator,
    FieldRemover,
    FieldRenamer,
    Flattener,
    MeanStdNormalizer,
    Processor,
    Transposer,
)
from introscope.samples import StubProducer


def run(stage, fields, metadata=None):
    return stage._get_batch_processor()(_batch(fields, metadata))


def _batch(fields, metadata=None):
    builder = Batch.Builder(fields)
    for key, value in (metadata or {}).items():
        builder.metadata[key] = value
    return builder.make_batch()


def test_processor_applies_func_to_selected_fields_only():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 2))
    out = run(Processor(lambda x: x * 10, fields="a"), {"a": a, "b": b})
    np.testing.assert_array_equal(out.fields["a"], a * 10)
    np.testing.assert_array_equal(out.fields["b"], b)
    out = run(Processor(np.negative), {"a": a, "b": b})
    np.testing.assert_array_equal(out.fields["b"], -b)


def test_processor_keeps_metadata_and_runs_lazily_in_pipeline():
    key = Batch.MetaKey("id")
    producer = StubProducer({"a": np.arange(5.0)}, metadata={key: list("abcde")})
    calls = []
    stage = Processor(lambda x: (calls.append(len(x)), x + 1)[1])
    piped = pipeline(producer, stage)
    assert calls == []
    batches = list(piped(2))
    assert calls == [2, 2, 1]
    assert [list(b.fields["a"]) for b in batches] == [[1, 2], [3, 4], [5]]
    assert batches[2].metadata[key] == ["e"]


def test_processor_unknown_field_names_field_and_present_fields():
    with pytest.raises(IntroscopeError, match=r"no field 'c'.*present: \['a', 'b'\]"):
        run(Processor(np.abs, fields=["a", "c"]), {"a": np.ones(2), "b": np.ones(2)})


def test_processor_rejects_bad_function_results():
    with pytest.raises(IntroscopeError, match="returned a list for field 'a'"):
        run(Processor(lambda x: list(x)), {"a": np.ones(2)})
    with pytest.raises(IntroscopeError, match="batch dimension of field 'a' from 3 to"):
        run(Processor(lambda x: x[:1]), {"a": np.ones(3)})
    with pytest.raises(TypeError, match="func must be callable, got int"):
        Processor(3)


def test_mean_std_normalizer_values_and_broadcast():
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    out = run(MeanStdNormalizer(mean=1.0, std=2.0), {"x": x})
    np.testing.assert_allclose(out.fields["x"], [[0, 0.5], [1, 2]])
    out = run(MeanStdNormalizer(np.array([1.0, 2.0]), np.array([2.0, 3.0])), {"x": x})
    np.testing.assert_allclose(out.fields["x"], [[0, 0], [1, 1]])
    u8 = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_allclose(
        run(MeanStdNormalizer(mean=128, std=1), {"x": u8}).fields["x"], [[-128, 127]]
    )


def test_mean_std_normalizer_errors():
    with pytest.raises(ValueError, match="std must be non-zero"):
        MeanStdNormalizer(mean=0, std=0)
    with pytest.raises(IntroscopeError, match="field 's' has dtype <U1"):
        run(MeanStdNormalizer(mean=0, std=1), {"s": np.array(["a", "b"])})
    with pytest.raises(IntroscopeError, match="field 'o' has dtype object"):
        run(MeanStdNormalizer(mean=0, std=1, fields="o"), {"o": np.array([None, 1])})


def test_transposer_reorders_dimensions():
    x = np.arange(24).reshape(2, 3, 4)
    out = run(Transposer(dim=[0, 2, 1]), {"x": x})
    assert out.fields["x"].shape == (2, 4, 3)
    np.testing.assert_array_equal(out.fields["x"][1], x[1].T)
    nchw = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    nhwc = run(Transposer([0, 2, 3, 1]), {"x": nchw}).fields["x"]
    assert nhwc.shape == (2, 4, 5, 3)
    assert nhwc[1, 2, 3, 0] == nchw[1, 0, 2, 3]


def test_transposer_errors():
    with pytest.raises(ValueError, match="dimension 0 is the batch"):
        Transposer(dim=[1, 0, 2])
    with pytest.raises(ValueError, match="permutation"):
        Transposer(dim=[0, 1, 1])
    with pytest.raises(IntroscopeError, match="field 'y' has shape \\(2, 3\\)"):
        run(Transposer(dim=[0, 2, 1]), {"y": np.ones((2, 3))})


def test_flattener_orders():
    x = np.arange(12).reshape(2, 2, 3)
    np.testing.assert_array_equal(run(Flattener(), {"x": x}).fields["x"], x.reshape(2, 6))
    f = run(Flattener("F"), {"x": x}).fields["x"]
    np.testing.assert_array_equal(f, np.stack([e.flatten("F") for e in x]))
    np.testing.assert_array_equal(f[0], [0, 3, 1, 4, 2, 5])
    for order in ("A", "K"):
        np.testing.assert_array_equal(run(Flattener(order), {"x": x}).fields["x"], x.reshape(2, 6))
    assert run(Flattener(), {"x": np.ones(3)}).fields["x"].shape == (3, 1)
    with pytest.raises(ValueError, match="order"):
        Flattener("Z")


def test_field_remover_remove_and_keep():
    fields = {"a": np.ones(2), "b": np.zeros(2), "c": np.ones(2)}
    assert list(run(FieldRemover(fields="a"), fields).fields) == ["b", "c"]
    assert list(run(FieldRemover(["a", "c"], keep=True), fields).fields) == ["a", "c"]
    with pytest.raises(IntroscopeError, match=r"FieldRemover: the batch has no field 'x'"):
        run(FieldRemover(fields="x"), fields)
    with pytest.raises(IntroscopeError, match="remove every field"):
        run(FieldRemover(fields=["a", "b", "c"]), fields)
    # With metadata left, removing every field is allowed (a metadata-only batch).
    key = Batch.MetaKey("k")
    out = run(FieldRemover(fields=["a", "b", "c"]), fields, {key: [1, 2]})
    assert not out.fields and out.metadata[key] == [1, 2]


def test_field_renamer_renames_swaps_and_overwrites():
    a, b, c = np.zeros(2), np.ones(2), np.full(2, 2.0)
    out = run(FieldRenamer({"a": "x"}), {"a": a, "b": b})
    assert set(out.fields) == {"x", "b"}
    np.testing.assert_array_equal(out.fields["x"], a)
    out = run(FieldRenamer({"a": "b", "b": "a"}), {"a": a, "b": b})
    np.testing.assert_array_equal(out.fields["a"], b)
    np.testing.assert_array_equal(out.fields["b"], a)
    # Renaming onto an existing field replaces it (as DNIKit does).
    out = run(FieldRenamer({"a": "c"}), {"a": a, "c": c})
    assert set(out.fields) == {"c"}
    np.testing.assert_array_equal(out.fields["c"], a)
    with pytest.raises(IntroscopeError, match="no field 'z'"):
        run(FieldRenamer({"z": "y"}), {"a": a})
    with pytest.raises(ValueError, match="renamed to \\['q'\\]"):
        FieldRenamer({"a": "q", "b": "q"})


def test_concatenator_values_and_errors():
    m, n = np.arange(12.0).reshape(2, 2, 3), np.arange(6.0).reshape(2, 1, 3) + 100
    out = run(Concatenator(dim=1, output_field="mn", fields=["m", "n"]), {"m": m, "n": n})
    assert out.fields["mn"].shape == (2, 3, 3)
    np.testing.assert_array_equal(out.fields["mn"][:, :2], m)
    np.testing.assert_array_equal(out.fields["mn"][:, 2:], n)
    assert set(out.fields) == {"m", "n", "mn"}
    out = run(Concatenator(dim=-1, output_field="k", fields=["m", "m"]), {"m": m})
    assert out.fields["k"].shape == (2, 2, 6)
    with pytest.raises(ValueError, match="non-zero"):
        Concatenator(dim=0, output_field="o", fields=["m"])
    with pytest.raises(ValueError, match="non-empty"):
        Concatenator(dim=1, output_field="o", fields=[])
    with pytest.raises(IntroscopeError, match="match in every dimension but 2"):
        run(Concatenator(dim=2, output_field="o", fields=["m", "n"]), {"m": m, "n": n})
    with pytest.raises(IntroscopeError, match="not a non-batch dimension"):
        run(Concatenator(dim=-3, output_field="o", fields=["m"]), {"m": m})
    with pytest.raises(IntroscopeError, match="no field 'q'"):
        run(Concatenator(dim=1, output_field="o", fields=["m", "q"]), {"m": m})


def test_stages_compose_in_pipeline():
    producer = StubProducer({"x": np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)})
    out = peek_first_batch(
        pipeline(producer, Transposer([0, 2, 1]), Flattener(), FieldRenamer({"x": "y"})), 2
    )
    np.testing.assert_array_equal(
        out.fields["y"], np.arange(24.0).reshape(2, 3, 4).transpose(0, 2, 1).reshape(2, 12)
    )


def test_mean_std_that_does_not_broadcast_to_the_batch_is_named():
    from introscope.exceptions import IntroscopeValueError

    batch = Batch({"x": np.ones((3, 2, 4, 4), np.float32)})
    per_channel = MeanStdNormalizer(mean=np.array([1.0, 3.0]).reshape(2, 1, 1), std=2.0)
    out = peek_first_batch(pipeline(lambda n: iter([batch]), per_channel), 3).fields["x"]
    assert out.shape == (3, 2, 4, 4) and out[0, :, 0, 0].tolist() == [0.0, -1.0]
    for mean in (np.zeros(3), np.zeros((5, 3, 2, 4, 4))):  # no broadcast; a wider result
        stage = MeanStdNormalizer(mean=mean, std=1.0)
        with pytest.raises(IntroscopeValueError, match=r"mean of shape .* do not broadcast"):
            peek_first_batch(pipeline(lambda n: iter([batch]), stage), 3)
