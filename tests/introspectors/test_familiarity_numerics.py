"""Familiarity on awkward scales: the float64 refit of failed float32 fits, the errors of fits
that fail in float64 too, and the warning when scikit-learn's fixed reg_covar shapes the scores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import Familiarity
from introscope.introspectors.familiarity import GMM
from introscope.introspectors.familiarity import _gmm as gmm_module
from introscope.samples import StubProducer


def _blobs(n: int = 600, d: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(4, d))
    x = means[rng.integers(0, 4, size=n)] + rng.normal(size=(n, d))
    return x / x.std()


def _fit(x: np.ndarray, **options) -> Familiarity:
    strategy = GMM(random_state=0, **options)
    return Familiarity.introspect(StubProducer({"e": x}), strategy=strategy)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# -- float32 fits that fail are refitted in float64 ------------------------------------------------
@pytest.mark.parametrize("value", [3.0, 100.0])
def test_float32_constant_column_is_refitted_in_float64_with_a_warning(value: float) -> None:
    rng = np.random.default_rng(0)
    x64 = np.hstack([rng.normal(size=(500, 15)), np.full((500, 1), value)])
    x32 = x64.astype(np.float32)
    with pytest.warns(
        UserWarning, match=r"float32 fit of response 'e' failed.*refitted in float64"
    ):
        fam = _fit(x32)
    # The refit is the float64 fit of the same data from the same random state.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = _fit(x32.astype(np.float64))
    np.testing.assert_array_equal(fam.distributions["e"].means, ref.distributions["e"].means)
    np.testing.assert_array_equal(fam.score("e", x32), ref.score("e", x32))


def test_float32_refit_warning_points_at_the_callers_line() -> None:
    rng = np.random.default_rng(0)
    x = np.hstack([rng.normal(size=(500, 15)), np.full((500, 1), 3.0)]).astype(np.float32)
    with pytest.warns(UserWarning, match="refitted in float64") as seen:
        _fit(x)
    assert {w.filename for w in seen} == {__file__}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the float32 try
def test_float32_data_beyond_float32_squares_fits_like_float64() -> None:
    base = np.random.default_rng(0).normal(size=(300, 8))
    x = (base * 1e20).astype(np.float32)  # squares overflow float32 (~1.8e19), not float64
    with pytest.warns(UserWarning, match="refitted in float64"):
        fam = _fit(x, gaussian_count=2)
    scores = fam.score("e", x)
    assert np.isfinite(scores).all()
    # The same ranking as the data in ordinary units (the mixture is scale-equivariant).
    ordinary = _fit(base.astype(np.float32).astype(np.float64), gaussian_count=2).score("e", base)
    assert _spearman(scores, ordinary) > 0.999


def test_float32_fits_that_succeed_stay_float32_fits() -> None:
    """DNIKit fits float32 in float32; a float64 fit differs by ~1e-5, so none is made."""
    x = _blobs().astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fam = _fit(x)
    assert fam.distributions["e"].means.dtype == np.float32


def test_a_refit_that_fails_too_says_so_and_names_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(gmm_module, "_try_fit", lambda model, array: "stub failure")
    x = _blobs().astype(np.float32)
    with pytest.raises(IntroscopeValueError) as info:
        _fit(x)
    message = str(info.value)
    assert "(600 x 16, float32) failed (also after refitting the float32 responses in " in message
    assert "stub failure" in message and "lower gaussian_count (now 5)" in message
    assert "takes no reg_covar argument" in message and "increase reg_covar" not in message


# -- errors of fits that fail in float64 ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float64_overflow_error_quotes_float64s_limit() -> None:
    x = np.random.default_rng(0).normal(size=(300, 8)) * 1e160
    with pytest.raises(IntroscopeValueError) as info:
        _fit(x, gaussian_count=2)
    message = str(info.value)
    assert "(300 x 8, float64) failed: the fitted mixture has NaN or Inf parameters" in message
    assert "largest magnitude is 3.9e+160" in message and "near 1.3e+154" in message
    assert "rescale the responses" in message


def test_scikit_learn_failure_keeps_its_diagnosis_but_not_its_advice(monkeypatch) -> None:
    def failing(model, array):
        return "scikit-learn: Fitting the mixture model failed because some components have ..."

    monkeypatch.setattr(gmm_module, "_try_fit", failing)
    x = np.hstack([_blobs(d=4), np.full((600, 2), 7.0)])
    with pytest.raises(IntroscopeValueError) as info:
        _fit(x)
    message = str(info.value)
    assert "some components have" in message
    assert "2 of its 6 columns are constant or nearly so (columns 4, 5)" in message
    assert "increase reg_covar" not in message and "takes no reg_covar argument" in message


def test_try_fit_drops_scikit_learns_reg_covar_advice() -> None:
    class Failing:
        def fit(self, array):
            raise ValueError(
                "Fitting the mixture model failed because some components have ill-defined "
                "empirical covariance (for instance caused by singleton or collapsed samples). "
                "Try to decrease the number of components, increase reg_covar, or scale the "
                "input data."
            )

    reason = gmm_module._try_fit(Failing(), np.zeros((3, 2)))
    assert reason is not None and reason.endswith("collapsed samples)")
    assert "reg_covar" not in reason


# -- the warning when reg_covar shapes the scores ------------------------------------------------------
def test_small_scale_embeddings_warn_that_reg_covar_dominates() -> None:
    x = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = _fit(x).score("e", x)
    with pytest.warns(UserWarning, match=r"reg_covar=1e-06.*Standardise the embeddings") as seen:
        small = _fit(x * 1e-4).score("e", x * 1e-4)
    assert {w.filename for w in seen} == {__file__}
    # What the warning is about: the ranking is not the ranking of the same data at unit scale.
    assert _spearman(ref, small) < 0.9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", ["DIAG", "FULL"])
def test_ordinary_and_moderately_small_embeddings_do_not_warn(dtype, covariance_type) -> None:
    from introscope.introspectors import GMMCovarianceType

    kind = GMMCovarianceType[covariance_type]
    for scale in (1.0, 0.03, 1e3):  # at 0.03 reg_covar is ~1 % of the variances
        x = (_blobs(d=8) * scale).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _fit(x, covariance_type=kind)


def test_dead_units_and_collapsed_components_do_not_warn() -> None:
    x = _blobs()
    x[:, :12] = 0.0  # most units dead: their fitted variance is reg_covar itself
    few = _blobs(n=12, d=4)  # 5 components on 12 samples: tiny variances, ordinary data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", module="sklearn")
        _fit(x)
        _fit(few)


def test_warning_fires_for_full_covariances_too() -> None:
    from introscope.introspectors import GMMCovarianceType

    x = _blobs(d=4) * 1e-4
    with pytest.warns(UserWarning, match="reg_covar"):
        _fit(x, covariance_type=GMMCovarianceType.FULL)
