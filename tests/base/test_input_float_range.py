"""Model inputs narrowed to the model's float dtype must stay finite: 1e39 into float32 became
inf (then NaN responses) with only numpy's overflow warning, in every adapter."""

import numpy as np
import pytest

from introscope.base import pipeline
from introscope.base._model import check_exact_cast
from introscope.exceptions import IntroscopeError
from introscope.samples import StubProducer


@pytest.mark.parametrize(
    ("value", "dtype"), [(1e39, np.float32), (-7e4, np.float16), (1e5, np.float16)]
)
def test_finite_values_beyond_the_narrower_range_are_refused(value: float, dtype: type) -> None:
    x = np.ones((3, 4))
    x[2, 1] = value
    with pytest.raises(IntroscopeError, match=r"'input' has 1 finite float64 value\(s\) beyond"):
        check_exact_cast(x, dtype, "input", expects="the model's", fix="convert it")


def test_values_in_range_nan_and_inf_convert_as_before() -> None:
    x = np.array([[np.nan, np.inf, -np.inf, 3.4e38, -6.5e4, 0.1]])
    check_exact_cast(x, np.float32, "input", expects="e", fix="f")
    check_exact_cast(x[:, :3], np.float16, "input", expects="e", fix="f")
    check_exact_cast(np.zeros((0, 2)), np.float16, "input", expects="e", fix="f")
    check_exact_cast(x.astype(np.float32), np.float64, "input", expects="e", fix="f")  # widening


def test_the_torch_adapter_refuses_an_overflowing_batch() -> None:
    torch = pytest.importorskip("torch")
    from introscope.torch import load_torch_model_from_memory

    model = load_torch_model_from_memory(
        torch.nn.Sequential(torch.nn.Linear(3, 2)), example_input=np.zeros((2, 3), np.float32)
    )
    x = np.ones((4, 3))
    x[1, 2] = 1e39
    with pytest.raises(IntroscopeError, match=r"would become inf; scale the data"):
        list(pipeline(StubProducer({"input": x}), model(["0"]))(4))
