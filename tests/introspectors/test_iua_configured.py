"""``IUA(...).introspect`` and ``IUA(...).monitor`` run with the instance's settings (a plain
classmethod dropped them silently: the auditor's ``IUA(atol=0.5).introspect(p)`` counted with
atol=1e-8)."""

import numpy as np
import pytest

from introscope.base import Batch, producer_from_batches
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import IUA

ROWS = np.array([[0.0, 0.3], [0.0, 2.0], [0.4, 0.0]])


def _producer():
    return producer_from_batches(Batch({"relu": ROWS}))


def test_a_configured_instance_introspects_with_its_settings_and_stays_empty() -> None:
    configured = IUA(atol=0.5)
    result = configured.introspect(_producer())
    expected = IUA.introspect(_producer(), atol=0.5)
    assert result is not configured and not configured.results
    assert result.atol == 0.5
    assert result.results["relu"].inactive == expected.results["relu"].inactive
    assert result.results["relu"].mean_inactive == pytest.approx(5 / 3)


def test_arguments_agreeing_with_the_instance_or_filling_its_defaults_are_taken() -> None:
    assert IUA(atol=0.5).introspect(_producer(), atol=0.5).atol == 0.5
    both = IUA(atol=0.5).introspect(_producer(), nonfinite="warn")
    assert (both.atol, both.nonfinite_policy) == (0.5, "warn")


def test_contradicting_arguments_are_an_error_naming_both_values() -> None:
    with pytest.raises(IntroscopeValueError, match=r"atol=0.1 \(the instance has 0.5\)"):
        IUA(atol=0.5).introspect(_producer(), atol=0.1)


def test_the_class_call_keeps_dnikits_signature() -> None:
    import inspect

    params = list(inspect.signature(IUA.introspect).parameters)
    assert params[:3] == ["producer", "batch_size", "rtol"]


def test_a_configured_instance_monitors_with_its_settings() -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
    with torch.no_grad(), IUA(atol=0.5).monitor(net) as monitor:
        net(torch.tensor(ROWS, dtype=torch.float32))
    assert monitor.result.atol == 0.5
    assert monitor.result.results["1"].mean_inactive == pytest.approx(5 / 3)
