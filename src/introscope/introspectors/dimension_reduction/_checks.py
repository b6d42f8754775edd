"""Checks on the responses and arguments that dimension reduction receives."""

from __future__ import annotations

from typing import Any

import numpy as np

from introscope._validation import pooling_hint
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors._state_contract import host_array

__all__ = ["check_responses", "check_target_dimensions", "at"]


def at(where: str) -> str:
    """`` (batch 3)`` for error messages, or nothing."""
    return f" ({where})" if where else ""


def check_target_dimensions(who: str, value: object) -> int:
    """``value`` as a positive int, or an error naming ``who``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise IntroscopeValueError(
            f"{who}: target_dimensions must be a positive int, got {value!r}"
        )
    return int(value)


def check_responses(who: str, field: str, array: Any, where: str = "") -> np.ndarray:
    """``array`` as a 2-D numeric, finite numpy array, or an error naming ``field``."""
    x = host_array(array)
    name = f"field {field!r}" if field else "the data"
    if x.ndim != 2:
        hint = pooling_hint(x.shape) or "make them (samples, features) first, e.g. Flattener()"
        raise IntroscopeValueError(
            f"{who}: {name} has shape {x.shape}{at(where)}, but dimension reduction needs 2-D "
            f"responses (samples, features): {hint}"
        )
    if x.shape[1] == 0:
        raise IntroscopeValueError(
            f"{who}: {name} has shape {x.shape}{at(where)}: 0 features per sample; dimension "
            f"reduction needs at least one (check the response name or the processing before it)"
        )
    if x.dtype.kind not in "biuf":
        raise IntroscopeValueError(
            f"{who}: {name} has dtype {x.dtype}{at(where)}; dimension reduction needs numeric "
            f"responses (float, int or bool)"
        )
    if x.dtype.kind == "f" and x.size:
        finite = np.isfinite(x)
        if not finite.all():
            bad = ~finite
            rows = np.flatnonzero(bad.any(axis=1))
            raise IntroscopeValueError(
                f"{who}: {name} contains {int(bad.sum())} NaN or Inf value(s) in "
                f"{rows.size} row(s){at(where)}, first in row {int(rows[0])} of the batch; "
                f"remove or impute those samples before reducing"
            )
    return x
