"""Pooling in the layout the response has: hints that name the right axes, and a warning when a
Pooler would reduce a response's channels away."""

import warnings

import numpy as np
import pytest

from introscope._validation import pooling_hint
from introscope.base import Batch, ResponseInfo, pipeline
from introscope.introspectors import PFA
from introscope.processors import Pooler


def _info(name, axis):
    layer = ResponseInfo.Layer(name, ResponseInfo.LayerKind.CONV_2D, "Conv2d")
    return ResponseInfo(name, np.dtype(np.float32), (None, 16, 4, 4), layer, axis)


def _producer(x):
    return lambda bs: (Batch({"conv": x[i : i + bs]}) for i in range(0, len(x), bs))


def test_pfa_hint_gives_the_channels_first_spelling_for_torch_layouts(rng):
    x = rng.normal(size=(30, 16, 4, 4)).astype(np.float32)
    with pytest.raises(Exception, match=r"Pooler\(dim=\(2, 3\).*PyTorch, ONNX: NCHW.*\(1, 2\)"):
        PFA.introspect(_producer(x), batch_size=10)
    # following the channels-first hint keeps the 16 channels as PFA's units
    result = PFA.introspect(
        pipeline(_producer(x), Pooler(dim=(2, 3), method=Pooler.Method.MAX)), batch_size=10
    )
    assert result.covariances["conv"].covariances.shape == (16, 16)


def test_hint_with_a_known_layout_names_exact_dims():
    assert "Pooler(dim=(2, 3)" in pooling_hint((8, 16, 4, 4), channel_axis=1)
    assert "Pooler(dim=(1, 2)" in pooling_hint((8, 4, 4, 16), channel_axis=-1)
    assert "Pooler(dim=2," in pooling_hint((8, 16, 10), channel_axis=1)
    assert pooling_hint((8, 3)) == ""


def test_pooler_warns_when_it_would_pool_the_channels(rng):
    x = rng.normal(size=(6, 16, 4, 4)).astype(np.float32)
    infos = {"conv": _info("conv", 1)}
    wrong = Pooler(dim=(1, 2), method=Pooler.Method.MAX, response_infos=infos)
    with pytest.warns(UserWarning, match=r"channels.*use dim=\(2, 3\)") as record:
        list(pipeline(_producer(x), wrong)(3))
    assert len(record) == 1  # once per field, not per batch
    assert record[0].filename == __file__  # points at the user's code
    right = Pooler(dim=(2, 3), method=Pooler.Method.MAX, response_infos=infos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (batch, _) = list(pipeline(_producer(x), right)(3))
    assert batch.fields["conv"].shape == (3, 16)


def test_a_one_dimensional_response_gets_advice_that_works() -> None:
    # It ended in a dangling "(samples, units):" with nothing after it.
    from introscope.exceptions import IntroscopeValueError
    from introscope.processors import Processor
    from introscope.samples import StubProducer

    values = np.random.default_rng(0).normal(size=40)
    with pytest.raises(IntroscopeValueError, match=r"shape \(samples, 1\) first, e\.g\. Processor"):
        PFA.introspect(StubProducer({"a": values}))
    fixed = pipeline(StubProducer({"a": values}), Processor(lambda x: x.reshape(len(x), 1)))
    assert PFA.introspect(fixed).get_recipe()["a"].original_output_count == 1
