"""The types of the result values DNIKit users touch: numpy scalars where DNIKit gives them.

``DuplicateSetCandidate.mean``/``.std`` are numpy scalars of the normalised responses' dtype
(DNIKit code calls ``c.mean.item()``), ``indices`` holds ``numpy.int32`` and
``FamiliarityResult.score`` is a ``numpy.float64``. The last test checks the same against DNIKit
2.0 (skipped without its reference venv).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch, pipeline
from introscope.introspectors import Duplicates, Familiarity


def _points(dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    x = np.vstack([x, x[:8] + 1e-4 * rng.normal(size=(8, 6)), x[:1] + 1e-4])  # sets of 2 and 3
    return (x * 50).astype(dtype) if np.dtype(dtype).kind == "i" else x.astype(dtype)


def _producer(data: dict[str, np.ndarray]):
    size = len(next(iter(data.values())))

    def produce(batch_size: int):
        for lo in range(0, size, batch_size):
            yield Batch({k: v[lo : lo + batch_size] for k, v in data.items()})

    return produce


@pytest.mark.parametrize(
    ("dtype", "scalar"),
    [(np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float64)],
)
def test_duplicate_set_values_are_dnikits_numpy_types(dtype, scalar) -> None:
    dup = Duplicates.introspect(_producer({"emb": _points(dtype)}))
    candidates = dup.results["emb"]
    assert candidates and {c.size for c in candidates} >= {2, 3}
    for c in candidates:
        assert type(c.mean) is scalar and type(c.std) is scalar
        assert type(c.mean.item()) is float and type(c.std.item()) is float
        assert type(c.indices) is list
        assert all(type(i) is np.int32 for i in c.indices)
        assert c.batch.batch_size == len(c.indices)
        # numpy scalars index, compare and convert like ints and floats
        assert [int(i) for i in c.indices] == list(c.indices)
        assert float(c.mean) >= 0 and 0 <= float(c.std) <= float(c.mean) + 1e-6


def test_familiarity_scores_are_numpy_float64() -> None:
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    fam = Familiarity.introspect(
        _producer({"emb": x}), strategy=Familiarity.Strategy.GMM(random_state=0)
    )
    results = [
        r for b in pipeline(_producer({"emb": x}), fam)(32) for r in b.metadata[fam.meta_key]["emb"]
    ]
    assert len(results) == 100
    assert all(type(r.score) is np.float64 for r in results)
    assert all(type(r.percentile) is float for r in results)
    # numpy.float64 is a float: the scores JSON-dump as they did
    assert json.loads(json.dumps([r.score for r in results[:3]])) == [
        float(r.score) for r in results[:3]
    ]
    np.testing.assert_array_equal([r.score for r in results], fam.score("emb", x))


DNIKIT_SCRIPT = """
from dnikit.base import Batch, pipeline
from dnikit.introspectors import Duplicates, Familiarity

result = {}
for key in sorted(arrays):
    x = arrays[key]
    def producer(bs, x=x):
        for lo in range(0, len(x), bs):
            yield Batch({"emb": x[lo:lo + bs]})
    dup = Duplicates.introspect(producer)
    result[key] = sorted({
        (type(c.mean).__name__, type(c.std).__name__, type(c.indices).__name__,
         type(c.indices[0]).__name__)
        for c in dup.results["emb"]
    })
    if key == "float32":
        fam = Familiarity.introspect(producer)
        r = next(iter(pipeline(producer, fam)(10))).metadata[fam.meta_key]["emb"][0]
        result["score"] = type(r.score).__name__
"""


def test_types_match_dnikit(tmp_path) -> None:
    arrays = {name: _points(name) for name in ("float32", "float64", "int64")}
    reference = run_dnikit(DNIKIT_SCRIPT, arrays, tmp_path)
    for key, x in arrays.items():
        dup = Duplicates.introspect(_producer({"emb": x}))
        ours = sorted(
            {
                (
                    type(c.mean).__name__,
                    type(c.std).__name__,
                    type(c.indices).__name__,
                    type(c.indices[0]).__name__,
                )
                for c in dup.results["emb"]
            }
        )
        assert [list(t) for t in ours] == reference[key], key
    fam = Familiarity.introspect(_producer({"emb": arrays["float32"]}))
    r = next(iter(pipeline(_producer({"emb": arrays["float32"]}), fam)(10)))
    assert type(r.metadata[fam.meta_key]["emb"][0].score).__name__ == reference["score"]
