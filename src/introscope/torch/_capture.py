"""Helpers shared by the torch backend: devices, eval mode, nested outputs, tensor conversion."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeError, require

__all__ = [
    "torch_module",
    "resolve_device",
    "eval_mode",
    "flatten_output",
    "get_output",
    "key_suffix",
    "numpy_dtype",
    "to_numpy",
    "forward_input_names",
    "forward_keyword_names",
]


def torch_module() -> Any:
    """``import torch`` or raise an error naming the ``torch`` extra."""
    return require("torch", "torch", "PyTorch models")


def resolve_device(device: Any, module: Any) -> Any:
    """The ``torch.device`` to run on: ``device`` if given, else where ``module``'s tensors live.

    Raises a clear error for a malformed device or an accelerator torch cannot use here.
    """
    torch = torch_module()
    meta = next((t for t in _tensors_of(module) if t.is_meta), None)
    if meta is not None:
        raise IntroscopeError(
            f"the torch module {type(module).__name__} has tensors on the 'meta' device, which "
            f"hold no data; materialise it first (e.g. module.to_empty(device='cpu') then "
            f"load_state_dict(...))"
        )
    if device is None:
        for tensor in _tensors_of(module):
            return tensor.device
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise IntroscopeError(
            f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise IntroscopeError(
                f"device {str(dev)!r} was requested but CUDA is not available to torch "
                f"{torch.__version__} (torch.cuda.is_available() is False); use device='cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise IntroscopeError(
                f"device {str(dev)!r} was requested but torch sees only "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise IntroscopeError(f"device {str(dev)!r} was requested but MPS is not available")
    return dev


def naming_root(module: Any) -> Any:
    """The module whose ``named_modules()`` name the responses: for a ``torch.compile``d model
    (an ``OptimizedModule``) the original one, so names do not start with ``_orig_mod.`` and
    match those of the uncompiled model."""
    inner = getattr(module, "_orig_mod", None)
    if inner is not None and type(module).__name__ == "OptimizedModule":
        return inner
    return module


def _tensors_of(module: Any) -> Iterator[Any]:
    yield from module.parameters()
    yield from module.buffers()


@contextlib.contextmanager
def eval_mode(modules: list[Any]) -> Iterator[None]:
    """Put every module of ``modules`` in eval mode, restoring each one's own flag afterwards."""
    training = [m for m in modules if m.training]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        # Per-module flags, not module.train(): a model may mix train and eval submodules.
        for m in training:
            m.training = True


def flatten_output(value: Any, key: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Yield ``(key, tensor)`` for every tensor in a module output (nested tuples/lists/dicts;
    a namedtuple's items are keyed by field name). A ``PackedSequence`` holds no per-sample
    tensor (its data is every sequence's steps, packed): it gives no response."""
    torch = torch_module()
    if isinstance(value, torch.Tensor):
        yield key, value
    elif isinstance(value, torch.nn.utils.rnn.PackedSequence):
        return
    elif isinstance(value, tuple) and isinstance(getattr(value, "_fields", None), tuple):
        for name, item in zip(cast(Any, value)._fields, value, strict=False):
            yield from flatten_output(item, key + (str(name),))
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from flatten_output(item, key + (i,))
    elif isinstance(value, Mapping):
        for k, item in value.items():
            yield from flatten_output(item, key + (k,))
    # Anything else (None, numbers, custom objects) carries no response.


def get_output(value: Any, key: tuple[Any, ...]) -> Any:
    """The part of a module output at ``key`` (as built by :func:`flatten_output`)."""
    for k in key:
        value = getattr(value, k) if isinstance(value, tuple) and isinstance(k, str) else value[k]
    return value


def call_name(base: str, call: int, repeated: bool) -> str:
    """Response name of the ``call``-th call (from 0) of a module within one forward pass.

    ``base`` for a module that runs once per pass, ``base#k`` for one that runs several times
    (shared by the adapter and the forward-hook monitor).
    """
    return f"{base}#{call}" if repeated else base


def key_suffix(key: tuple[Any, ...]) -> str:
    """``(1, "logits")`` -> ``"[1][logits]"``."""
    return "".join(f"[{k}]" for k in key)


def numpy_dtype(torch_dtype: Any) -> np.dtype:
    """The numpy dtype a response of ``torch_dtype`` is returned as (bfloat16 -> float32)."""
    torch = torch_module()
    if torch_dtype == torch.bfloat16:
        return np.dtype(np.float32)
    try:
        return cast(np.dtype, torch.empty(0, dtype=torch_dtype).numpy().dtype)
    except TypeError as exc:
        raise IntroscopeError(f"torch dtype {torch_dtype} has no numpy equivalent") from exc


def to_numpy(tensor: Any, name: str) -> np.ndarray:
    """A CPU tensor (owned by the caller) as a numpy array."""
    torch = torch_module()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    try:
        return cast(np.ndarray, tensor.numpy())
    except TypeError as exc:
        raise IntroscopeError(
            f"response {name!r} has torch dtype {tensor.dtype}, which numpy cannot hold"
        ) from exc


def forward_input_names(module: Any) -> tuple[list[str], bool]:
    """Names of ``module.forward``'s required inputs (positional, then keyword-only), and whether
    it takes ``*args``."""
    torch = torch_module()
    if isinstance(module, torch.jit.ScriptModule):
        try:
            arguments = module.forward.schema.arguments[1:]  # [0] is self
        except (AttributeError, RuntimeError):
            return ["input"], False
        return [a.name for a in arguments if a.default_value is None], False
    names: list[str] = []
    var = False
    for p in inspect.signature(module.forward).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            if p.default is p.empty:
                names.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            var = True
    return names, var


def forward_keyword_names(module: Any) -> tuple[list[str], frozenset[str]]:
    """``forward``'s optional inputs that can be given by name (signature order), and the names
    that must be passed by keyword (keyword-only ones, and optional ones, which may follow
    parameters that are not given)."""
    torch = torch_module()
    if isinstance(module, torch.jit.ScriptModule):
        return [], frozenset()
    optional: list[str] = []
    keyword: set[str] = set()
    for p in inspect.signature(module.forward).parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty:
            optional.append(p.name)
            keyword.add(p.name)
        elif p.kind is p.KEYWORD_ONLY:
            keyword.add(p.name)
    return optional, frozenset(keyword)
