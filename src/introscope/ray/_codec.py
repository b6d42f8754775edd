"""State dicts (numpy arrays + JSON-able scalars) to bytes and back: .npz, never pickle."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

__all__ = ["encode_state", "decode_state"]

_SCALARS = "__scalars__"


def encode_state(state: Mapping[str, Any]) -> bytes:
    """``state`` as the bytes of an uncompressed ``.npz`` (scalars go to one JSON entry)."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in state.items():
        if key == _SCALARS:
            raise IntroscopeError(f"introscope.ray: state key {_SCALARS!r} is reserved")
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise IntroscopeError(
                    f"introscope.ray: state entry {key!r} is an object array; a state_dict holds "
                    f"numeric or string arrays only (it is shipped without pickle)"
                )
            arrays[key] = value
        else:
            scalars[key] = value
    try:
        arrays[_SCALARS] = np.array(json.dumps(scalars))
    except TypeError as exc:
        raise IntroscopeError(
            f"introscope.ray: state entries {sorted(scalars)} must be numpy arrays or JSON-able "
            f"scalars ({exc})"
        ) from None
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_state(data: bytes) -> dict[str, Any]:
    """The state dict that :func:`encode_state` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        out: dict[str, Any] = {key: npz[key] for key in npz.files if key != _SCALARS}
        out.update(json.loads(str(npz[_SCALARS])))
    return out
