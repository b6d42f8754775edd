"""The forward-hook mechanism shared by IUA.monitor and PFA.monitor: names, errors, attach/detach."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from introscope.base import Batch, pipeline
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA, PFA
from introscope.processors import Pooler

torch = pytest.importorskip("torch")
nn = torch.nn


class SharedReLU(nn.Module):
    """One ReLU module used after two conv layers of different widths."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3)
        self.c2 = nn.Conv2d(4, 8, 3)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # noqa: ANN001, ANN201
        y = self.relu(self.c2(self.relu(self.c1(x))))
        return self.head(y.mean(dim=(2, 3)))


class RaisesOnThreeRows(nn.Module):
    """A ReLU whose forward raises ``error`` after the ReLU when the batch has 3 rows."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.error = error

    def forward(self, x):  # noqa: ANN001, ANN201
        h = self.relu(x)
        if x.shape[0] == 3:
            raise self.error
        return h


class TupleOut(nn.Module):
    """A submodule that returns a (tensor, tensor) tuple, as recurrent layers do."""

    def forward(self, x):  # noqa: ANN001, ANN201
        return x, 2 * x


class DictOut(nn.Module):
    def forward(self, x):  # noqa: ANN001, ANN201
        return {"logits": x}


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.inner = inner

    def forward(self, x):  # noqa: ANN001, ANN201
        out = self.inner(self.fc(x))
        return out[0] if isinstance(out, tuple) else out["logits"]


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_pfa_monitor_shared_module_gives_one_response_per_call(pool: str) -> None:
    from introscope.torch import load_torch_model_from_memory

    torch.manual_seed(0)
    net = SharedReLU().eval()
    x = torch.randn(40, 1, 8, 8)
    with PFA.monitor(net, "relu", pool=pool) as monitor, torch.no_grad():
        for i in range(0, 40, 16):  # batches of 16, 16, 8
            net(x[i : i + 16])
    # Before the fix the two calls went into one field (and failed on the width change).
    assert monitor.state.fields == ["relu#0", "relu#1"]
    assert monitor.state.count("relu#0") == 40 and monitor.state.count("relu#1") == 40
    got = monitor.result

    # The same names and numbers as PFA.introspect on the torch adapter's responses, pooled the
    # same way with a Pooler.
    model = load_torch_model_from_memory(net, example_input=x[:2].numpy())
    arrays = x.numpy()

    def producer(batch_size: int):  # noqa: ANN202
        for i in range(0, 40, batch_size):
            yield Batch({"x": arrays[i : i + batch_size]})

    method = Pooler.Method.MAX if pool == "max" else Pooler.Method.AVERAGE
    stages = (model(["relu#0", "relu#1"]), Pooler(dim=(2, 3), method=method))
    ref = PFA.introspect(pipeline(producer, *stages), batch_size=16)
    assert set(got.covariances) == set(ref.covariances) == {"relu#0", "relu#1"}
    for name, units in (("relu#0", 4), ("relu#1", 8)):
        assert got.covariances[name].covariances.shape == (units, units)
        np.testing.assert_allclose(
            got.covariances[name].covariances,
            ref.covariances[name].covariances,
            rtol=1e-5,
            atol=1e-9,
            err_msg=name,
        )
        np.testing.assert_array_equal(
            got.covariances[name].inactive_units, ref.covariances[name].inactive_units
        )
    mine = got.get_recipe(strategy=PFA.Strategy.Energy(0.9))
    theirs = ref.get_recipe(strategy=PFA.Strategy.Energy(0.9))
    for name in ("relu#0", "relu#1"):
        assert mine[name].recommended_output_count == theirs[name].recommended_output_count
        assert mine[name].units_to_keep == theirs[name].units_to_keep


def test_shared_module_called_outside_the_forward_pass_counts_as_the_first_call() -> None:
    torch.manual_seed(0)
    net = SharedReLU().eval()
    pfa = PFA.monitor(net, [net.relu])
    iua = IUA.monitor(net)
    with pfa, iua, torch.no_grad():
        net.relu(torch.randn(3, 4, 6, 6))  # before any pass: filed under the plain name
        assert pfa.state.fields == ["relu"] and list(iua.result.results) == ["relu"]
        net(torch.randn(5, 1, 8, 8))  # the second call renames the first's data to relu#0
        with pytest.warns(UserWarning, match="'relu'.*outside a forward pass.*'relu#0'") as said:
            net.relu(torch.randn(2, 4, 6, 6))
        assert len(said) == 2  # once per monitor
    assert pfa.state.fields == ["relu#0", "relu#1"]
    assert pfa.state.count("relu#0") == 10 and pfa.state.count("relu#1") == 5
    assert list(iua.result.results) == ["relu#0", "relu#1"]
    assert iua.result.results["relu#0"].num_samples == 10
    # reset forgets the data, not that the module runs twice per pass
    pfa.reset()
    iua.reset()
    with pfa, iua, torch.no_grad():
        net.relu(torch.randn(2, 4, 6, 6))
    assert pfa.state.fields == ["relu#0"] and list(iua.result.results) == ["relu#0"]


def test_a_method_other_than_forward_merging_a_shared_modules_calls_warns() -> None:
    class AutoEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.relu, self.b = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)

        def encode(self, x):  # noqa: ANN001, ANN201
            return self.relu(self.b(self.relu(self.a(x))))

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.encode(x)

    net = AutoEncoder()
    with IUA.monitor(net) as mon:
        net(torch.randn(3, 4))
        with pytest.warns(UserWarning, match="model.encode"):
            net.encode(torch.randn(2, 4))
    assert {k: r.num_samples for k, r in mon.result.results.items()} == {"relu#0": 7, "relu#1": 3}


@pytest.mark.parametrize(
    ("inner", "typename"), [(TupleOut(), "tuple"), (DictOut(), "dict")], ids=["tuple", "dict"]
)
@pytest.mark.parametrize("monitor", [PFA.monitor, IUA.monitor], ids=["PFA", "IUA"])
def test_output_that_is_not_a_single_tensor_is_a_clear_error(
    inner: nn.Module, typename: str, monitor
) -> None:
    net = Wrapper(inner)
    owner = "PFA" if monitor is PFA.monitor else "IUA"
    with monitor(net, ["inner"]) as mon:
        with pytest.raises(
            IntroscopeError,
            match=rf"{owner}\.monitor: module 'inner' returned a {typename}, not a single tensor",
        ):
            net(torch.randn(6, 3))
    assert not mon.attached
    # the failed pass ended: the next one counts calls from zero again
    with monitor(net, ["fc"]) as mon, torch.no_grad():
        net(torch.randn(6, 3))
        net(torch.randn(6, 3))
    names = mon.state.fields if owner == "PFA" else list(mon.result.results)
    assert names == ["fc"]


def test_zero_d_output_is_a_clear_error() -> None:
    class Scalar(nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN201
            return x.sum()

    net = nn.Sequential(nn.Linear(3, 2), Scalar())
    with PFA.monitor(net, "1"), pytest.raises(IntroscopeError, match="'1' returned a 0-d"):
        net(torch.randn(4, 3))


def test_attach_detach_and_context_manager_remove_every_hook() -> None:
    net = SharedReLU()
    mon = PFA.monitor(net, ["relu", "c2"])
    assert not mon.attached
    assert mon.attach() is mon and mon.attach() is mon  # idempotent
    assert mon.attached
    # Until a first pass has run, every module also has a hook following the layouts.
    assert len(net.relu._forward_hooks) == 2 and len(net._forward_pre_hooks) == 1
    net(torch.randn(2, 1, 8, 8))
    net(torch.randn(2, 1, 8, 8))  # the layout hooks are removed as this pass begins
    assert len(net.relu._forward_hooks) == 1 and not net.c1._forward_hooks
    mon.detach()
    assert not mon.attached
    for module in (net, net.relu, net.c2):
        assert not module._forward_hooks and not module._forward_pre_hooks
    with mon as entered:
        assert entered is mon and mon.attached
        net(torch.randn(2, 1, 8, 8))
    assert not mon.attached and not net._forward_hooks
    for module in (net, net.relu, net.c2):
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert mon.state.fields == ["relu#0", "c2", "relu#1"]  # in the order they first ran


def test_a_watched_model_can_be_copied_and_saved_and_copies_are_not_watched(tmp_path) -> None:
    import copy

    net = SharedReLU()
    x = torch.randn(3, 1, 8, 8)
    with IUA.monitor(net) as mon, torch.no_grad():
        net(x)
        twin = copy.deepcopy(net)  # a checkpoint / EMA copy
        torch.save(net, tmp_path / "net.pt")
        twin(x)  # not counted: the copy is another model
        net(x)
    loaded = torch.load(tmp_path / "net.pt", weights_only=False)
    loaded(x)  # its hooks are inert
    assert mon.result.results["relu#0"].num_samples == 6


def test_a_monitor_kept_on_the_model_is_shared_by_deepcopy_and_refused_by_save(tmp_path) -> None:
    import copy

    net = SharedReLU()
    net.monitor = IUA.monitor(net).attach()
    twin = copy.deepcopy(net)
    assert twin.monitor is net.monitor
    twin(torch.randn(2, 1, 8, 8))  # the copy is not watched
    net(torch.randn(3, 1, 8, 8))
    assert net.monitor.result.results["relu#0"].num_samples == 3
    with pytest.raises(TypeError, match="cannot be pickled.*model.state_dict"):
        torch.save(net, tmp_path / "net.pt")
    net.monitor.detach()


def test_a_dropped_attached_monitor_detaches_with_a_warning() -> None:
    import gc

    net = SharedReLU()
    IUA.monitor(net).attach()  # no reference kept: nobody can read what it counts
    with pytest.warns(RuntimeWarning, match="garbage-collected") as caught:
        gc.collect()
    # At the line whose collection ran the finalizer, not at weakref.py or introscope.
    assert [w.filename for w in caught] == [__file__]
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_rows_that_are_not_samples_warn_once() -> None:
    # A sequence-first layer inside a batch-first model: its rows are positions (5), not the
    # forward's 12 samples.
    class SeqFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.relu = nn.ReLU()

        def forward(self, x):  # noqa: ANN001, ANN201 - x: (N, L, 4)
            return self.relu(self.proj(x.transpose(0, 1))).mean(0)

    net = SeqFirst()
    with IUA.monitor(net, ["relu"]) as mon:
        with pytest.warns(UserWarning, match="returned 5 rows in a forward pass of 12 samples"):
            net(torch.randn(12, 5, 4))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            net(torch.randn(12, 5, 4))  # once per response
    assert mon.result.results["relu"].num_samples == 10


def test_a_sequence_first_input_warns_once_and_batch_first_does_not() -> None:
    import warnings

    # The model's own input is (sequence, batch, features): every output has the sequence on
    # dimension 0, so the rows check sees nothing wrong; the batch_first=False module says it.
    class Encoder(nn.Module):
        def __init__(self, batch_first: bool) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first)
            self.relu = nn.ReLU()

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.relu(self.attn(x, x, x, need_weights=False)[0])

    seq_first = Encoder(batch_first=False).eval()
    with IUA.monitor(seq_first, ["relu"]):
        with pytest.warns(UserWarning, match=r"'attn' \(MultiheadAttention, batch_first=False\)"):
            seq_first(torch.randn(5, 3, 8))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            seq_first(torch.randn(5, 3, 8))  # once per monitor
    batch_first = Encoder(batch_first=True).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with IUA.monitor(batch_first, ["relu"]) as mon:
            batch_first(torch.randn(3, 5, 8))
    assert mon.result.results["relu"].num_samples == 3


def test_module_resolution_errors_name_the_problem() -> None:
    net = SharedReLU()
    with pytest.raises(IntroscopeError, match=r"unknown module 'rleu' \(did you mean 'relu'"):
        PFA.monitor(net, ["c1", "rleu"])
    with pytest.raises(IntroscopeError, match="PFA.monitor: layers is empty"):
        PFA.monitor(net, [])
    with pytest.raises(IntroscopeError, match="PFA.monitor: the model has no default module"):
        PFA.monitor(net, None)
    with pytest.raises(IntroscopeError, match="module names .str. or torch modules, got int"):
        PFA.monitor(net, ["c1", 3])
    with pytest.raises(IntroscopeError, match="Linear module is not part of the model"):
        IUA.monitor(net, [nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="PFA.monitor needs a torch.nn.Module, got list"):
        PFA.monitor([net], "relu")
    with pytest.raises(IntroscopeError, match="pool must be one of"):
        PFA.monitor(net, "relu", pool="sum")
    mon = PFA.monitor(net, [net.c1, "relu"])  # modules and names may be mixed
    assert list(mon._modules) == ["c1", "relu"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_modules_are_refused_instead_of_watched_silently() -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    with pytest.raises(IntroscopeError, match="the model is a TorchScript module"):
        IUA.monitor(scripted, ["1"])
    outer = nn.Sequential(scripted, nn.ReLU())
    with pytest.raises(IntroscopeError, match=r"'0\.1' is \(inside\) the TorchScript module '0'"):
        PFA.monitor(outer, ["0.1"])
    with pytest.raises(IntroscopeError, match="'0' is .inside. the TorchScript module '0'"):
        IUA.monitor(outer, [outer[0]])
    # the default ReLUs: a scripted ReLU's class is RecursiveScriptModule, so it is not picked
    assert list(IUA.monitor(outer)._modules) == ["1"]


def test_importing_the_introspectors_does_not_import_torch() -> None:
    code = "import sys, introscope.introspectors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_monitor_feeds_any_accumulator_and_names_calls_like_the_adapter() -> None:
    from introscope.introspectors._accumulator import Accumulator, Capabilities, State
    from introscope.torch._monitor import Monitor

    class Count(State):
        capabilities = Capabilities(grows_with=())

        def __init__(self) -> None:
            self.n = 0

        def update(self, array, *, allow_nonfinite=False):  # noqa: ANN001, ANN201
            assert isinstance(array, torch.Tensor)  # the tensor itself, on its device
            self.n += int(array.shape[0])
            return 0

        def merged(self, other):  # noqa: ANN001, ANN201
            out = Count()
            out.n = self.n + other.n
            return out

        def result(self):  # noqa: ANN201
            return self.n

        def state_dict(self):  # noqa: ANN201
            return {"n": self.n}

        @classmethod
        def from_state_dict(cls, state):  # noqa: ANN001, ANN206
            out = cls()
            out.n = int(state["n"])
            return out

        @property
        def nbytes(self) -> int:
            return 8

    class Samples(Accumulator):
        owner = "Samples"
        state_type = Count

        def new_state(self, field, array):  # noqa: ANN001, ANN201
            return Count()

        def config(self):  # noqa: ANN201
            return {}

        def finalize(self):  # noqa: ANN201
            return {k: s.result() for k, s in self.states.items()}

    net = SharedReLU()
    mon = Monitor(net, Samples(), ["relu", "c1"], owner="Samples.monitor")
    with mon, torch.no_grad():
        net(torch.randn(5, 1, 8, 8))
        net(torch.randn(2, 1, 8, 8))
    assert mon.result == {"relu#0": 7, "c1": 7, "relu#1": 7}
    assert mon.state is mon.accumulator and not mon.attached
    mon.reset()
    assert mon.result == {}
    with pytest.raises(TypeError, match="the accumulator must have update"):
        Monitor(net, object(), ["c1"])


def test_iua_monitor_defaults_are_introspects_with_the_modules_layout() -> None:
    from introscope.torch import load_torch_model_from_memory

    torch.manual_seed(3)
    net = SharedReLU()
    x = torch.randn(12, 1, 8, 8)
    with IUA.monitor(net) as mon, torch.no_grad():
        net(x)
    got = mon.result
    model = load_torch_model_from_memory(net, example_input=x[:2].numpy())
    arrays = x.numpy()

    def producer(batch_size: int):
        for i in range(0, len(arrays), batch_size):
            yield Batch({"x": arrays[i : i + batch_size]})

    want = IUA.introspect(
        pipeline(producer, model(["relu#0", "relu#1"])), response_infos=model.response_infos
    )
    for name in ("relu#0", "relu#1"):
        assert got.results[name] == want.results[name]
        assert got.channel_results[name] == want.channel_results[name]  # both channels-first
    with IUA.monitor(net, channel_axis={"relu#0": None}) as none, torch.no_grad():
        net(x)
    assert list(none.result.channel_results) == ["relu#1"]  # relu#0 named before its rename


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointed_blocks_recomputed_in_backward_are_not_counted_twice(reentrant: bool) -> None:
    from torch.utils.checkpoint import checkpoint

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(checkpoint(self.block, x, use_reentrant=reentrant))

    torch.manual_seed(0)
    net = Net().train()
    layers = ["block.0", "block.1"]
    with IUA.monitor(net, layers) as iua, PFA.monitor(net, layers) as pfa:
        for _ in range(3):
            x = torch.randn(10, 4, requires_grad=reentrant)
            net(x).pow(2).mean().backward()  # the block runs again inside backward()
    assert {n: iua.result.results[n].num_samples for n in layers} == dict.fromkeys(layers, 30)
    assert {n: pfa.state.count(n) for n in layers} == dict.fromkeys(layers, 30)


def test_monitors_take_features_last_layouts_from_the_layers_before() -> None:
    # A Linear on (N, L, D) acts on the last axis, and so does the ReLU after it: IUA's
    # channel view and PFA's pooling use the features (D), as introspect does via the adapter.
    from introscope.torch import load_torch_model_from_memory

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU()).eval()
    x = torch.randn(6, 10, 16)
    with IUA.monitor(net, ["1"]) as iua, PFA.monitor(net, ["0", "1"]) as pfa, torch.no_grad():
        net(x)
        net(x[:3])  # the layout hooks are gone after the first pass; results unchanged
    with torch.no_grad():
        y = torch.cat([net(x), net(x[:3])])
    assert pfa.state.covariance("0").shape == (8, 8)
    ref = PFA.accumulator()
    ref.update("1", y.amax(dim=1).double().numpy())
    np.testing.assert_allclose(pfa.state.covariance("1"), ref.covariance("1"), rtol=1e-6)
    model = load_torch_model_from_memory(net, example_input=x[:2].numpy())
    assert model.response_infos["1"].channel_axis == -1
    arrays = torch.cat([x, x[:3]]).numpy()
    want = IUA.introspect(
        pipeline(lambda bs: iter([Batch({"x": arrays})]), model(["1"])),
        response_infos=model.response_infos,
    )
    assert iua.result.channel_results["1"] == want.channel_results["1"]


def test_a_forward_that_raises_after_counting_warns_once() -> None:
    net = RaisesOnThreeRows(RuntimeError("out of memory"))
    with IUA.monitor(net, ["relu"]) as mon:
        with pytest.warns(RuntimeWarning, match="raised after 1 watched module output"):
            with pytest.raises(RuntimeError, match="out of memory"):
                net(torch.randn(3, 4))
        net(torch.randn(2, 4))
        with pytest.raises(RuntimeError):
            net(torch.randn(3, 4))  # said once
    assert mon.result.results["relu"].num_samples == 8


def test_monitor_lifecycle_edge_cases() -> None:
    import gc
    import warnings

    net = SharedReLU()
    # A forward run inside the user's own except block is not "a forward that raised".
    with IUA.monitor(net, ["relu"]) as mon:
        try:
            raise ValueError("the user's own")
        except ValueError:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                net(torch.randn(2, 1, 8, 8))
    assert mon.state.fields == ["relu#0", "relu#1"]
    # An unknown module is a KeyError too.
    with pytest.raises(KeyError, match="unknown module 'rleu'"):
        IUA.monitor(net, ["rleu"])

    # A monitor and its model dropped together: no warning.
    def local() -> None:
        model = SharedReLU()
        IUA.monitor(model).attach()
        model(torch.randn(2, 1, 8, 8))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        local()
        gc.collect()


def test_an_interrupted_pass_does_not_make_later_passes_nested() -> None:
    net = RaisesOnThreeRows(KeyboardInterrupt())  # torch runs no always_call hook for it
    with IUA.monitor(net, ["relu"]) as mon:
        with pytest.raises(KeyboardInterrupt):
            net(torch.randn(3, 4))
        net(torch.randn(2, 4))
        net(torch.randn(2, 4))
    assert mon.state.fields == ["relu"] and mon.result.results["relu"].num_samples == 7


def test_torch_jit_trace_of_a_watched_model_works_and_is_not_counted() -> None:
    import warnings

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = torch.randn(5, 4)
    with IUA.monitor(net) as mon:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.13 deprecates TorchScript
            traced = torch.jit.trace(net, x)  # a trace pass, then a check pass: neither counted
        assert mon.state.fields == []
        net(x[:3])
        assert mon.result.results["1"].num_samples == 3
    torch.testing.assert_close(traced(x), net(x))


def test_torch_jit_script_of_a_watched_model_says_to_detach_first() -> None:
    import warnings

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with IUA.monitor(net) as mon, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates TorchScript
        with pytest.raises(AttributeError, match=r"torch.jit.script: detach the monitor"):
            torch.jit.script(net)
        mon.detach()
        scripted = torch.jit.script(net)
        mon.attach()
        net(torch.randn(3, 4))
        scripted(torch.randn(2, 4))  # not watched
    assert mon.result.results["1"].num_samples == 3


def test_data_parallel_replicas_are_said_not_to_be_watched() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    # nn.DataParallel replicates each module this way on every forward (CUDA devices only).
    replica = net[1]._replicate_for_data_parallel()
    with IUA.monitor(net) as mon:
        with pytest.warns(RuntimeWarning, match="DataParallel replicas") as said:
            replica(torch.randn(2, 8))
            replica(torch.randn(2, 8))
        assert len(said) == 1
        net(torch.randn(3, 4))
    assert mon.result.results["1"].num_samples == 3


def test_results_read_before_a_reset_are_kept_and_the_accumulator_can_be_replaced() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    history = []
    with IUA.monitor(net) as mon:
        for epoch in range(2):
            net(torch.randn(10 + epoch, 4))
            history.append(mon.result)  # once per epoch, as the docs say
            mon.reset()
        net(torch.randn(3, 4))
        assert [r.results["1"].num_samples for r in history] == [10, 11]  # snapshots
        saved = mon.accumulator.state_dict()  # a checkpoint...
        mon.accumulator = IUA.from_state_dict(saved)  # ...to go on from
        net(torch.randn(2, 4))
    assert mon.result.results["1"].num_samples == 5
    with pytest.raises(TypeError, match="must have update"):
        mon.accumulator = object()


def test_a_model_run_from_several_threads_counts_each_pass_once() -> None:
    import threading

    torch.manual_seed(0)
    net = SharedReLU().eval()
    x = torch.randn(16, 1, 8, 8)

    def work() -> None:
        with torch.no_grad():
            for _ in range(30):
                net(x)

    with IUA.monitor(net) as mon, PFA.monitor(net, [net.relu]) as pfa:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    counts = {k: r.num_samples for k, r in mon.result.results.items()}
    assert counts == {"relu#0": 3 * 30 * 16, "relu#1": 3 * 30 * 16}
    assert pfa.state.fields == ["relu#0", "relu#1"] and pfa.state.count("relu#1") == 1440


def test_resuming_a_shared_module_and_forwards_run_in_worker_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    net = SharedReLU()
    with IUA.monitor(net) as first:
        net(torch.randn(5, 1, 8, 8))
    saved = first.accumulator.state_dict()
    again = IUA.monitor(net)  # a new run, from the checkpoint
    again.accumulator = IUA.from_state_dict(saved)
    with again:
        net(torch.randn(3, 1, 8, 8))
    assert {k: r.num_samples for k, r in again.result.results.items()} == {
        "relu#0": 8,
        "relu#1": 8,
    }

    pool = ThreadPoolExecutor(1)

    class Threaded(nn.Module):  # a forward that runs its modules in a worker thread
        def __init__(self) -> None:
            super().__init__()
            self.inner = SharedReLU()

        def forward(self, x):  # noqa: ANN001, ANN201
            return pool.submit(self.inner, x).result()

    threaded = Threaded()
    with IUA.monitor(threaded, [threaded.inner.relu]) as mon:
        for _ in range(2):
            threaded(torch.randn(3, 1, 8, 8))
    pool.shutdown()
    counts = {k: r.num_samples for k, r in mon.result.results.items()}
    assert counts == {"inner.relu#0": 6, "inner.relu#1": 6}


def test_the_monitor_can_be_read_from_inside_a_hook() -> None:
    # A signal handler (e.g. SIGTERM: save a checkpoint) may run while a hook holds the lock.
    seen = []

    class Reading(IUA):
        def update(self, field, array, **options):  # noqa: ANN001, ANN003, ANN201
            seen.append(mon.result)  # the same thread, inside the hook's update
            return super().update(field, array, **options)

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    mon = IUA.monitor(net)
    mon.accumulator = Reading()
    with mon:
        net(torch.randn(2, 4))
        net(torch.randn(3, 4))
    assert [sorted(r.results) for r in seen] == [[], ["1"]]
    assert mon.result.results["1"].num_samples == 5


def test_a_monitor_never_attached_says_so_instead_of_an_empty_result() -> None:
    """``m = IUA.monitor(net)`` registers nothing; reading its result says how to attach it."""
    from introscope.exceptions import IntroscopeValueError

    net = SharedReLU()
    x = torch.randn(2, 1, 8, 8)
    for factory in (IUA.monitor, lambda n: PFA.monitor(n, ["c1"])):
        m = factory(net)
        net(x)  # not counted: the monitor is not attached
        with pytest.warns(RuntimeWarning, match=r"never attached.*with .*\.monitor\(model\)"):
            result = m.result
        if isinstance(result, IUA):
            with pytest.raises(IntroscopeValueError, match="holds no responses: nothing was"):
                IUA.show(result)
    # Attached once: no warning afterwards, even when detached again.
    m = IUA.monitor(net)
    with m:
        net(x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.result.results["relu#0"].num_samples == 2
        # An accumulator resumed from a checkpoint holds data: no warning either.
        fresh = IUA.monitor(net)
        fresh.accumulator = IUA.from_state_dict(m.accumulator.state_dict())
        assert fresh.result.results["relu#1"].num_samples == 2
