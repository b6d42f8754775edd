"""Checks shared by several packages, with one error style (the way scikit-learn has ``check_array``).

Every message starts with ``owner`` (what raised it: ``"IUA"``, ``"PFA.monitor"``, ...), names
the argument, field or batch at fault, says what was expected and, where it helps, what to do.
Bad arguments raise :class:`~introscope.exceptions.IntroscopeValueError` (also a ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any

import numpy as np

from introscope.base._model import unknown_name_error
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeValueError

__all__ = [
    "check_batch_size",
    "check_choice",
    "check_int",
    "check_tolerance",
    "count_nonfinite",
    "numeric_dtype_kind",
    "pooling_hint",
    "user_stacklevel",
    "unknown_name_error",
    "unknown_names",
]


def _prefix(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_tolerance(value: object, argument: str, *, owner: str = "") -> float:
    """``value`` as a finite float >= 0 (a tolerance such as ``atol``), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise IntroscopeValueError(f"{_prefix(owner)}{argument} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < 0:
        raise IntroscopeValueError(
            f"{_prefix(owner)}{argument} must be finite and >= 0, got {value!r}"
        )
    return out


def check_choice(
    value: object, argument: str, choices: Sequence[object], *, owner: str = ""
) -> Any:
    """``value`` if it is one of ``choices``, else an error listing them."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise IntroscopeValueError(
            f"{_prefix(owner)}{argument} must be one of {listed}; got {value!r}"
        )
    return value


def check_int(value: object, argument: str, *, minimum: int | None = None, owner: str = "") -> int:
    """``value`` as an int (numpy integers accepted, bools not), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IntroscopeValueError(f"{_prefix(owner)}{argument} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise IntroscopeValueError(
            f"{_prefix(owner)}{argument} must be >= {minimum}, got {value!r}"
        )
    return int(value)


def unknown_names(
    kind: str, names: Iterable[str], known: Iterable[str], *, owner: str = ""
) -> None:
    """Raise an error listing close matches if any of ``names`` is not among ``known``."""
    known = list(known)
    missing = [n for n in names if n not in known]
    if missing:
        err = unknown_name_error(kind, missing, known)
        raise IntroscopeValueError(f"{_prefix(owner)}{err}")


def numeric_dtype_kind(dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds numbers (bool, integers, floats, complex)."""
    return np.dtype(dtype).kind in "biufc"


def count_nonfinite(array: Any) -> int:
    """Number of NaN or +-Inf values of a numpy array (0 for integer and bool arrays).

    A clean float array costs a ``max`` and a ``min`` pass (NaN propagates through both).
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return 0
    if arr.dtype.kind == "f" and np.isfinite(arr.max()) and np.isfinite(arr.min()):
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def pooling_hint(shape: Sequence[int], channel_axis: int | None = None) -> str:
    """How to make a response of ``shape`` (batch first) 2-D, in the layout it has.

    With ``channel_axis`` known (``ResponseInfo.channel_axis``) the hint names the exact
    ``Pooler`` dimensions; otherwise it gives both the channels-first (PyTorch, ONNX) and the
    channels-last (Keras) spelling, since following the wrong one pools the channels away. A
    1-D response (one value per sample) gets the reshape to ``(samples, 1)``; 2-D needs none.
    """
    rank = len(shape)
    if rank == 1:
        return (
            "it holds one value per sample; if that value is one unit, give it shape "
            "(samples, 1) first, e.g. Processor(lambda x: x.reshape(len(x), 1))"
        )
    if rank <= 2:
        return ""
    spatial = rank - 2
    first = tuple(range(2, rank))
    last = tuple(range(1, rank - 1))

    def dims(d: tuple[int, ...]) -> str:
        return str(d[0]) if len(d) == 1 else str(d)

    flat = "or Flattener() to keep every value as a unit"
    if channel_axis is not None and channel_axis % rank in (1, rank - 1):
        d = first if channel_axis % rank == 1 else last
        return f"pool its positions first, e.g. Pooler(dim={dims(d)}, method=Pooler.Method.MAX), {flat}"
    names = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}.get(
        spatial, ("channels first", "channels last")
    )
    return (
        f"pool its positions first: Pooler(dim={dims(first)}, method=Pooler.Method.MAX) for "
        f"channels-first responses (PyTorch, ONNX: {names[0]}), Pooler(dim={dims(last)}, ...) for "
        f"channels-last ones (Keras: {names[1]}); {flat}"
    )


def user_stacklevel(*skip: str) -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first caller outside introscope
    (and outside the packages or modules named in ``skip``, e.g. ``"torch"`` for a warning from
    a hook, ``"weakref"`` for one from a ``weakref.finalize`` callback).

    Call it right where you warn: ``warnings.warn(msg, stacklevel=user_stacklevel())``.
    """
    import os
    import sys

    packages = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    for name in skip:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) if module is not None else None
        if not path:
            continue
        path = os.path.abspath(path)
        if os.path.basename(path) == "__init__.py":  # a package: every file in it
            packages.append(os.path.dirname(path) + os.sep)
        else:  # a single module (e.g. "weakref", whose finalizers call ours)
            packages.append(path)
    prefixes = tuple(packages)
    frame: FrameType | None = sys._getframe(1)  # the function that warns
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(prefixes):
        frame = frame.f_back
        level += 1
    return level
