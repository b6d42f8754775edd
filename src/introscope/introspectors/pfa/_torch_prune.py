"""Apply a PFA pruning plan to a plain PyTorch chain of Conv2d/Linear layers.

A *plain chain* is an ``nn.Sequential`` (nested Sequentials allowed) whose leaves run in order:
Conv2d / Linear, optionally BatchNorm, channel-wise modules (activations, pooling, dropout) and
at most one Flatten between the convolutions and the linear layers. Removing output channels of
one layer removes the matching input channels of the next Conv2d/Linear (and, across a Flatten,
the matching block of flattened features). torch is imported only when these functions run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, require

from ._plan import PFAPruningPlan

__all__ = ["PrunedModel", "count_params_and_macs", "prune_sequential"]


@dataclass(frozen=True)
class PrunedModel:
    """The smaller module, and its size before and after (MACs per sample)."""

    module: Any
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    channels: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Pruned layer (module name) -> (channels before, channels after)."""

    def summary(self) -> str:
        p = self.params_after / max(self.params_before, 1)
        m = self.macs_after / max(self.macs_before, 1)
        return (
            f"params {self.params_before:,} -> {self.params_after:,} ({p:.1%}), "
            f"MACs/sample {self.macs_before:,} -> {self.macs_after:,} ({m:.1%})"
        )


def _nn() -> Any:
    return require("torch.nn", "torch", "pruning PyTorch models")


def _channelwise_types(nn: Any) -> tuple[type, ...]:
    names = [
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
        "Sigmoid", "Tanh", "Hardtanh", "Hardswish", "Hardsigmoid", "Softplus", "Identity",
        "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "MaxPool2d", "AvgPool2d",
        "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "ZeroPad2d",
    ]  # fmt: skip
    return tuple(getattr(nn, n) for n in names if hasattr(nn, n))


def _leaves(model: Any) -> list[tuple[str, Any]]:
    nn = _nn()
    if not isinstance(model, nn.Sequential):
        raise IntroscopeError(
            f"prune_sequential needs an nn.Sequential chain, got {type(model).__name__}"
        )
    out: list[tuple[str, Any]] = []

    def walk(module: Any, prefix: str) -> None:
        for name, child in module.named_children():
            qualified = prefix + name
            if isinstance(child, nn.Sequential):
                walk(child, qualified + ".")
            elif next(child.children(), None) is None:
                out.append((qualified, child))
            else:
                raise IntroscopeError(
                    f"module {qualified!r} ({type(child).__name__}) is a container that is not "
                    f"nn.Sequential; only plain chains can be pruned"
                )

    walk(model, "")
    return out


def count_params_and_macs(model: Any, example_input: Any) -> tuple[int, int]:
    """(parameter count, multiply-accumulates per sample of Conv2d/Linear) on ``example_input``."""
    torch = require("torch", "torch", "counting MACs")
    nn = torch.nn
    macs = 0

    def hook(module: Any, inputs: Any, output: Any) -> None:
        nonlocal macs
        n = output.shape[0]
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * int(np.prod(module.kernel_size))
        else:
            per_output = module.in_features
        macs += output.numel() // n * per_output

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return sum(p.numel() for p in model.parameters()), macs


def _resolve(plan: PFAPruningPlan, leaves: list[tuple[str, Any]], names: Mapping[str, str]):
    """Map each plan layer to the Conv2d/Linear whose output channels it describes."""
    nn = _nn()
    passthrough = (*_channelwise_types(nn), nn.BatchNorm1d, nn.BatchNorm2d)
    owner: dict[str, str] = {}
    current = None
    for name, module in leaves:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            current = name
        elif not isinstance(module, passthrough):
            current = None  # Flatten or anything else: later responses are not channels
        owner[name] = current
    producers = [n for n, m in leaves if isinstance(m, (nn.Conv2d, nn.Linear))]
    targets: dict[str, tuple[str, Any]] = {}
    for response, layer_plan in plan.layers.items():
        module_name = names.get(response, response)
        if module_name not in owner:
            raise IntroscopeError(
                f"plan layer {response!r} names module {module_name!r}, which is not a leaf of "
                f"the chain; known: {[n for n, _ in leaves]} (pass layer_names to map them)"
            )
        target = owner[module_name]
        if target is None:
            raise IntroscopeError(
                f"plan layer {response!r} (module {module_name!r}) does not follow a Conv2d or "
                f"Linear through channel-wise modules only"
            )
        if target in targets:
            raise IntroscopeError(
                f"plan layers {targets[target][0]!r} and {response!r} both prune {target!r}"
            )
        if target == producers[-1] and len(layer_plan.remove) > 0:
            raise IntroscopeError(
                f"plan layer {response!r} would remove outputs of {target!r}, the last layer; "
                f"that changes the model's output"
            )
        targets[target] = (response, layer_plan)
    return targets


