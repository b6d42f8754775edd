"""PFA.prune on models that are not chains: residual sums, depthwise and grouped convolutions,
custom forward; coupled recipes keep the union of their units; the plan as JSON."""

import json
import subprocess
import sys

import numpy as np
import pytest

from introscope.exceptions import IntroscopeError
from introscope.introspectors import PFA
from introscope.introspectors.pfa import PFALayerPlan, PFAPruningPlan

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
nn = torch.nn


class Res(nn.Module):
    """stem conv -> BN -> ReLU -> [conv a -> BN -> ReLU -> conv b -> BN] + skip -> ReLU -> head."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(c)
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.bna = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, c, 3, padding=1)
        self.bnb = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        y = self.relu(self.bn0(self.stem(x)))
        z = self.bnb(self.b(torch.relu(self.bna(self.a(y)))))
        return self.head(torch.relu(z + y).mean(dim=(2, 3)))


def _dead(model: Res, coupled: list[int], inner: list[int]) -> Res:
    """Make channels carry exact zeros, so removing them cannot change the output."""
    with torch.no_grad():
        for conv, bn, chans in (
            (model.stem, model.bn0, coupled),
            (model.b, model.bnb, coupled),
            (model.a, model.bna, inner),
        ):
            conv.weight[chans] = 0
            conv.bias[chans] = 0
            bn.running_mean[chans] = 0
            bn.bias[chans] = 0
    return model.eval()


def test_residual_coupling_keeps_the_union_and_gives_the_same_function():
    torch.manual_seed(0)
    model = _dead(Res(), coupled=[1, 4], inner=[0, 2, 5])
    x = torch.randn(4, 1, 6, 6)
    plan = PFAPruningPlan(
        {
            # stem and b are summed by the skip connection: one group, union of kept units
            "bn0": PFALayerPlan(6, keep=(0, 2, 3, 5), remove=(1, 4)),
            "b": PFALayerPlan(6, keep=(0, 1, 2, 3, 5), remove=(4,)),
            "a": PFALayerPlan(6, keep=(1, 3, 4), remove=(0, 2, 5)),
        }
    )
    pruned = PFA.prune(model, plan, example_input=x)
    small = pruned.module
    # channel 1 is kept (b keeps it), channel 4 goes (both remove it)
    assert small.stem.out_channels == small.b.out_channels == small.bn0.num_features == 5
    assert small.a.out_channels == 3 and small.b.in_channels == 3 and small.head.in_features == 5
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)
    groups = {g.responses: g for g in pruned.plan.groups}
    residual = groups[("bn0", "b")]
    assert residual.layers == ("stem", "b") and residual.remove == (4,)
    assert residual.keep == (0, 1, 2, 3, 5) and {"stem", "b", "bn0", "bnb"} <= set(residual.coupled)
    assert groups[("a",)].remove == (0, 2, 5)
    assert pruned.channels == {"stem": (6, 5), "b": (6, 5), "a": (6, 3)}
    assert pruned.params_after < pruned.params_before and pruned.macs_after < pruned.macs_before
    assert model.stem.out_channels == 6  # not modified


@pytest.mark.parametrize("frozen", [("stem",), ("stem", "a", "b", "head")])
def test_frozen_parameters_are_pruned_and_stay_frozen(frozen):
    # A frozen backbone has no autograd graph to trace; the copy is traced with grad and every
    # parameter gets its own flag back (pruned ones are new parameters).
    torch.manual_seed(0)
    model = _dead(Res(), coupled=[1, 4], inner=[0, 2, 5])
    for name in frozen:
        getattr(model, name).requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = torch.randn(4, 1, 6, 6)
    plan = PFAPruningPlan({"a": PFALayerPlan(6, keep=(1, 3, 4), remove=(0, 2, 5))})
    small = PFA.prune(model, plan, example_input=x).module
    assert small.a.out_channels == 3
    assert {n: p.requires_grad for n, p in small.named_parameters()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-5, atol=1e-6)


def test_depthwise_separable_and_grouped_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: coupled with the conv before
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1, groups=2),  # grouped pointwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    x = torch.randn(3, 2, 5, 5)
    plan = PFAPruningPlan(
        {
            "1": PFALayerPlan(8, keep=(0, 1, 2, 4, 5, 6), remove=(3, 7)),
            "4": PFALayerPlan(8, keep=(0, 1, 2, 4, 5), remove=(3, 6, 7)),
        }
    )
    pruned = PFA.prune(model, plan, example_input=x)
    small = pruned.module
    # one group (the depthwise conv ties its channels to the conv before): the union keeps
    # 0-2 and 4-6, which removes one channel from each half the grouped conv reads
    (group,) = pruned.plan.groups
    assert group.layers == ("0", "2") and group.remove == (3, 7)
    assert small[0].out_channels == 6 and small[2].groups == small[2].out_channels == 6
    assert small[5].in_channels == 6 and small[5].groups == 2
    with torch.no_grad():
        assert small(x).shape == (3, 2)
    unbalanced = PFAPruningPlan({"1": PFALayerPlan(8, keep=(0, 1, 2, 4, 5), remove=(3, 6, 7))})
    with pytest.raises(IntroscopeError, match=r"grouped convolution '5' \(groups=2.*\[1, 2\]"):
        PFA.prune(model, unbalanced, example_input=x)


def test_refusals_name_what_is_wrong():
    model, x = Res().eval(), torch.randn(2, 1, 6, 6)
    with pytest.raises(IntroscopeError, match="one call or one element"):
        PFA.prune(
            model,
            PFAPruningPlan({"relu#0": PFALayerPlan(6, (0,), (1, 2, 3, 4, 5))}),
            example_input=x,
        )
    with pytest.raises(IntroscopeError, match=r"'stm'.*did you mean 'stem'"):
        PFA.prune(
            model, PFAPruningPlan({"stm": PFALayerPlan(6, (0,), (1, 2, 3, 4, 5))}), example_input=x
        )
    with pytest.raises(IntroscopeError, match="has 5 units but 'stem' has 6"):
        PFA.prune(
            model, PFAPruningPlan({"stem": PFALayerPlan(5, (0,), (1, 2, 3, 4))}), example_input=x
        )
    with pytest.raises(IntroscopeError, match="last layer"):
        PFA.prune(model, PFAPruningPlan({"head": PFALayerPlan(3, (0, 1), (2,))}), example_input=x)


def test_pruning_plan_against_a_model_is_json_with_groups_and_sizes(tmp_path, rng):
    torch.manual_seed(0)
    model = Res().eval()
    x = torch.randn(64, 1, 6, 6)
    with PFA.monitor(model, ["bn0", "b", "a"]) as monitor, torch.no_grad():
        model(x)
    recipes = monitor.result.get_recipe(strategy=PFA.Strategy.Energy(0.9))
    plan = PFA.pruning_plan(recipes, model, example_input=x[:2])
    assert plan.groups and plan.params_before > plan.params_after > 0
    plan.save(tmp_path / "plan.json")
    again = PFAPruningPlan.load(tmp_path / "plan.json")
    assert again == plan
    data = json.loads((tmp_path / "plan.json").read_text())
    assert {"layers", "groups", "macs_before", "macs_after"} <= set(data)
    assert np.all([len(g["keep"]) > 0 for g in data["groups"]])


def test_missing_torch_pruning_names_the_extra():
    code = (
        "import sys; sys.modules['torch_pruning'] = None\n"
        "import torch\n"
        "from introscope.introspectors import PFA\n"
        "from introscope.introspectors.pfa import PFALayerPlan, PFAPruningPlan\n"
        "m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))\n"
        "plan = PFAPruningPlan({'0': PFALayerPlan(4, (0, 1), (2, 3))})\n"
        "try:\n"
        "    PFA.prune(m, plan, example_input=torch.randn(2, 3))\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MissingDependencyError" in out.stdout and "introscope[prune]" in out.stdout


def test_prune_takes_the_adapters_input_forms_and_refuses_torchscript():
    class KW(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.r, self.b = nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)

        def forward(self, x, *, scale):  # noqa: ANN001, ANN201
            return self.b(self.r(self.a(x))) * scale

    torch.manual_seed(0)
    net = KW().eval()
    plan = PFAPruningPlan({"a": PFALayerPlan(16, keep=tuple(range(8)), remove=tuple(range(8, 16)))})
    x = np.random.default_rng(0).standard_normal((4, 6))  # float64 into a float32 model
    mapping = {"x": x, "scale": np.ones((4, 1), np.float32)}
    small = PFA.prune(net, plan, example_input=mapping).module
    assert small.a.out_features == 8 and small.b.in_features == 8
    plain = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    seq_plan = PFAPruningPlan(
        {"0": PFALayerPlan(16, keep=tuple(range(8)), remove=tuple(range(8, 16)))}
    )
    assert PFA.prune(plain, seq_plan, example_input=x).module[0].out_features == 8
    compiled = torch.compile(plain)  # pruned through the module it wraps, by its names
    assert PFA.prune(compiled, seq_plan, example_input=x).module[0].out_features == 8
    with pytest.raises(IntroscopeError, match="TorchScript"):
        PFA.prune(torch.jit.script(plain), seq_plan, example_input=x)


def test_transposed_convolution_channels_are_pruned():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(4, 6, 2, stride=2),
        nn.ReLU(),
        nn.Conv2d(6, 2, 1),
    ).eval()
    with torch.no_grad():  # channels 1 and 4 of the transposed conv carry exact zeros
        net[2].weight[:, [1, 4]] = 0
        net[2].bias[[1, 4]] = 0
    x = torch.randn(3, 1, 5, 5)
    plan = PFAPruningPlan({"2": PFALayerPlan(6, keep=(0, 2, 3, 5), remove=(1, 4))})
    small = PFA.prune(net, plan, example_input=x).module
    assert small[2].out_channels == 4 and small[4].in_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=1e-5, atol=1e-6)


def test_example_inputs_follow_the_models_device_and_floating_dtype():
    from introscope.introspectors.pfa._torch_prune import _as_tensors

    meta = torch.device("meta")  # stands for an accelerator: tensors move there, no data
    x = np.zeros((2, 3))
    ids = np.arange(4).reshape(2, 2)
    moved = _as_tensors({"x": x, "ids": ids, "t": torch.zeros(2)}, torch.float16, meta)
    assert moved["x"].device == meta and moved["x"].dtype == torch.float16
    assert moved["ids"].device == meta and moved["ids"].dtype == torch.int64  # token ids stay
    assert moved["t"].device == meta and moved["t"].dtype == torch.float16
    kept = _as_tensors((x,), None, None)[0]
    assert kept.device.type == "cpu" and kept.dtype == torch.float64
