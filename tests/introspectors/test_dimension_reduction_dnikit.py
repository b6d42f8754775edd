"""DimensionReduction against DNIKit 2.0 on the same data (skipped without .venv-dnikit)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch, pipeline
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import DimensionReduction

S = DimensionReduction.Strategy

PREAMBLE = """
import numpy as np
from dnikit.base import Batch, pipeline
from dnikit.introspectors import DimensionReduction
S = DimensionReduction.Strategy

def producer_of(x):
    def produce(bs):
        for i in range(0, len(x), bs):
            yield Batch({"a": x[i:i + bs]})
    return produce

def project(dr, x, bs):
    return np.concatenate([b.fields["a"] for b in pipeline(producer_of(x), dr)(bs)])
"""

PCA_SCRIPT = (
    PREAMBLE
    + """
result = {}
for name in ("decay", "flat"):
    x, k, bs = arrays[name], int(arrays[name + "_k"]), int(arrays[name + "_bs"])
    for strategy in ("PCA", "StandardPCA"):
        dr = DimensionReduction.introspect(
            producer_of(x), strategies=getattr(S, strategy)(k), batch_size=bs)
        result[name + "/" + strategy] = project(dr, x, 64).tolist()
try:
    DimensionReduction.introspect(producer_of(arrays["flat"]), strategies=S.PCA(20), batch_size=10)
    result["pca_small_batch"] = "ok"
except Exception as exc:
    result["pca_small_batch"] = type(exc).__name__

small = arrays["small"]
tsne = DimensionReduction.introspect(
    producer_of(small), strategies=S.TSNE(2, perplexity=10, max_iter=250, random_state=0))
other = project(tsne, small + 10.0, 20)
result["tsne_other_equals_embedding"] = bool(
    np.array_equal(other, tsne._reducers["a"].transform_one_shot()))
"""
)

UMAP_SCRIPT = (
    PREAMBLE
    + """
x = arrays["x"]
dr = DimensionReduction.introspect(
    producer_of(x), strategies=S.UMAP(2, n_neighbors=8, random_state=0, n_epochs=50, n_jobs=1))
result = {"embedding": dr._reducers["a"]._umap.embedding_.tolist()}
for bs in (10, 120):
    result[str(bs)] = project(dr, x, bs).tolist()
"""
)


def _producer(x: np.ndarray):
    def produce(batch_size: int):
        for i in range(0, len(x), batch_size):
            yield Batch({"a": x[i : i + batch_size]})

    return produce


def _project(dr: DimensionReduction, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([b.fields["a"] for b in pipeline(_producer(x), dr)(batch_size)])


def _exact(x: np.ndarray, k: int) -> np.ndarray:
    """Projections on the exact principal axes (float64 SVD), scikit-learn's signs."""
    centred = x - x.mean(axis=0)
    vt = np.linalg.svd(centred, full_matrices=False)[2][:k]
    vt *= np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])[:, None]
    return centred @ vt.T


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.standard_normal((32, 32)))[0]
    return {
        # A decaying spectrum, fitted in batches of 50 (IncrementalPCA's usual regime).
        "decay": (rng.standard_normal((600, 32)) * 0.8 ** np.arange(32)) @ basis + 3.0,
        "decay_k": np.array(8),
        "decay_bs": np.array(50),
        # DNIKit's own test data shape: white noise, 250 x 60, 20 components, batches of 50.
        "flat": rng.standard_normal((250, 60)),
        "flat_k": np.array(20),
        "flat_bs": np.array(50),
        "small": rng.standard_normal((40, 5)),
    }


@pytest.fixture(scope="module")
def pca_ref(tmp_path_factory) -> dict:
    """DNIKit's PCA, StandardPCA and t-SNE results (one reference run for the module)."""
    return run_dnikit(PCA_SCRIPT, _data(), tmp_path_factory.mktemp("dnikit_dr"))


def test_pca_and_standard_pca_against_dnikit(pca_ref):
    arrays, ref = _data(), pca_ref
    errors = {}
    for name in ("decay", "flat"):
        x, k, bs = arrays[name], int(arrays[name + "_k"]), int(arrays[name + "_bs"])
        exact = _exact(x, k)
        for strategy in ("PCA", "StandardPCA"):
            dr = DimensionReduction.introspect(
                _producer(x), strategies=getattr(S, strategy)(k), batch_size=bs
            )
            ours = _project(dr, x, 64)
            theirs = np.asarray(ref[f"{name}/{strategy}"])
            # Same sign convention as scikit-learn: no alignment needed.
            assert _relative(ours, exact) < 1e-9, (name, strategy)
            errors[name, strategy] = _relative(theirs, exact)
    # DNIKit's StandardPCA is scikit-learn's PCA: exact here too.
    assert errors["decay", "StandardPCA"] < 1e-9 and errors["flat", "StandardPCA"] < 1e-9
    # DNIKit's PCA is IncrementalPCA on batches of 50: measured 3.8e-3 relative on the
    # decaying spectrum and 1.4 (other axes) on white noise, against about 1e-13 here.
    assert 1e-4 < errors["decay", "PCA"] < 1e-1
    assert errors["flat", "PCA"] > 1e-1
    # DNIKit raises for target_dimensions > batch_size; introscope fits it.
    assert ref["pca_small_batch"] == "DNIKitException"
    dr = DimensionReduction.introspect(
        _producer(arrays["flat"]), strategies=S.PCA(20), batch_size=10
    )
    assert _relative(_project(dr, arrays["flat"], 50), _exact(arrays["flat"], 20)) < 1e-9


def test_tsne_on_other_data_dnikit_returns_the_fitted_embedding_introscope_raises(pca_ref):
    arrays, ref = _data(), pca_ref
    assert ref["tsne_other_equals_embedding"] is True
    small = arrays["small"]
    dr = DimensionReduction.introspect(
        _producer(small), strategies=S.TSNE(2, perplexity=10, max_iter=250, random_state=0)
    )
    with pytest.raises(IntroscopeValueError, match="t-SNE embeds only the data it was fitted on"):
        _project(dr, small + 10.0, 20)


def test_umap_batch_size_independent_where_dnikit_moves(tmp_path):
    from tests.dnikit_ref import dnikit_python

    python = dnikit_python()
    if python is None:
        pytest.skip("DNIKit 2.0 reference venv not found (make dnikit-venv)")
    import subprocess

    if subprocess.run([str(python), "-c", "import umap"], capture_output=True).returncode:
        pytest.skip("umap-learn is not installed in the DNIKit venv (pip install umap-learn)")
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, (60, 6)), rng.normal(6, 1, (60, 6))])
    ref = run_dnikit(UMAP_SCRIPT, {"x": x}, tmp_path)
    embedding = np.asarray(ref["embedding"])
    moved = _relative(np.asarray(ref["10"]), np.asarray(ref["120"]))
    off = _relative(np.asarray(ref["10"]), embedding)
    # DNIKit calls UMAP.transform per batch: the coordinates of the fitted data move with the
    # batch size and are not the fitted embedding.
    assert moved > 1e-3 and off > 1e-3
    dr = DimensionReduction.introspect(
        _producer(x), strategies=S.UMAP(2, n_neighbors=8, random_state=0, n_epochs=50, n_jobs=1)
    )
    fitted = dr.strategies["a"]._umap.embedding_
    for batch_size in (10, 120):
        np.testing.assert_array_equal(_project(dr, x, batch_size), fitted)
