"""The forward-hook monitor after the seventh audit (training loops): re-entrant ``with``,
layouts learnt until every watched module ran, torch.func, dtype changes, the model's own
output named ``output``, compiled models, and the non-finite warning's text."""

import warnings

import numpy as np
import pytest

import torch
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA, PFA


def _mlp() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def test_a_nested_with_keeps_the_outer_block_counting() -> None:
    net, x = _mlp(), torch.randn(30, 3)
    mon = IUA.monitor(net)
    with torch.no_grad(), mon:
        net(x[:10])
        with mon:  # e.g. an evaluation helper inside the training loop
            net(x[10:20])
        assert mon.attached
        net(x[20:])
    assert not mon.attached
    assert mon.result.results["1"].num_samples == 30


def test_a_with_block_leaves_an_attach_call_attached() -> None:
    net = _mlp()
    mon = IUA.monitor(net).attach()
    with mon:
        pass
    assert mon.attached
    mon.detach()
    assert not mon.attached


class _Branch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.act = torch.nn.Linear(3, 16), torch.nn.ReLU()
        self.other = torch.nn.Linear(15, 2)

    def forward(self, x: torch.Tensor, aux: bool = True) -> torch.Tensor:  # x: (N, 5, 3)
        if not aux:
            return self.other(x.flatten(1))
        return self.act(self.emb(x)).mean(1)


@pytest.mark.parametrize("first", ["other branch", "raised"])
def test_layouts_are_learnt_from_a_pass_that_runs_the_watched_module(first: str) -> None:
    net, x = _Branch().eval(), torch.randn(16, 5, 3)
    with torch.no_grad(), IUA.monitor(net, ["act"]) as mi, PFA.monitor(net, ["act"]) as mp:
        if first == "raised":
            with pytest.raises(RuntimeError):
                net(torch.randn(2, 4))  # the first pass fails before the watched module
        else:
            net(x[:4], aux=False)
        net(x)
    assert mi.result._response_infos["act"].channel_axis == -1  # features last, as the adapter
    assert mp.result.covariances["act"].covariances.shape == (16, 16)


def test_torch_func_transforms_are_refused_clearly() -> None:
    net, x = _mlp(), torch.randn(6, 3)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p: dict, inputs: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(net, p, (inputs,)).sum()

    with IUA.monitor(net), pytest.raises(IntroscopeError, match="torch.func transform"):
        torch.func.grad(loss)(params, x)
    with IUA.monitor(net), pytest.raises(IntroscopeError, match="torch.func transform"):
        torch.func.vmap(lambda row: net(row.unsqueeze(0)))(x)
    with IUA.monitor(net) as mon:  # functional_call alone is a plain forward
        torch.func.functional_call(net, params, (x,))
    assert mon.result.results["1"].num_samples == 6


def test_response_infos_follow_a_dtype_change() -> None:
    net, x = _mlp(), torch.randn(4, 3)
    with torch.no_grad(), IUA.monitor(net) as mon:
        net(x)
        net.to(torch.float64)
        net(x.double())
    assert mon.result._response_infos["1"].dtype == np.float64
    assert mon.result.results["1"].num_samples == 8


@pytest.mark.parametrize("layer", ["output", "", "net"])
def test_the_model_itself_is_named_output_as_the_adapter_names_it(layer: str) -> None:
    net = _mlp()
    with torch.no_grad(), PFA.monitor(net, [net if layer == "net" else layer]) as mon:
        net(torch.randn(8, 3))
    assert list(mon.result.covariances) == ["output"]


def test_the_nonfinite_warning_counts_values_and_points_at_the_user() -> None:
    net = torch.nn.Sequential(torch.nn.Identity())
    with torch.no_grad(), IUA.monitor(net, ["0"], nonfinite="warn"):
        with pytest.warns(RuntimeWarning, match="out of 6;") as caught:
            net(torch.tensor([[float("nan"), 0.0, 1.0], [1.0, 2.0, 3.0]]))
    assert caught[0].filename == __file__


def test_a_model_compiled_before_attaching_warns_that_nothing_was_seen() -> None:
    net = _mlp()
    compiled = torch.compile(net, backend="eager")
    with torch.no_grad():
        compiled(torch.randn(4, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad(), IUA.monitor(net):
            compiled(torch.randn(4, 3))
    assert any("attach the monitor before torch.compile" in str(w.message) for w in caught)


_ATTACH_THEN_COMPILE = """
import sys, warnings
import torch
from introscope.introspectors import IUA
assert "torch._dynamo" not in sys.modules, "this check needs Dynamo not yet imported"
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
xs = [torch.randn(b, 3) for b in range(1, 12)]
warnings.simplefilter("error")
with torch.no_grad():
    with IUA.monitor(net) as eager:
        for x in xs:
            net(x)
    monitor = IUA.monitor(net).attach()
    compiled = torch.compile(net, backend="eager")
    for x in xs:
        compiled(x)
    monitor.detach()
from torch._dynamo.utils import counters
for name, state in eager.accumulator.state_dict().items():
    assert (state == monitor.accumulator.state_dict()[name]).all(), name
print("frames", counters["frames"]["total"])
"""


def test_a_monitor_attached_before_dynamo_is_imported_is_not_traced_by_torch_compile() -> None:
    # Attaching does not import Dynamo; torch.compile afterwards does, and its first trace used
    # to trace the hooks: thousands of frames, recompile_limit warnings and numba traced.
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _ATTACH_THEN_COMPILE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "recompile_limit" not in run.stderr
    frames = int(run.stdout.split("frames")[-1])
    assert frames < 50, run.stdout
