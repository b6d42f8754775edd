"""State dicts (numpy arrays + JSON-able scalars) to bytes and back: .npz, never pickle."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeError

__all__ = ["encode_state", "decode_state"]

_SCALARS = "__scalars__"
_DTYPES = "__dtypes__"


def _narrow(value: np.ndarray) -> np.ndarray:
    """An integer array in the smallest integer dtype that holds its values (lossless)."""
    if value.dtype.kind not in "iu" or value.size == 0 or value.dtype.itemsize == 1:
        return value
    low, high = int(value.min()), int(value.max())
    narrow = np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    return value.astype(narrow) if narrow.itemsize < value.dtype.itemsize else value


def encode_state(state: Mapping[str, Any]) -> bytes:
    """``state`` as the bytes of an uncompressed ``.npz`` (scalars go to one JSON entry).

    Integer arrays travel in the smallest integer dtype that holds their values and come back
    in their own dtype (a block's int64 counters fit in 1 or 2 bytes).
    """
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    dtypes: dict[str, str] = {}
    for key, value in state.items():
        if key in (_SCALARS, _DTYPES):
            raise IntroscopeError(f"introscope.ray: state key {key!r} is reserved")
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise IntroscopeError(
                    f"introscope.ray: state entry {key!r} is an object array; a state_dict holds "
                    f"numeric or string arrays only (it is shipped without pickle)"
                )
            # Counters (int64) of a block are small: ship them narrow, restore the dtype after.
            narrow = _narrow(value)
            if narrow.dtype != value.dtype:
                dtypes[key] = value.dtype.str
            arrays[key] = narrow
        else:
            scalars[key] = value
    try:
        arrays[_SCALARS] = np.array(json.dumps(scalars))
    except TypeError as exc:
        raise IntroscopeError(
            f"introscope.ray: state entries {sorted(scalars)} must be numpy arrays or JSON-able "
            f"scalars ({exc})"
        ) from None
    arrays[_DTYPES] = np.array(json.dumps(dtypes))
    buf = io.BytesIO()
    np.savez(buf, **cast("dict[str, Any]", arrays))  # every entry is an array
    return buf.getvalue()


def decode_state(data: bytes) -> dict[str, Any]:
    """The state dict that :func:`encode_state` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        dtypes = json.loads(str(npz[_DTYPES]))
        out: dict[str, Any] = {}
        for key in npz.files:
            if key not in (_SCALARS, _DTYPES):
                value = npz[key]
                out[key] = value.astype(dtypes[key]) if key in dtypes else value
        out.update(json.loads(str(npz[_SCALARS])))
    return out
