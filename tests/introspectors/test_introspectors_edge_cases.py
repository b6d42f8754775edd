"""IUA and PFA together and on large batches: one pass equals separate passes; memory stays small."""

from __future__ import annotations

import functools
import tracemalloc

import numpy as np

from introscope.base import Batch, multi_introspect
from introscope.introspectors import IUA, PFA
from introscope.introspectors.pfa._covariance import PFACovarianceState


def _producer(fields: dict[str, np.ndarray]):
    n = len(next(iter(fields.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in fields.items()})

    return producer


def test_multi_introspect_iua_pfa_equals_separate_runs() -> None:
    rng = np.random.default_rng(8)
    fields = {
        "dense": np.maximum(rng.standard_normal((150, 12)), 0).astype(np.float32),
        "other": (rng.standard_normal((150, 3)) @ rng.standard_normal((3, 7))).astype(np.float32),
    }
    producer = _producer(fields)
    iua, pfa = multi_introspect(IUA.introspect, PFA.introspect, producer=producer)
    iua_alone, pfa_alone = IUA.introspect(producer), PFA.introspect(producer)
    assert iua.results.keys() == iua_alone.results.keys()
    for name, res in iua_alone.results.items():
        assert iua.results[name] == res
    for name, cov in pfa_alone.covariances.items():
        np.testing.assert_array_equal(pfa.covariances[name].covariances, cov.covariances)
    assert pfa.get_recipe() == pfa_alone.get_recipe()
    # different batch sizes are cut from the same pass
    iua2, pfa2 = multi_introspect(
        functools.partial(IUA.introspect, batch_size=7),
        functools.partial(PFA.introspect, batch_size=64),
        producer=producer,
    )
    assert all(iua2.results[n] == r for n, r in iua_alone.results.items())
    for name, cov in pfa_alone.covariances.items():
        # another first batch, another shift: float32 products agree to ~1e-7 of the variances
        np.testing.assert_allclose(
            pfa2.covariances[name].covariances, cov.covariances, rtol=1e-6, atol=1e-6
        )


def test_large_batches_need_little_memory_beyond_the_batch() -> None:
    x = np.random.default_rng(9).standard_normal((40_000, 128)).astype(np.float32)
    np.maximum(x, 0, out=x)
    # Once per process, the first count loads numba's compiled loop (when installed): not
    # memory per batch.
    IUA().update("warm", x[:2])
    tracemalloc.start()
    try:
        iua = IUA()
        iua.update("a", x.reshape(40_000, 8, 16))
        iua_peak = tracemalloc.get_traced_memory()[1]
        state = PFACovarianceState()
        state.update("a", x)
        tracemalloc.reset_peak()
        state.update("a", x)  # a later batch: the shift is known
        pfa_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # IUA works in cache-sized chunks: its state is one small integer per sample.
    assert iua_peak < 0.1 * x.nbytes
    # PFA stages a batch larger than its staging buffer as one float32 block (about 1x).
    assert pfa_peak < 1.3 * x.nbytes
    assert iua.results["a"].num_samples == 40_000 and state.count("a") == 80_000


def test_pfa_refuses_a_response_without_units() -> None:
    import pytest

    from introscope.exceptions import StateError

    empty = np.zeros((10, 0), np.float32)
    with pytest.raises(StateError, match=r"'a' \(batch 0\) has shape \(10, 0\): no units"):
        PFA.introspect(lambda bs: iter([Batch({"a": empty})]))


def test_data_accumulators_take_torch_tensors_numpy_lacks_or_that_require_grad() -> None:
    import pytest

    torch = pytest.importorskip("torch")
    from introscope.introspectors import Duplicates, Familiarity

    rows = torch.relu(torch.randn(60, 6, generator=torch.Generator().manual_seed(0)))
    for make in (Familiarity.accumulator, Duplicates.accumulator):
        want = make()
        want.update("r", rows.bfloat16().float().numpy())
        for tensor in (rows.bfloat16(), rows.bfloat16().clone().requires_grad_(True)):
            acc = make()
            acc.update("r", tensor)
            got, ref = acc.state_dict(), want.state_dict()  # the same rows, read as float32
            assert got.keys() == ref.keys()
            for key in got:
                np.testing.assert_array_equal(got[key], ref[key])
            acc.finalize()


def test_pca_refuses_what_it_cannot_fit_right_with_what_to_do() -> None:
    import pytest

    from introscope.exceptions import IntroscopeError
    from introscope.introspectors import DimensionReduction

    rng = np.random.default_rng(0)
    fine = DimensionReduction.pca_accumulator()
    fine.update("r", rng.standard_normal((40, 3)) * 1e-150)  # squares still normal floats
    fine.finalize()
    for scale in (1e-160, 1e-200):  # squares lose their digits, or underflow to zero
        tiny = DimensionReduction.pca_accumulator()
        tiny.update("r", rng.standard_normal((40, 3)) * scale)
        with pytest.raises(IntroscopeError, match="largest variance.*multiply the responses"):
            tiny.finalize()
    for constant in (np.zeros((20, 3)), np.full((20, 3), 5.0)):  # no variance: data, no error
        flat = DimensionReduction.pca_accumulator()
        flat.update("r", constant)
        flat.finalize()
    wide = DimensionReduction.pca_accumulator()
    with pytest.raises(IntroscopeError, match=r"200,000 features.*StandardPCA"):
        wide.update("r", np.zeros((3, 200_000), np.float32))
    assert wide.fields == []  # nothing allocated, nothing kept
    slow = DimensionReduction.pca_accumulator()
    with pytest.warns(UserWarning, match=r"9,000 features.*StandardPCA"):
        slow.update("r", np.zeros((2, 9_000), np.float32))  # 0.65 GB of sums: allowed, said
