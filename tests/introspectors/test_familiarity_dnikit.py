"""Familiarity against DNIKit 2.0 on the same seeded data (skipped without .venv-dnikit).

One RandomState shared by the fields in field order, as DNIKit does: means, covariances,
weights and scores agree to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch, pipeline
from introscope.introspectors import Familiarity, GMMCovarianceType

CONFIGS = [  # (covariance type, gaussian count)
    ("DIAG", 5),
    ("FULL", 5),
    ("DIAG", 1),
    ("FULL", 3),
]

DNIKIT_SCRIPT = """
import numpy as np
from dnikit.base import Batch, pipeline
from dnikit.introspectors import Familiarity, GMMCovarianceType

names = [str(n) for n in arrays["__order"]]
seed = int(arrays["__seed"])
batch_size = int(arrays["__batch_size"])
configs = [(str(c), int(k)) for c, k in zip(arrays["__cov"], arrays["__k"])]

def make_producer(prefix):
    data = {n: arrays[prefix + n] for n in names}
    size = len(data[names[0]])
    def producer(bs):
        for i in range(0, size, bs):
            yield Batch({n: v[i:i + bs] for n, v in data.items()})
    return producer

result = []
for cov, k in configs:
    strategy = Familiarity.Strategy.GMM(
        gaussian_count=k, covariance_type=getattr(GMMCovarianceType, cov),
        _random_state=np.random.RandomState(seed))
    fam = Familiarity.introspect(make_producer("fit_"), strategy=strategy, batch_size=batch_size)
    out = {"fields": list(fam._distributions), "params": {}, "scores": {n: [] for n in names}}
    for n, dist in fam._distributions.items():
        out["params"][n] = {
            "weights": np.asarray(dist.weights, dtype=float).tolist(),
            "means": [np.asarray(g.mean, dtype=float).ravel().tolist() for g in dist.gaussians],
            "covariances": [np.asarray(g.covariance, dtype=float).tolist() for g in dist.gaussians],
        }
    for batch in pipeline(make_producer("new_"), fam)(batch_size):
        for n in names:
            out["scores"][n] += [float(r.score) for r in batch.metadata[fam.meta_key][n]]
    result.append(out)
