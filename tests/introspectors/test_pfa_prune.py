"""PFA on a live torch chain (hooks) and pruning of Conv2d/BatchNorm/Linear chains."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.exceptions import IntroscopeError
from introscope.introspectors import PFA
from introscope.introspectors.pfa import (
    PFACovarianceState,
    PFALayerPlan,
    PFAPruningPlan,
    count_params_and_macs,
    prune_sequential,
)

torch = pytest.importorskip("torch")
nn = torch.nn


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _plan() -> PFAPruningPlan:
    return PFAPruningPlan(
        {
            "2": PFALayerPlan(4, keep=(0, 2, 3), remove=(1,)),  # the ReLU after conv 0
            "4.0": PFALayerPlan(6, keep=(1, 4), remove=(0, 2, 3, 5)),
            "6": PFALayerPlan(5, keep=(0, 1, 3), remove=(2, 4)),
        }
    )


def _zero_removed(model: nn.Sequential, plan: PFAPruningPlan) -> list:
    """Pre-hooks zeroing removed channels where the next layer reads them: same function."""

    def zero(channels, spatial=1):
        idx = torch.as_tensor([c * spatial + s for c in channels for s in range(spatial)])

        def hook(module, inputs):
            x = inputs[0].clone()
            x[:, idx] = 0
            return (x,)

        return hook

    return [
        model[4][0].register_forward_pre_hook(zero(plan.layers["2"].remove)),
        model[6].register_forward_pre_hook(zero(plan.layers["4.0"].remove, spatial=4)),
        model[8].register_forward_pre_hook(zero(plan.layers["6"].remove)),
    ]


def test_prune_chain_is_the_same_function_with_removed_channels() -> None:
    model, plan = _chain(), _plan()
    x = torch.randn(8, 1, 8, 8)
    pruned = prune_sequential(model, plan, example_input=x)
    small = pruned.module
    assert small[0].out_channels == 3 and small[1].num_features == 3
    assert small[4][0].in_channels == 3 and small[4][0].out_channels == 2
    assert small[6].in_features == 2 * 4 and small[6].out_features == 3
    assert small[8].in_features == 3 and small[8].out_features == 3
    assert pruned.channels == {"0": (4, 3), "4.0": (6, 2), "6": (5, 3)}
    handles = _zero_removed(model, plan)
    with torch.no_grad():
        expected = model(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(small(x), expected, rtol=1e-5, atol=1e-6)
    assert model[0].out_channels == 4  # the original is untouched
    # Parameters counted by hand; MACs by Torch-Pruning's counter, which also counts the
    # BatchNorm, ReLU and pooling work on top of the convolutions' and linear layers'.
    assert pruned.params_before == count_params_and_macs(model, x)[0] == 413
    conv_linear_before = 4 * 64 * 9 + 6 * 4 * 36 + 24 * 5 + 5 * 3
    conv_linear_after = 3 * 64 * 9 + 2 * 4 * 27 + 8 * 3 + 3 * 3
    assert pruned.macs_before == count_params_and_macs(model, x[:1])[1] > conv_linear_before
    assert conv_linear_after < pruned.macs_after < pruned.macs_before
    params_after = (3 * 9 + 3) + 2 * 3 + (2 * 27 + 2) + (8 * 3 + 3) + (3 * 3 + 3)
    assert pruned.params_after == params_after
    assert "MACs/sample" in pruned.summary()


def test_prune_errors() -> None:
    model, x = _chain(), torch.randn(2, 1, 8, 8)
    last = PFAPruningPlan({"8": PFALayerPlan(3, keep=(0, 1), remove=(2,))})
    with pytest.raises(IntroscopeError, match="last layer"):
        prune_sequential(model, last, example_input=x)
    wrong = PFAPruningPlan({"0": PFALayerPlan(5, keep=(0, 1, 2), remove=(3, 4))})
    with pytest.raises(IntroscopeError, match="5 units but '0' has 4"):
        prune_sequential(model, wrong, example_input=x)
    after_flatten = PFAPruningPlan({"5": PFALayerPlan(24, keep=tuple(range(23)), remove=(23,))})
    with pytest.raises(IntroscopeError, match="does not follow a Conv or Linear"):
        prune_sequential(model, after_flatten, example_input=x)
    with pytest.raises(IntroscopeError, match="does not have.*layer_names"):
        prune_sequential(model, PFAPruningPlan({"conv": _plan().layers["2"]}), example_input=x)
    renamed = prune_sequential(
        model, PFAPruningPlan({"conv": _plan().layers["2"]}), example_input=x,
        layer_names={"conv": "1"},
    )  # fmt: skip
    assert renamed.module[0].out_channels == 3


@pytest.mark.parametrize("tail", ["logsoftmax", "relu", "softmax"])
def test_prune_refuses_a_layer_whose_outputs_reach_the_model_output(tail: str) -> None:
    # The classifier is followed by a module or function that keeps its width: the direct
    # "is it the output tensor?" test misses it, the output-shape check does not.
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.fc = nn.Linear(4, 8), nn.Linear(8, 5)
            self.tail = nn.LogSoftmax(dim=1) if tail == "logsoftmax" else nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(torch.relu(self.a(x)))
            return torch.softmax(y, 1) if tail == "softmax" else self.tail(y)

    plan = PFAPruningPlan({"fc": PFALayerPlan(5, keep=(0, 1, 2), remove=(3, 4))})
    with pytest.raises(
        IntroscopeError, match=r"changes the model's output shape from \[\(3, 5\)\]"
    ):
        PFA.prune(Net().eval(), plan, example_input=torch.randn(3, 4))


def test_prune_takes_numpy_input_and_keeps_each_modules_mode() -> None:
    model = _chain().train()
    model[1].eval()  # a frozen BatchNorm inside a model being trained
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    pruned = PFA.prune(model, _plan(), example_input=x)
    modes = {n: m.training for n, m in model.named_modules()}
    assert {n: m.training for n, m in pruned.module.named_modules()} == modes
    assert modes[""] and not modes["1"]
    assert pruned.params_before == count_params_and_macs(model, x)[0]
    assert {n: m.training for n, m in model.named_modules()} == modes  # counting restores them


def test_monitor_feeds_state_on_device_and_plan_prunes() -> None:
    model = _chain()
    batches = [torch.randn(32, 1, 8, 8) for _ in range(4)]
    with PFA.monitor(model, ["2", "4.1", "7"]) as monitor, torch.no_grad():
        for b in batches:
            model(b)
    assert monitor.state.count("2") == 128
    # Same numbers as pooling by hand and streaming numpy arrays.
    ref = PFACovarianceState()
    with torch.no_grad():
        for b in batches:
            ref.update("2", model[:3](b).amax(dim=(2, 3)).numpy())
    np.testing.assert_allclose(monitor.state.covariance("2"), ref.covariance("2"), rtol=1e-6)
    pfa = monitor.result
    recipes = pfa.get_recipe(strategy=PFA.Strategy.Energy(0.95))
    plan = PFA.pruning_plan(recipes)
    pruned = prune_sequential(model, plan, example_input=batches[0])
    for response, module in (("2", "0"), ("4.1", "4.0"), ("7", "6")):
        kept = len(plan.layers[response].keep)
        assert pruned.channels.get(module, (kept, kept))[1] == kept
    assert pruned.macs_after <= pruned.macs_before
    with torch.no_grad():
        assert pruned.module(batches[0]).shape == (32, 3)


def test_prune_returns_a_pruned_model_record_whose_module_is_the_copy() -> None:
    model = _chain()
    x = torch.randn(3, 1, 8, 8)
    pruned = PFA.prune(model, _plan(), example_input=x)
    assert isinstance(pruned.module, nn.Module) and pruned.module is not model
    with torch.no_grad():
        assert pruned.module(x).shape == model(x).shape == (3, 3)
    # The record itself is not a module: calling it says to call .module.
    with pytest.raises(TypeError, match=r"call its \.module.*Sequential"):
        pruned(x)
    assert not isinstance(pruned, nn.Module)
    assert pruned.params_after < pruned.params_before
    assert "params" in pruned.summary() and "MACs/sample" in pruned.summary()
    assert pruned.plan is not None and set(pruned.plan.layers) == set(_plan().layers)
