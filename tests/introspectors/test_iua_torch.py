"""IUA.monitor: forward hooks on a PyTorch model give the same numbers as IUA.introspect."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA

torch = pytest.importorskip("torch")


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.relu1 = torch.nn.ReLU()
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(6 * 6 * 6, 5)
        self.relu2 = torch.nn.ReLU()
        self.head = torch.nn.Linear(5, 2)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.head(self.relu2(self.fc(self.flat(self.relu1(self.conv(x))))))


def record(model: torch.nn.Module, names: list[str]) -> tuple[dict[str, list], list]:
    outs: dict[str, list] = {n: [] for n in names}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(
            lambda m, i, o, n=n: outs[n].append(o.detach().numpy().copy())
        )
        for n in names
    ]
    return outs, handles


def test_monitor_equals_introspect_on_the_same_responses() -> None:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    outs, handles = record(model, ["relu1", "relu2"])
    with IUA.monitor(model) as mon:  # default: every ReLU module
        assert mon.attached
        with torch.no_grad():
            for size in (5, 1, 9):
                model(torch.randn(size, 3, 8, 8))
    for h in handles:
        h.remove()
    assert not mon.attached
    assert not model.relu1._forward_hooks and not model.relu2._forward_hooks
    data = {k: np.concatenate(v) for k, v in outs.items()}
    ref = IUA.introspect(lambda bs: iter([Batch(data)]), channel_axis=1)
    got = mon.result
    assert got.results["relu1"] == ref.results["relu1"]
    assert got.results["relu2"] == ref.results["relu2"]
    assert got.channel_results["relu1"] == ref.channel_results["relu1"]
    assert set(got.channel_results) == {"relu1"}
    assert got.results["relu1"].num_samples == 15


def test_monitor_watches_dying_relu_during_training_epoch_by_epoch() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
    dead_per_epoch = []
    with IUA.monitor(model, ["relu2", model.relu1]) as mon:
        for epoch in range(2):
            mon.reset()
            if epoch == 1:
                with torch.no_grad():
                    model.fc.bias[:3] = -1e3  # kill three units of relu2
            model.train()
            for i in range(0, 16, 4):
                loss = torch.nn.functional.cross_entropy(model(x[i : i + 4]), y[i : i + 4])
                opt.zero_grad()
                loss.backward()
                opt.step()
            dead_per_epoch.append(mon.result.results["relu2"].dead_units())
            assert mon.result.results["relu2"].num_samples == 16
    assert dead_per_epoch[1] >= 3 > dead_per_epoch[0]
    assert set(mon.result.results) == {"relu1", "relu2"}


def test_monitor_nonfinite_and_bad_arguments() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    bad = torch.tensor([[float("nan"), 0.0, 1.0]])
    with IUA.monitor(model, ["0"]) as mon:
        with pytest.raises(IntroscopeError, match=r"'0' \(module output\) has 4 NaN"):
            model(bad)
    assert not model[0]._forward_hooks
    with pytest.warns(RuntimeWarning, match="counted as active"):
        with IUA.monitor(model, "0", nonfinite="warn") as mon:
            model(bad)
            model(torch.ones(2, 3))
    assert mon.result.results["0"].nonfinite == 4  # the NaN input makes every output NaN
    assert mon.result.results["0"].num_samples == 3
    with pytest.raises(IntroscopeError, match="unknown module .relu.*available"):
        IUA.monitor(model, ["relu"])
    with pytest.raises(IntroscopeError, match="ReLU"):
        IUA.monitor(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="needs a torch.nn.Module, got object"):
        IUA.monitor(object(), ["x"])


def test_accelerator_path_counts_like_the_host_path() -> None:
    """The torch-op path used on CUDA/MPS, run here on CPU tensors, equals the numpy path."""
    torch.manual_seed(1)
    model = SmallCNN().eval()
    host = IUA.monitor(model, ["relu1", "relu2", "fc"])
    device = IUA.monitor(model, ["relu1", "relu2", "fc"], nonfinite="warn")
    device.accumulator._force_device_path = True
    with host, device, torch.no_grad():
        for size in (3, 8, 1):
            x = torch.randn(size, 3, 8, 8)
            x[0] = 0.0
            model(x)
    for name in ("relu1", "relu2", "fc"):
        assert device.result.results[name] == host.result.results[name], name
    assert device.result.channel_results["relu1"] == host.result.channel_results["relu1"]
    with device, torch.no_grad():
        model(torch.full((2, 3, 8, 8), float("inf")))
    with pytest.warns(RuntimeWarning, match="counted as active"):
        assert device.result.results["fc"].nonfinite == 10


class SharedReLU(torch.nn.Module):
    """One ReLU module used after two conv layers of different widths (a common pattern)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3)
        self.c2 = torch.nn.Conv2d(4, 8, 3)
        self.relu = torch.nn.ReLU()

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.relu(self.c2(self.relu(self.c1(x))))


@pytest.mark.parametrize("device_path", [False, True])
def test_monitor_shared_module_gives_one_response_per_call(device_path: bool) -> None:
    from introscope.base import pipeline
    from introscope.torch import load_torch_model_from_memory

    torch.manual_seed(0)
    net = SharedReLU()
    x = torch.randn(7, 1, 8, 8)
    monitor = IUA.monitor(net)
    monitor.accumulator._force_device_path = device_path
    with monitor, torch.no_grad():
        net(x[:4])
        net(x[4:])
        net.relu(
            torch.randn(2, 4, 6, 6)
        )  # a call outside the model's forward pass counts as the first call
    result = monitor.result
    assert list(result.results) == ["relu#0", "relu#1"]
    assert result.results["relu#0"].unit_inactive_count_array.shape == (4, 6, 6)
    assert result.results["relu#1"].unit_inactive_count_array.shape == (8, 4, 4)
    assert result.results["relu#0"].num_samples == 9 and result.results["relu#1"].num_samples == 7

    # The same numbers (and names) as IUA.introspect over the torch adapter, which names a
    # module called twice relu#0 / relu#1.
    model = load_torch_model_from_memory(net, example_input=x[:2].numpy())
    arrays = x.numpy()

    def producer(batch_size: int):
        for i in range(0, 7, batch_size):
            yield Batch({"x": arrays[i : i + batch_size]})

    ref = IUA.introspect(pipeline(producer, model(["relu#0", "relu#1"])), channel_axis=1)
    assert result.results["relu#1"] == ref.results["relu#1"]
    assert result.channel_results["relu#1"] == ref.channel_results["relu#1"]
    first = result.results["relu#0"]
    np.testing.assert_array_equal(first.inactive_array[:7], ref.results["relu#0"].inactive_array)
