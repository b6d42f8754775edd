"""Differential test: introscope's IUA equals DNIKit 2.0's on the same arrays (skips without it)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch
from introscope.introspectors import IUA

N = 53

DNIKIT_SCRIPT = """
from dnikit.base import Batch
from dnikit.introspectors import IUA

def producer(batch_size):
    for start in range(0, len(arrays["conv"]), batch_size):
        yield Batch({k: v[start:start + batch_size] for k, v in arrays.items()})

result = {}
for batch_size in BATCH_SIZES:
    iua = IUA.introspect(producer, batch_size=batch_size, rtol=RTOL, atol=ATOL)
    result[str(batch_size)] = {
        name: {
            "mean": r.mean_inactive,
            "std": r.std_inactive,
            "inactive": [int(v) for v in r.inactive],
            "count": r.unit_inactive_count,
            "proportion": r.unit_inactive_proportion,
        }
        for name, r in iua.results.items()
    }
"""


def make_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    conv = rng.uniform(-1, 1, size=(N, 5, 4, 3)).astype(np.float32)
    conv[rng.random(conv.shape) < 0.4] = 0.0
    conv[:, 2] = 0.0  # a dead channel
    conv[3] = 0.0  # a sample with everything inactive
    conv[7, 1, 1, 1] = 1e-8  # on the tolerance: inactive
    conv[8, 1, 1, 1] = -1.2e-8  # just outside: active
    conv[9, 0, 0, 0] = -0.0
    dense = rng.standard_normal((N, 17))
    dense = np.maximum(dense, 0.0)
    dense[:, [0, 5]] = 0.0
    dense[10:20, 3] = 5e-9
    half = (rng.standard_normal((N, 6)) * 1e-7).astype(np.float16)
    half[::2] = 0
    ints = rng.integers(-1, 2, size=(N, 2, 3)).astype(np.int32)
    return {"conv": conv, "dense": dense, "half": half, "ints": ints}


def producer_of(arrays: dict[str, np.ndarray]):
    def produce(batch_size: int):
        for start in range(0, N, batch_size):
            yield Batch({k: v[start : start + batch_size] for k, v in arrays.items()})

    return produce


@pytest.mark.parametrize(("rtol", "atol"), [(1e-05, 1e-08), (0.5, 1e-3)])
def test_iua_equals_dnikit(tmp_path: pathlib.Path, rtol: float, atol: float) -> None:
    arrays = make_arrays()
    batch_sizes = [1, 7, 13, 64]
    script = f"BATCH_SIZES = {batch_sizes}\nRTOL = {rtol!r}\nATOL = {atol!r}\n" + DNIKIT_SCRIPT
    reference = run_dnikit(script, arrays, tmp_path)
    for batch_size in batch_sizes:
        ours = IUA.introspect(producer_of(arrays), batch_size=batch_size, rtol=rtol, atol=atol)
        theirs = reference[str(batch_size)]
        assert set(ours.results) == set(theirs)
        for name, ref in theirs.items():
            r = ours.results[name]
            assert r.mean_inactive == ref["mean"], name
            assert r.std_inactive == pytest.approx(ref["std"], abs=1e-12, rel=0), name
            np.testing.assert_array_equal(r.inactive, ref["inactive"])
            np.testing.assert_array_equal(r.unit_inactive_count, np.array(ref["count"]))
            np.testing.assert_array_equal(r.unit_inactive_proportion, np.array(ref["proportion"]))
            assert r.unit_inactive_count_array.shape == arrays[name].shape[1:]
