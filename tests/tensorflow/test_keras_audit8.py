"""Keras adapter: a batch that Keras fails to run is reported as an introscope error that names
the batch and its inputs, with the original message in one line (no ANSI escape codes)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("torch")

from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches  # noqa: E402
from introscope.base._adapter_text import one_line  # noqa: E402
from introscope.exceptions import IntroscopeError  # noqa: E402
from introscope.tensorflow import load_tf_model_from_memory  # noqa: E402
from introscope.tensorflow._keras import import_keras  # noqa: E402

keras = import_keras()
layers = keras.layers


def _embedding_model():  # noqa: ANN202
    keras.utils.set_random_seed(0)
    ids = keras.Input((5,), dtype="int32", name="ids")
    emb = layers.Embedding(10, 3, name="emb")(ids)
    return keras.Model(ids, layers.GlobalAveragePooling1D(name="gap")(emb))


def _run(model, ids: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001
    batch = Batch({"ids": ids})
    out = peek_first_batch(pipeline(producer_from_batches(batch), model(["gap"])), batch_size=8)
    return dict(out.fields)


def test_out_of_range_embedding_id_is_an_introscope_error_naming_the_batch() -> None:
    model = load_tf_model_from_memory(model=_embedding_model())
    good = np.array([[1, 2, 3, 4, 9]], dtype=np.int64)
    assert _run(model, good)["gap"].shape == (1, 3)
    with pytest.raises(IntroscopeError) as info:
        _run(model, np.array([[1, 2, 3, 4, 40], [0, 0, 0, 0, 0]], dtype=np.int64))
    message = str(info.value)
    assert message.startswith(
        "Keras failed on a batch of 2 samples (inputs 'ids' int32[2, 5]): "
    ), message
    assert "\x1b" not in message and "\n" not in message
    assert "Check the input values" in message
    cause = info.value.__cause__
    assert cause is not None and not isinstance(cause, IntroscopeError)
    assert type(cause).__name__ in message  # the framework's exception class, kept chained
    # The framework's own words are kept (ANSI codes and line breaks dropped).
    assert one_line(cause)[:60] in message


def test_one_line_strips_ansi_codes_and_line_breaks() -> None:
    exc = IndexError("Exception encountered.\n\n\x1b[1mindex out of range in self\x1b[0m\n")
    assert one_line(exc) == "Exception encountered. index out of range in self"
    assert one_line(ValueError("a" * 400)) == "a" * 300 + "..."


def test_introscope_errors_inside_the_forward_call_are_not_rewrapped() -> None:
    keras.utils.set_random_seed(0)
    x = keras.Input((2,), name="x")
    model = load_tf_model_from_memory(model=keras.Model(x, layers.Dense(2, name="d")(x)))
    backend = model._backend
    refusal = IntroscopeError("refused by the stage")

    def refuse(feeds, training):  # noqa: ANN001, ANN202, ARG001
        raise refusal

    backend._submodel = lambda names: refuse  # noqa: ARG005
    with pytest.raises(IntroscopeError) as info:
        backend.run_inference({"x": np.zeros((1, 2), np.float32)}, frozenset({"d"}))
    assert info.value is refusal
