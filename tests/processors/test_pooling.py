"""Pooler: max / sum / average over chosen dimensions."""

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError
from introscope.processors import Pooler


def pool(stage, **fields):
    return stage._get_batch_processor()(Batch(fields)).fields


X = np.array(
    [
        [[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]],
        [[0.0, 0.5, 0.25], [-1.0, -1.0, 8.0]],
    ]
)  # shape (2, 2, 3)


def test_pooler_numbers_for_each_method():
    out = pool(Pooler(dim=1, method=Pooler.Method.MAX), x=X)
    np.testing.assert_array_equal(out["x"], [[4, 5, 3], [0, 0.5, 8]])
    out = pool(Pooler(dim=2, method=Pooler.Method.SUM), x=X)
    np.testing.assert_array_equal(out["x"], [[2, 3], [0.75, 6]])
    out = pool(Pooler(dim=(1, 2), method=Pooler.Method.AVERAGE), x=X)
    np.testing.assert_allclose(out["x"], [5 / 6, 6.75 / 6])
    out = pool(Pooler(dim=-1, method="max"), x=X)
    np.testing.assert_array_equal(out["x"], [[3, 5], [0.5, 8]])


def test_pooler_spatial_nhwc_and_only_selected_fields():
    rng = np.random.default_rng(1)
    resp = rng.normal(size=(4, 5, 6, 7))
    other = rng.normal(size=(4, 3))
    out = pool(Pooler(dim=(1, 2), method=Pooler.Method.AVERAGE, fields="r"), r=resp, o=other)
    assert out["r"].shape == (4, 7)
    np.testing.assert_allclose(out["r"], resp.mean(axis=(1, 2)))
    np.testing.assert_array_equal(out["o"], other)


def test_pooler_integers_and_bools():
    ints = np.arange(12, dtype=np.int32).reshape(2, 6)
    assert pool(Pooler(1, Pooler.Method.SUM), x=ints)["x"].tolist() == [15, 51]
    bools = np.array([[True, False], [False, False]])
    assert pool(Pooler(1, Pooler.Method.MAX), x=bools)["x"].tolist() == [True, False]


def test_pooler_errors():
    with pytest.raises(ValueError, match="dimension 0"):
        Pooler(dim=0, method=Pooler.Method.MAX)
    with pytest.raises(ValueError, match="unknown method 'median'"):
        Pooler(dim=1, method="median")
    with pytest.raises(TypeError, match="Pooler.Method"):
        Pooler(dim=1, method=3)
    with pytest.raises(TypeError, match="dim must be an int"):
        Pooler(dim=1.5, method="max")
    with pytest.raises(IntroscopeError, match=r"out of range for field 'x' of shape \(2, 2, 3\)"):
        pool(Pooler(dim=3, method="max"), x=X)
    with pytest.raises(IntroscopeError, match="dimension 0 \\(the batch\\) of field 'x'"):
        pool(Pooler(dim=-3, method="max"), x=X)
    with pytest.raises(IntroscopeError, match="field 's' has dtype"):
        pool(Pooler(dim=1, method="sum"), s=np.array([["a"], ["b"]]))
    with pytest.raises(IntroscopeError, match="no field 'y'"):
        pool(Pooler(dim=1, method="sum", fields="y"), x=X)
