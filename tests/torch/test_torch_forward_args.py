"""Modules whose ``forward`` takes keyword arguments: required keyword-only and optional inputs."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch, pipeline

torch = pytest.importorskip("torch")

from introscope.torch import load_torch_model_from_memory  # noqa: E402


class KeywordOnly(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x, *, mask):
        return self.fc(x * mask)


class OptionalMask(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x, mask=None, scale: float = 2.0):
        if mask is not None:
            x = x * mask
        return self.fc(x) * scale


def _data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 5)).astype(np.float32)
    mask = (rng.random((10, 5)) > 0.5).astype(np.float32)
    return x, mask


def _run(model, fields, names=("fc", "output")):
    def producer(batch_size):
        n = len(next(iter(fields.values())))
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in fields.items()})

    out = {n: [] for n in names}
    for batch in pipeline(producer, model(list(names)))(4):
        for n in names:
            out[n].append(batch.fields[n])
    return {n: np.concatenate(v) for n, v in out.items()}


def _direct(net, x, **kwargs):
    with torch.no_grad():
        return net(torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in kwargs.items()})


@pytest.mark.parametrize("example", [False, True])
def test_required_keyword_only_argument_is_an_input(example: bool) -> None:
    x, mask = _data()
    net = KeywordOnly()
    ex = {"x": x[:2], "mask": mask[:2]} if example else None
    model = load_torch_model_from_memory(net, example_input=ex)
    got = _run(model, {"x": x, "mask": mask})
    np.testing.assert_array_equal(got["output"], _direct(net, x, mask=mask).numpy())
    assert sorted(model.input_layers) == ["mask", "x"]


def test_missing_keyword_only_argument_is_named() -> None:
    x, _ = _data()
    model = load_torch_model_from_memory(KeywordOnly())
    with pytest.raises(Exception, match="mask"):
        _run(model, {"x": x})


@pytest.mark.parametrize("example", [False, True])
def test_optional_argument_is_fed_when_named(example: bool) -> None:
    x, mask = _data()
    net = OptionalMask()
    ex = {"x": x[:2], "mask": mask[:2]} if example else None
    model = load_torch_model_from_memory(net, example_input=ex)
    got = _run(model, {"x": x, "mask": mask})
    np.testing.assert_allclose(got["output"], _direct(net, x, mask=mask).numpy(), rtol=1e-6)
    # and without it the default (no mask) applies
    plain = _run(load_torch_model_from_memory(net), {"x": x})
    np.testing.assert_allclose(plain["output"], _direct(net, x).numpy(), rtol=1e-6)
    assert not np.allclose(plain["output"], got["output"])


def test_unknown_field_still_refused() -> None:
    x, mask = _data()
    with pytest.raises(Exception, match="optional"):
        load_torch_model_from_memory(OptionalMask(), example_input={"x": x, "bogus": mask})
    with pytest.raises(Exception, match="FieldRemover"):
        _run(load_torch_model_from_memory(OptionalMask()), {"x": x, "bogus": mask})