"""


def _case(fields: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, batch_size: int, tmp_path):
    arrays: dict[str, np.ndarray] = {
        "__order": np.array(list(fields)),
        "__seed": np.array(seed),
        "__batch_size": np.array(batch_size),
        "__cov": np.array([c for c, _ in CONFIGS]),
        "__k": np.array([k for _, k in CONFIGS]),
    }
    for name, (fit, new) in fields.items():
        arrays["fit_" + name] = fit
        arrays["new_" + name] = new
    reference = run_dnikit(DNIKIT_SCRIPT, arrays, tmp_path)

    def producer(data):
        size = len(next(iter(data.values())))

        def produce(bs):
            for i in range(0, size, bs):
                yield Batch({n: v[i : i + bs] for n, v in data.items()})

        return produce

    fit = producer({n: f for n, (f, _) in fields.items()})
    new = producer({n: x for n, (_, x) in fields.items()})
    for (cov, k), ref in zip(CONFIGS, reference, strict=True):
        strategy = Familiarity.Strategy.GMM(
            gaussian_count=k,
            covariance_type=GMMCovarianceType[cov],
            random_state=np.random.RandomState(seed),
        )
        fam = Familiarity.introspect(fit, strategy=strategy, batch_size=batch_size)
        assert list(fam.distributions) == ref["fields"]
        for name in fields:
            dist = fam.distributions[name]
            want = ref["params"][name]
            np.testing.assert_allclose(dist.weights, want["weights"], rtol=1e-9, atol=0)
            np.testing.assert_allclose(dist.means, want["means"], rtol=1e-9, atol=1e-12)
            dense = np.array([g.covariance for g in dist.gaussians])
            np.testing.assert_allclose(dense, want["covariances"], rtol=1e-9, atol=1e-12)
        scores = {n: [] for n in fields}
        for batch in pipeline(new, fam)(batch_size):
            for n in fields:
                scores[n] += [r.score for r in batch.metadata[fam.meta_key][n]]
        for n in fields:
            assert len(scores[n]) == len(fields[n][1])
            # DNIKit takes the log of float32 weights in float32 (a float32 fit keeps float32
            # parameters); introscope scores in float64 throughout. The gap is at most half a
            # float32 ulp of log(weight): 2.5e-7 absolute for weights above 1e-3.
            atol = 2.5e-7 if fields[n][0].dtype == np.float32 else 1e-9
            np.testing.assert_allclose(scores[n], ref["scores"][n], rtol=1e-9, atol=atol)


def _blobs(rng: np.random.Generator, n: int, d: int, centres: int, dtype=np.float64):
    means = rng.normal(scale=4.0, size=(centres, d))
    scales = rng.uniform(0.5, 2.0, size=(centres, d))
    pick = rng.integers(0, centres, size=n)
    return (means[pick] + scales[pick] * rng.normal(size=(n, d))).astype(dtype)


def test_several_fields_share_one_random_state_in_field_order(tmp_path) -> None:
    rng = np.random.default_rng(11)
    fields = {
        "b_wide": (_blobs(rng, 300, 17, 4), _blobs(rng, 37, 17, 4)),
        "a_narrow": (_blobs(rng, 300, 3, 3), _blobs(rng, 37, 3, 3)),
        "c_one": (_blobs(rng, 300, 1, 2), _blobs(rng, 37, 1, 2)),
    }
    _case(fields, seed=7, batch_size=64, tmp_path=tmp_path)


def test_float32_embeddings(tmp_path) -> None:
    rng = np.random.default_rng(5)
    fields = {"emb": (_blobs(rng, 900, 48, 6, np.float32), _blobs(rng, 120, 48, 6, np.float32))}
    _case(fields, seed=3, batch_size=100, tmp_path=tmp_path)


@pytest.mark.parametrize("seed", [0, 123])
def test_far_outliers_and_seeds(tmp_path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fit = _blobs(rng, 400, 8, 5)
    new = np.concatenate([_blobs(rng, 20, 8, 5), 30.0 + rng.normal(size=(5, 8))])
    _case({"x": (fit, new)}, seed=seed, batch_size=50, tmp_path=tmp_path)


INT_SEED_SCRIPT = """
import numpy as np
from dnikit.base import Batch
from dnikit.introspectors import Familiarity
x = arrays["x"]
result = {}
for order in (["a"], ["z", "a"]):
    strategy = Familiarity.Strategy.GMM(gaussian_count=5, _random_state=7)
    fam = Familiarity.introspect(lambda bs: iter([Batch({k: x for k in order})]), strategy=strategy)
    dist = fam._distributions["a"]
    result["+".join(order)] = [float(r.score) for r in dist.compute_familiarity_score(x[:5])]
"""


def test_int_seed_starts_every_field_afresh_as_dnikit(tmp_path) -> None:
    # DNIKit hands an int seed to scikit-learn, which seeds each field's fit with it: a field's
    # mixture does not depend on the fields fitted before it (a shared RandomState would).
    x = np.random.default_rng(0).standard_normal((200, 3))  # no clusters: the start matters
    ref = run_dnikit(INT_SEED_SCRIPT, {"x": x}, tmp_path / "dnikit")
    for order in (["a"], ["z", "a"]):
        strategy = Familiarity.Strategy.GMM(gaussian_count=5, _random_state=7)
        fam = Familiarity.introspect(
            lambda bs, order=order: iter([Batch({k: x for k in order})]), strategy=strategy
        )
        ours = [float(r.score) for r in fam._distributions["a"].compute_familiarity_score(x[:5])]
        np.testing.assert_allclose(ours, ref["+".join(order)], rtol=1e-9, atol=1e-9)