def prune_sequential(
    model: Any,
    plan: PFAPruningPlan,
    *,
    example_input: Any,
    layer_names: Mapping[str, str] | None = None,
) -> PrunedModel:
    """Return a smaller copy of ``model`` with the plan's units removed.

    Args:
        model: an ``nn.Sequential`` chain (it is not modified)
        plan: from ``PFA.pruning_plan(recipes)``; a layer may name the Conv2d/Linear itself or a
            module after it (BatchNorm, activation, pooling) whose response PFA analysed
        example_input: a batch the model accepts, used to count MACs
        layer_names: response name -> module name, where they differ
    """
    torch = require("torch", "torch", "pruning PyTorch models")
    nn = torch.nn
    targets = _resolve(plan, _leaves(model), layer_names or {})
    params_before, macs_before = count_params_and_macs(model, example_input)
    new = copy.deepcopy(model)
    keep_in: Any = None  # surviving output channels of the previous Conv2d/Linear
    prev_channels = 0
    flattened = False
    changed: dict[str, tuple[int, int]] = {}
    for name, module in _leaves(new):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            is_conv = isinstance(module, nn.Conv2d)
            weight = module.weight.detach()
            in_idx = None
            if keep_in is not None:
                in_idx = keep_in
                if not is_conv and flattened:
                    if module.in_features % prev_channels:
                        raise IntroscopeError(
                            f"{name!r}: {module.in_features} input features are not a multiple "
                            f"of the {prev_channels} channels before the Flatten"
                        )
                    spatial = module.in_features // prev_channels
                    in_idx = (keep_in[:, None] * spatial + np.arange(spatial)).ravel()
                if is_conv and module.groups != 1:
                    raise IntroscopeError(f"{name!r}: grouped convolutions cannot be pruned")
            out_idx = None
            if name in targets:
                response, layer_plan = targets[name]
                out_channels = module.out_channels if is_conv else module.out_features
                if layer_plan.original_count != out_channels:
                    raise IntroscopeError(
                        f"plan layer {response!r} has {layer_plan.original_count} units but "
                        f"{name!r} has {out_channels} output channels"
                    )
                out_idx = np.asarray(layer_plan.keep)
                if is_conv and module.groups != 1:
                    raise IntroscopeError(f"{name!r}: grouped convolutions cannot be pruned")
            if in_idx is not None or out_idx is not None:
                module = _slice_layer(nn, module, weight, out_idx, in_idx)
                _replace(new, name, module)
                if out_idx is not None:
                    changed[name] = (int(weight.shape[0]), len(out_idx))
            keep_in = out_idx
            prev_channels = int(weight.shape[0])
            flattened = False
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if keep_in is not None:
                _replace(new, name, _slice_bn(nn, module, keep_in))
        elif isinstance(module, nn.Flatten):
            flattened = True
        elif keep_in is not None and not isinstance(module, _channelwise_types(nn)):
            raise IntroscopeError(
                f"cannot carry removed channels through {name!r} ({type(module).__name__})"
            )
    params_after, macs_after = count_params_and_macs(new, example_input)
    return PrunedModel(new, params_before, params_after, macs_before, macs_after, changed)


def _slice_layer(nn: Any, module: Any, weight: Any, out_idx: Any, in_idx: Any) -> Any:
    import torch

    dev = weight.device
    rows = torch.as_tensor(out_idx, device=dev) if out_idx is not None else None
    cols = torch.as_tensor(in_idx, device=dev) if in_idx is not None else None
    w = weight if rows is None else weight[rows]
    w = w if cols is None else w[:, cols]
    bias = module.bias
    kw = {"device": dev, "dtype": weight.dtype}
    if isinstance(module, nn.Conv2d):
        new = nn.Conv2d(
            w.shape[1], w.shape[0], module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, bias=bias is not None,
            padding_mode=module.padding_mode, **kw,
        )  # fmt: skip
    else:
        new = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, **kw)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias is not None:
            new.bias.copy_(bias.detach() if rows is None else bias.detach()[rows])
    new.train(module.training)
    return new


def _slice_bn(nn: Any, module: Any, keep: Any) -> Any:
    import torch

    tensors = [t for t in (module.weight, module.running_mean) if t is not None]
    if not tensors:
        return module  # neither affine nor tracking statistics: nothing per channel
    idx = torch.as_tensor(keep, device=tensors[0].device)
    new = copy.deepcopy(module)
    new.num_features = len(keep)
    with torch.no_grad():
        if module.affine:
            new.weight = nn.Parameter(module.weight.detach()[idx].clone())
            new.bias = nn.Parameter(module.bias.detach()[idx].clone())
        if module.track_running_stats:
            new.running_mean = module.running_mean[idx].clone()
            new.running_var = module.running_var[idx].clone()
    return new


def _replace(root: Any, qualified: str, module: Any) -> None:
    parent = root
    *path, last = qualified.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, last, module)
