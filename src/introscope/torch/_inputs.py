"""What :class:`~._backend.TorchBackend` feeds its module: numpy batches as checked tensors.

``to_tensors`` turns one batch of numpy arrays into the module's input tensors: numeric arrays
only, of the per-element shape the dry run saw, cast to the inputs' dtype only where no value
changes, copied so that a module writing to its input leaves the caller's batch as it was.
``forward_error`` explains a forward pass that raised on them (shapes, dtypes, a hint).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from introscope.base import ResponseInfo
from introscope.base._model import check_exact_cast
from introscope.exceptions import IntroscopeError

__all__ = ["forward_error", "to_tensors"]


def to_tensors(
    torch: Any,
    inputs: Mapping[str, np.ndarray],
    input_names: Sequence[str],
    input_infos: Sequence[ResponseInfo],
    device: Any,
    torch_only_dtype: Callable[[], Any],
    *,
    check: bool = True,
) -> list[Any]:
    """The tensors fed to the module, in input order, on ``device``.

    With ``check``, each array is checked against its ``ResponseInfo`` from the dry run
    (per-element shape, an exact cast to its dtype); without, floating inputs take the
    infos' dtype (the parameters'). ``torch_only_dtype()``: a dtype numpy lacks (bfloat16)
    to cast floating tensors to, or None.
    """
    missing = [n for n in input_names if n not in inputs]
    if missing:
        raise IntroscopeError(f"the model expects inputs {input_names} but got {sorted(inputs)}")
    tensors = []
    cast_to = torch_only_dtype()
    for info in input_infos:
        arr = inputs[info.name]
        if not isinstance(arr, np.ndarray):
            raise IntroscopeError(
                f"model input {info.name!r} must be a numpy array, got {type(arr).__name__}"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise IntroscopeError(
                f"model input {info.name!r} must be numeric, got dtype {arr.dtype}"
            )
        dtype = arr.dtype
        if not check and np.issubdtype(dtype, np.floating):
            dtype = info.dtype  # the dry run: floating inputs as the parameters' dtype
        if check:
            expected = info.shape[1:]
            if arr.shape[1:] != expected:
                raise IntroscopeError(
                    f"model input {info.name!r} got a batch with per-element shape "
                    f"{arr.shape[1:]} but the model was set up for {expected} (from its "
                    f"example input or first batch); reshape the data or load the model "
                    f"again with an example input of the new shape"
                )
            if arr.dtype != info.dtype:
                if not np.can_cast(arr.dtype, info.dtype, "same_kind"):
                    raise IntroscopeError(
                        f"model input {info.name!r} has dtype {arr.dtype}, which cannot be "
                        f"converted to the model's input dtype {info.dtype} without changing "
                        f"kind"
                    )
                check_exact_cast(
                    arr,
                    info.dtype,
                    info.name,
                    expects="the model's input dtype, from its example input or first batch",
                    fix=f"load the model with an example input of dtype {arr.dtype}, or "
                    f"convert the data yourself",
                )
                dtype = info.dtype
        if device.type == "cpu":
            # A private copy: torch ignores numpy's read-only flag, and a model that writes
            # to its input in place must not change the caller's batch.
            t = torch.from_numpy(np.array(arr, dtype=dtype, copy=True, order="C"))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # read-only: copied by .to()
                t = torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))
        if cast_to is not None and t.is_floating_point():
            t = t.to(cast_to)  # a bfloat16 model: numpy has no such dtype
        tensors.append(t if device.type == "cpu" else t.to(device))
    return tensors


def forward_error(
    module: Any, input_names: Sequence[str], tensors: Sequence[Any], exc: Exception
) -> IntroscopeError:
    """The error for a forward pass of ``module`` that raised ``exc`` on ``tensors``: the inputs'
    shapes and dtypes, and a hint for integer inputs or grayscale images."""
    shapes = ", ".join(
        f"{n}: {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
        for n, t in zip(input_names, tensors)
    )
    ints = [
        n for n, t in zip(input_names, tensors) if not (t.is_floating_point() or t.is_complex())
    ]
    hint = ""
    if ints and any(w in str(exc).lower() for w in ("type", "dtype", "long", "int")):
        hint = (
            f"; integer inputs ({', '.join(ints)}) are fed unchanged (embeddings need "
            f"them): if the module expects floats, cast the data first, e.g. "
            f"pipeline(data, Processor(lambda x: x.astype(np.float32)), model(...))"
        )
    if "channels" in str(exc) and any(t.ndim >= 3 and t.shape[1] == 1 for t in tensors):
        hint = (
            "; the images have 1 channel (grayscale): load them with "
            "ImageProducer(..., mode='RGB') for an RGB model, or repeat the channel"
        )
    return IntroscopeError(
        f"the torch module {type(module).__name__} failed on inputs ({shapes}): "
        f"{type(exc).__name__}: {exc}{hint}"
    )
