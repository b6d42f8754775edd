"""The state codec: .npz bytes without pickle, integer arrays shipped narrow and restored."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.exceptions import IntroscopeError
from introscope.ray._codec import decode_state, encode_state


def test_round_trip_restores_values_and_dtypes():
    state = {
        "counts": np.array([0, 3, 1000], dtype=np.int64),  # travels as uint16
        "negative": np.array([-5, 7], dtype=np.int64),  # travels as int8
        "big": np.array([2**40], dtype=np.int64),  # stays int64
        "per_sample": np.array([1, 2], dtype=np.uint8),
        "sums": np.array([[1.5, -2.0]]),
        "names": np.array(["a", "b"]),
        "n": 3,
        "shape": [4, 5],
        "axis": None,
    }
    back = decode_state(encode_state(state))
    assert back.keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert back[key].dtype == value.dtype, key
            assert np.array_equal(back[key], value), key
        else:
            assert back[key] == value, key


def test_narrow_counters_are_smaller_on_the_wire():
    counts = np.arange(100_000, dtype=np.int64) % 300
    wide = len(encode_state({"c": counts.astype(np.float64)}))
    assert len(encode_state({"c": counts})) < wide / 3


def test_object_arrays_and_unknown_scalars_are_refused():
    with pytest.raises(IntroscopeError, match="object array"):
        encode_state({"x": np.array([object()], dtype=object)})
    with pytest.raises(IntroscopeError, match="JSON-able"):
        encode_state({"x": {1, 2}})
    with pytest.raises(IntroscopeError, match="reserved"):
        encode_state({"__scalars__": 1})


def test_error_info_keeps_numpy_scalar_attributes_and_message_only_errors():
    from introscope.exceptions import IntroscopeError
    from introscope.introspectors._state_contract import NonFiniteValues
    from introscope.ray._errors import error_info, rebuild_error

    back = rebuild_error(error_info(NonFiniteValues(np.int64(3), 10)))
    assert type(back) is NonFiniteValues and back.count == 3 and type(back.count) is int

    class Quiet(IntroscopeError):  # DNIKit's style: the text only in .message
        def __str__(self) -> str:
            return ""

        @property
        def message(self) -> str:
            return "my message"

    assert "my message" in str(rebuild_error(error_info(Quiet())))
