"""Model over a tiny numpy backend: responses, auto-rename, errors, response_infos spellings."""

from collections.abc import Mapping

import numpy as np
import pytest

from introscope.base import Batch, Model, ModelBackend, ResponseInfo, pipeline
from introscope.exceptions import IntroscopeError

Kind = ResponseInfo.LayerKind


def _info(name: str, shape: tuple, kind=Kind.DENSE, dtype=np.float64) -> ResponseInfo:
    return ResponseInfo(name, np.dtype(dtype), shape, ResponseInfo.Layer(name, kind, kind.name))


class TwoLayerBackend:
    """hidden = relu(x @ W), logits = hidden @ V, in numpy; counts inference calls."""

    def __init__(self) -> None:
        self.W = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, -0.5]])
        self.V = np.array([[1.0], [2.0], [3.0]])
        self.calls: list[frozenset[str]] = []

    def run_inference(self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]):
        self.calls.append(outputs)
        hidden = np.maximum(inputs["input"] @ self.W, 0.0)
        values = {"input": inputs["input"], "hidden": hidden, "logits": hidden @ self.V}
        return {name: values[name] for name in outputs}

    def get_response_infos(self):
        return [
            _info("input", (None, 2), Kind.PLACEHOLDER),
            _info("hidden", (None, 3), Kind.RELU),
            _info("logits", (None, 1)),
        ]

    def get_input_layer_responses(self):
        return [_info("input", (None, 2), Kind.PLACEHOLDER)]


class TwoInputBackend:
    def run_inference(self, inputs, outputs):
        return {"sum": inputs["a"] + inputs["b"]}

    def get_response_infos(self):
        return [_info("sum", (None, 2))]

    def get_input_layer_responses(self):
        return [_info("a", (None, 2)), _info("b", (None, 2))]


def _producer(x, **extra):
    def produce(batch_size):
        for start in range(0, len(x), batch_size):
            b = Batch.Builder({"pixels": x[start : start + batch_size]})
            b.metadata[Batch.StdKeys.IDENTIFIER] = list(
                range(start, min(start + batch_size, len(x)))
            )
            yield b.make_batch()

    return produce


def test_backend_satisfies_protocol():
    assert isinstance(TwoLayerBackend(), ModelBackend)


def test_responses_values_and_auto_rename_of_single_input():
    backend = TwoLayerBackend()
    model = Model(backend)
    x = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    out = list(pipeline(_producer(x), model(["logits", "hidden"]))(2))
    assert [b.batch_size for b in out] == [2, 1]
    hidden = np.concatenate([b.fields["hidden"] for b in out])
    np.testing.assert_allclose(hidden, [[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [4.0, 0.0, 0.0]])
    logits = np.concatenate([b.fields["logits"] for b in out])
    np.testing.assert_allclose(logits, [[3.0], [2.0], [4.0]])
    # fields in the model's response order; input field replaced; metadata kept
    assert list(out[0].fields) == ["hidden", "logits"]
    assert out[1].metadata[Batch.StdKeys.IDENTIFIER] == [2]
    assert backend.calls == [frozenset({"hidden", "logits"})] * 2


def test_single_response_by_name_and_all_by_default():
    model = Model(TwoLayerBackend())
    x = np.ones((1, 2))
    (only,) = list(pipeline(_producer(x), model("logits"))(4))
    assert list(only.fields) == ["logits"]
    (every,) = list(pipeline(_producer(x), model())(4))
    assert list(every.fields) == ["input", "hidden", "logits"]


def test_auto_rename_checks_shape():
    model = Model(TwoLayerBackend())
    with pytest.raises(IntroscopeError, match=r"'pixels' has per-element shape \(3,\).*\(2\)"):
        list(pipeline(_producer(np.ones((2, 3))), model("logits"))(2))


def test_multi_input_mismatch_error():
    model = Model(TwoInputBackend())
    with pytest.raises(IntroscopeError, match=r"expects inputs named \['a', 'b'\].*\['a'\]"):
        list(pipeline(lambda n: iter([Batch({"a": np.ones((1, 2))})]), model())(1))
    ok = pipeline(
        lambda n: iter([Batch({"a": np.ones((1, 2)), "b": np.full((1, 2), 2.0)})]), model()
    )
    (batch,) = list(ok(1))
    np.testing.assert_array_equal(batch.fields["sum"], [[3.0, 3.0]])


def test_unknown_response_name_suggests_close_match():
    model = Model(TwoLayerBackend())
    with pytest.raises(
        IntroscopeError, match=r"unknown response 'hiden' \(did you mean 'hidden'\?\)"
    ):
        model(["hiden", "logits"])
    with pytest.raises(IntroscopeError, match="empty"):
        model([])
    with pytest.raises(IntroscopeError, match="did you mean 'logits'"):
        model.response_infos["logit"]
    # DNIKit raised KeyError: both except clauses work, and the mapping's get/in work
    with pytest.raises(KeyError, match=r"^unknown response 'hiden'"):
        model(["hiden"])
    assert model.response_infos.get("logit") is None and "logit" not in model.response_infos


def test_response_infos_mapping_and_call():
    model = Model(TwoLayerBackend())
    infos = model.response_infos
    assert isinstance(infos, Mapping)
    assert list(infos) == ["input", "hidden", "logits"]
    assert infos["hidden"].layer.kind is Kind.RELU
    assert infos["logits"].shape == (None, 1)
    assert dict(model.response_infos()) == dict(infos)
    relu = [i.name for i in model.response_infos().values() if i.layer.kind == Kind.RELU]
    assert relu == ["hidden"]
    assert list(model.input_layers.keys()) == ["input"]
    assert len(infos) == 3


def test_non_numeric_input_is_rejected():
    model = Model(TwoLayerBackend())
    with pytest.raises(IntroscopeError, match="numeric"):
        list(pipeline(_producer(np.array([["a", "b"]])), model("logits"))(1))


def test_fields_besides_the_inputs_ride_along_as_in_dnikit():
    model = Model(TwoInputBackend())
    a, b = np.ones((3, 2)), np.full((3, 2), 2.0)
    batch = Batch({"a": a, "b": b, "label": np.arange(3)})
    (out,) = list(pipeline(lambda bs: iter([batch]), model("sum"))(3))
    assert list(out.fields) == ["sum"] and out.fields["sum"].tolist() == [[3.0, 3.0]] * 3
    with pytest.raises(IntroscopeError, match=r"expects inputs named \['a', 'b'\]"):
        list(pipeline(lambda bs: iter([Batch({"a": a, "label": b})]), model("sum"))(3))
