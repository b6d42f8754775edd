"""Apply PFA recipes to any PyTorch model, with Torch-Pruning's dependency graph.

Each plan layer names a response: the output of a convolution or linear layer, or of a module
that keeps its channels (BatchNorm, an activation, pooling, dropout) after one, which is then
traced back to the layer that produces those channels. The dependency graph
(``torch_pruning.DependencyGraph``) removes everything coupled to those output channels: the
inputs of the next layers, BatchNorm statistics, depthwise convolutions, the other branch of a
residual sum, the slice of a concatenation. Plan layers whose channels are coupled (two
convolutions summed by a residual connection, a convolution and the depthwise one after it)
form one group, and a group keeps the *union* of their units: a channel goes only when every
recipe of the group removes it. Torch-Pruning is the optional ``prune`` extra, imported here.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError, require

from ._plan import PFAGroupPlan, PFAPruningPlan

__all__ = ["PrunedModel", "count_params_and_macs", "prune_model", "prune_sequential"]


@dataclass(frozen=True)
class PrunedModel:
    """What ``PFA.prune`` returns: the pruned copy of the model, its size before and after (per
    sample), and the plan applied.

    ``module`` is the pruned ``torch.nn.Module`` (run, train, save or compile that);
    ``summary()`` says the parameters and MACs per sample before and after; ``plan`` is the
    plan with its groups and sizes filled in. A ``PrunedModel`` itself is a record, not a
    module: calling it raises a ``TypeError`` that says to call ``.module``.
    """

    module: Any
    """The pruned copy of the model (a ``torch.nn.Module``; the original is not changed)."""
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    channels: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Pruned layer (module name) -> (output channels before, after)."""
    plan: PFAPruningPlan | None = None
    """The plan with its groups and sizes filled in (``plan.to_json()`` to keep it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"PFA.prune returns a PrunedModel (the pruned module and its sizes), not a module: "
            f"call its .module instead (pruned.module(x)); the module is a "
            f"{type(self.module).__name__}"
        )

    def summary(self) -> str:
        """Parameters and MACs per sample before and after, as one line."""
        p = self.params_after / max(self.params_before, 1)
        m = self.macs_after / max(self.macs_before, 1)
        return (
            f"params {self.params_before:,} -> {self.params_after:,} ({p:.1%}), "
            f"MACs/sample {self.macs_before:,} -> {self.macs_after:,} ({m:.1%})"
        )


def _tp() -> Any:
    return require("torch_pruning", "prune", "pruning models with PFA recipes")


def _torch() -> Any:
    return require("torch", "torch", "pruning PyTorch models")


def count_params_and_macs(model: Any, example_input: Any) -> tuple[int, int]:
    """(parameter count, multiply-accumulates per sample) of ``model`` on ``example_input``.

    MACs come from Torch-Pruning's counter (convolutions, linear layers, normalisations,
    activations, pooling), on the batch's first element.
    """
    tp, torch = _tp(), _torch()
    training = {n: m.training for n, m in model.named_modules()}
    model.eval()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            macs, params = tp.utils.count_ops_and_params(
                model, _first_element(_as_tensors(example_input, *_float_dtype_and_device(model)))
            )
    finally:
        _restore_modes(model, training)
    return int(params), int(macs)


def _restore_modes(model: Any, training: Mapping[str, bool]) -> None:
    """Give each module (by name) the train/eval flag it had (``model.train`` sets them all)."""
    for name, module in model.named_modules():
        if name in training:
            module.training = training[name]


def _first_element(example_input: Any) -> Any:
    """The batch cut to its first element (MACs are counted for one sample)."""
    if isinstance(example_input, tuple):
        return tuple(_first_element(x) for x in example_input)
    if isinstance(example_input, Mapping):
        return {k: _first_element(v) for k, v in example_input.items()}
    return example_input[:1] if getattr(example_input, "ndim", 0) else example_input


# Modules whose output channels are their input channels, element for element.
_PASSTHROUGH = (
    "ReLU ReLU6 LeakyReLU PReLU ELU SELU CELU GELU SiLU Mish Sigmoid Tanh Hardtanh Hardswish "
    "Hardsigmoid Softplus Identity Dropout Dropout1d Dropout2d Dropout3d AlphaDropout MaxPool1d "
    "MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d "
    "AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d ZeroPad2d "
    "BatchNorm1d BatchNorm2d BatchNorm3d SyncBatchNorm InstanceNorm1d InstanceNorm2d "
    "InstanceNorm3d _ElementWiseOp"
).split()


def _producer_kind(module: Any) -> str | None:
    nn = _torch().nn
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Torch-Pruning's conv pruner handles transposed weights (in, out / groups, ...);
        # grouped ones are left out (their channel coupling is not handled here).
        return "conv" if module.groups == 1 else None
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def _out_channels(module: Any) -> int:
    return int(module.out_channels if hasattr(module, "out_channels") else module.out_features)


class _Graph:
    """The model's dependency graph, and plan layers traced to the modules owning their units."""

    def __init__(self, model: Any, example_input: Any) -> None:
        tp, torch = _tp(), _torch()
        self.model = model
        # The graph is traced through autograd; Torch-Pruning prints notices on stdout
        # ("No positional inputs found ...", for keyword inputs): not the user's output.
        with torch.enable_grad(), contextlib.redirect_stdout(io.StringIO()):
            self.dg = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_input, verbose=False
            )
        self.names = {m: n for n, m in model.named_modules()}
        self.modules = dict(model.named_modules())
        self.sources = _sources(model, example_input)

    def resolve(self, response: str, module_name: str) -> str:
        """The conv/linear module whose output channels the response ``response`` holds."""
        if "#" in module_name or "[" in module_name:
            raise IntroscopeValueError(
                f"PFA.prune: response {response!r} is one call or one element of a module's "
                f"output, not a module's output channels; recipes apply only to whole outputs"
            )
        module = self.modules.get(module_name)
        if module is None or not module_name:
            close = difflib.get_close_matches(module_name, list(self.modules), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise IntroscopeValueError(
                f"PFA.prune: plan layer {response!r} names module {module_name!r}, which the "
                f"model does not have{hint}; pass layer_names={{response: module}} to map names"
            )
        seen = module_name
        while _producer_kind(self.modules[seen]) is None:
            source = self.sources.get(seen)
            if type(self.modules[seen]).__name__ not in _PASSTHROUGH or source is None:
                raise IntroscopeValueError(
                    f"PFA.prune: plan layer {response!r} (module {module_name!r}, "
                    f"{type(module).__name__}) does not follow a Conv or Linear through "
                    f"channel-wise modules only, so its units are not a module's output "
                    f"channels; compute PFA on a convolution's or linear layer's output"
                )
            seen = source
        return seen

    def members(self, module_name: str) -> set[str]:
        """Names of every module the output channels of ``module_name`` are coupled with."""
        module = self.modules[module_name]
        group = self.dg.get_pruning_group(module, self._fn(module), idxs=[0])
        # modules whose *output* channels go with these (not the next layers' inputs)
        return {
            self.names[dep.target.module]
            for dep, _ in group
            if dep.target.module in self.names
            and getattr(dep.handler, "__name__", "") == "prune_out_channels"
        }

    def _fn(self, module: Any) -> Any:
        tp = _tp()
        if _producer_kind(module) == "linear":
            return tp.prune_linear_out_channels
        if module.groups > 1 and module.groups == module.in_channels == module.out_channels:
            return tp.prune_depthwise_conv_out_channels
        return tp.prune_conv_out_channels

    def _check_grouped_input(self, module_name: str, dep: Any, removed: list[int]) -> None:
        """A grouped (not depthwise) conv's input channels go in equal numbers per group."""
        target = dep.target.module
        groups = getattr(target, "groups", 1)
        if (
            getattr(dep.handler, "__name__", "") != "prune_in_channels"
            or _producer_kind(target) != "conv"
            or groups == 1
            or groups == target.in_channels == target.out_channels
        ):
            return
        size = target.in_channels // groups
        counts = np.bincount(np.asarray(removed, dtype=np.int64) // size, minlength=groups)
        if len(set(counts.tolist())) > 1:
            raise IntroscopeValueError(
                f"PFA.prune: removing channels {removed} of {module_name!r} would leave the "
                f"grouped convolution {self.names.get(target, '?')!r} (groups={groups}, "
                f"{size} input channels each) with unequal groups ({counts.tolist()} removed "
                f"per group); keep more units so that each group loses as many"
            )

    def prune(self, module_name: str, remove: list[int]) -> None:
        module = self.modules[module_name]
        group = self.dg.get_pruning_group(module, self._fn(module), idxs=remove)
        for dep, idxs in group:
            self._check_grouped_input(module_name, dep, [int(getattr(i, "idx", i)) for i in idxs])
        if not self.dg.check_pruning_group(group):
            raise IntroscopeError(
                f"PFA.prune: Torch-Pruning cannot remove {len(remove)} channels of "
                f"{module_name!r} (it would leave a coupled layer without channels)"
            )
        group.prune()


def _sources(model: Any, example_input: Any) -> dict[str, str]:
    """Leaf module -> the leaf module that produced its input tensor, from one forward pass."""
    torch = _torch()
    produced: dict[int, str] = {}
    consumed: dict[str, int] = {}
    alive: list[Any] = []  # keeps tensors alive, so their ids are not reused during the pass

    def hook(name: str) -> Callable[[Any, Any, Any], None]:
        def record(_module: Any, inputs: Any, output: Any) -> None:
            if inputs and isinstance(inputs[0], torch.Tensor) and name not in consumed:
                consumed[name] = id(inputs[0])
                alive.append(inputs[0])
            if isinstance(output, torch.Tensor):
                produced.setdefault(id(output), name)
                alive.append(output)

        return record

    leaves = [(n, m) for n, m in model.named_modules() if n and next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            _call(model, example_input)
    finally:
        for h in handles:
            h.remove()
    return {n: produced[i] for n, i in consumed.items() if i in produced and produced[i] != n}


def _call(model: Any, example_input: Any) -> Any:
    if isinstance(example_input, Mapping):
        return model(**example_input)
    return model(*example_input) if isinstance(example_input, tuple) else model(example_input)


def _as_tensors(example_input: Any, dtype: Any = None, device: Any = None) -> Any:
    """``example_input`` (an array or tensor, a tuple of them, or a mapping of forward argument
    names to them) with numpy arrays made torch tensors, moved to ``device`` (the model's) and
    floating inputs cast to ``dtype`` (the model's floating dtype), as the adapter feeds them;
    integers (token ids) keep their dtype."""
    torch = _torch()
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(np.ascontiguousarray(example_input))
    if isinstance(example_input, torch.Tensor):
        if dtype is not None and example_input.is_floating_point():
            return example_input.to(device=device, dtype=dtype)
        return example_input if device is None else example_input.to(device)
    if isinstance(example_input, tuple):
        return tuple(_as_tensors(x, dtype, device) for x in example_input)
    if isinstance(example_input, Mapping):
        return {k: _as_tensors(v, dtype, device) for k, v in example_input.items()}
    return example_input


def _float_dtype_and_device(model: Any) -> tuple[Any, Any]:
    """The dtype and device of the model's first floating parameter ((None, None) without)."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype, param.device
    return None, None


def _output_shapes(model: Any, example_input: Any) -> list[tuple[int, ...]]:
    """The shapes of the tensors the model returns on ``example_input`` (in output order)."""
    with _torch().no_grad():
        return [tuple(t.shape) for t in _tensors(_call(model, example_input))]


def _output_modules(model: Any, graph: _Graph, targets: list[str], example_input: Any) -> set[str]:
    """Which of ``targets`` produce (a tensor that is) the model's own output."""
    torch = _torch()
    outputs: dict[str, Any] = {}
    hooks = [
        graph.modules[t].register_forward_hook(lambda _m, _i, o, t=t: outputs.__setitem__(t, o))
        for t in targets
    ]
    try:
        with torch.no_grad():
            final = _call(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    finals = [final] if isinstance(final, torch.Tensor) else list(_tensors(final))
    return {t for t, o in outputs.items() if any(o is f for f in finals)}


def _tensors(out: Any) -> Any:
    torch = _torch()
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, Mapping):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _tensors(v)


def prune_model(
    model: Any,
    plan: PFAPruningPlan,
    *,
    example_input: Any,
    layer_names: Mapping[str, str] | None = None,
) -> PrunedModel:
    """Prune a copy of ``model`` (any ``torch.nn.Module``; it is not modified).

    Returns a ``PrunedModel``: ``.module`` is the pruned copy, ``.summary()`` and the
    ``params_*`` / ``macs_*`` fields its size before and after, ``.plan`` the plan applied.

    Args:
        model: the module the plan's responses come from.
        plan: ``PFA.pruning_plan(recipes)``; each layer names a response by module path.
        example_input: a batch the model accepts (a tensor, or a tuple of them), used to trace
            the model and to count MACs.
        layer_names: response name -> module name, where they differ.
    """
    names = dict(layer_names or {})
    torch = _torch()
    if isinstance(model, torch.jit.ScriptModule):
        raise IntroscopeValueError(
            "PFA.prune: the model is a TorchScript module, whose layers cannot be traced or "
            "pruned; prune the original (unscripted) module, then script the pruned copy"
        )
    # A torch.compile'd model: prune the module it wraps (the responses' names are its own).
    model = getattr(model, "_orig_mod", model)
    example_input = _as_tensors(example_input, *_float_dtype_and_device(model))
    new = copy.deepcopy(model)
    # Traced in eval mode; the copy gets each module's own train/eval flag back at the end.
    training = {n: m.training for n, m in new.named_modules()}
    new.eval()
    # The dependency graph is traced through autograd, which skips frozen parameters; and
    # pruned parameters come back as new ones that require grad. Every parameter is traced
    # with grad and gets its own flag back at the end.
    requires_grad = {n: p.requires_grad for n, p in new.named_parameters()}
    for param in new.parameters():
        if param.is_floating_point() or param.is_complex():
            param.requires_grad_(True)
    shapes_before = _output_shapes(new, example_input)
    params_before, macs_before = count_params_and_macs(new, example_input)
    graph = _Graph(new, example_input)
    owner: dict[str, str] = {}  # response -> conv/linear module owning its channels
    for response, layer in plan.layers.items():
        target = graph.resolve(response, names.get(response, response))
        out = _out_channels(graph.modules[target])
        if layer.original_count != out:
            raise IntroscopeValueError(
                f"PFA.prune: plan layer {response!r} has {layer.original_count} units but "
                f"{target!r} has {out} output channels"
            )
        owner[response] = target
    for response, target in owner.items():
        if plan.layers[response].remove and target in _output_modules(
            new, graph, [target], example_input
        ):
            raise IntroscopeValueError(
                f"PFA.prune: plan layer {response!r} would remove outputs of {target!r}, the "
                f"last layer; that changes the model's output"
            )
    groups = _groups(graph, plan, owner)
    before = {t: _out_channels(graph.modules[t]) for t in set(owner.values())}
    for group in groups:
        if group.remove:
            graph.prune(group.layers[0], list(group.remove))
    channels = {
        t: (n, _out_channels(graph.modules[t]))
        for t, n in before.items()
        if _out_channels(graph.modules[t]) != n
    }
    try:
        shapes_after = _output_shapes(new, example_input)
    except Exception as exc:  # Torch-Pruning left a shape it does not support
        raise IntroscopeError(
            f"PFA.prune: the pruned model no longer runs on example_input "
            f"({type(exc).__name__}: {exc}); a layer the dependency graph does not handle sits "
            f"between the pruned channels and their consumers"
        ) from exc
    if shapes_after != shapes_before:
        # A pruned layer reaches the output through shape-keeping modules (an activation,
        # a softmax) that the direct "is it the output?" test above does not see.
        pruned = sorted(r for r, t in owner.items() if t in channels)
        raise IntroscopeValueError(
            f"PFA.prune: pruning {pruned} changes the model's output shape from "
            f"{shapes_before} to {shapes_after}; leave the layers that produce the model's "
            f"outputs (the classifier) out of the recipes given to the plan"
        )
    params_after, macs_after = count_params_and_macs(new, example_input)
    _restore_modes(new, training)
    for name, param in new.named_parameters():
        param.requires_grad_(requires_grad.get(name, param.requires_grad))
    applied = PFAPruningPlan(
        plan.layers,
        groups=tuple(groups),
        params_before=params_before,
        params_after=params_after,
        macs_before=macs_before,
        macs_after=macs_after,
    )
    return PrunedModel(new, params_before, params_after, macs_before, macs_after, channels, applied)


def _groups(graph: _Graph, plan: PFAPruningPlan, owner: Mapping[str, str]) -> list[PFAGroupPlan]:
    """Plan layers whose channels are coupled, joined; each group keeps the union of units."""
    targets = list(dict.fromkeys(owner.values()))
    members = {t: graph.members(t) for t in targets}
    parent = {t: t for t in targets}

    def find(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            if b in members[a] or a in members[b]:
                parent[find(b)] = find(a)
    joined: dict[str, list[str]] = {}
    for t in targets:
        joined.setdefault(find(t), []).append(t)
    groups = []
    for layers in joined.values():
        responses = [r for r, t in owner.items() if t in layers]
        counts = {plan.layers[r].original_count for r in responses}
        if len(counts) > 1:
            raise IntroscopeError(
                f"PFA.prune: responses {responses} are coupled but have different unit counts "
                f"{sorted(counts)}; they cannot be reconciled channel for channel"
            )
        keep = sorted(set().union(*(plan.layers[r].keep for r in responses)))
        remove = sorted(set(range(counts.pop())) - set(keep))
        coupled = sorted(set().union(*(members[t] for t in layers)))
        groups.append(
            PFAGroupPlan(
                responses=tuple(responses),
                layers=tuple(layers),
                coupled=tuple(coupled),
                keep=tuple(keep),
                remove=tuple(remove),
            )
        )
    return groups


def prune_sequential(
    model: Any,
    plan: PFAPruningPlan,
    *,
    example_input: Any,
    layer_names: Mapping[str, str] | None = None,
) -> PrunedModel:
    """Return a smaller copy of an ``nn.Sequential`` chain (see ``prune_model``).

    Kept for code written before ``PFA.prune``; it is ``prune_model``, which takes any
    module.
    """
    return prune_model(model, plan, example_input=example_input, layer_names=layer_names)
