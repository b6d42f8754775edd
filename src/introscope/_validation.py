"""Checks shared by several packages, with one error style (the way scikit-learn has ``check_array``).

Every message starts with ``owner`` (what raised it: ``"IUA"``, ``"PFA.monitor"``, ...), names
the argument, field or batch at fault, says what was expected and, where it helps, what to do.
Bad arguments raise :class:`~introscope.exceptions.IntroscopeValueError` (also a ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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
        listed = " or ".join(repr(c) for c in choices)
        raise IntroscopeValueError(f"{_prefix(owner)}{argument} must be {listed}, got {value!r}")
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
