"""A fitted Gaussian mixture of one response: parameters, fast scoring, percentiles, state dict."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeValueError

from ._fit_data import check_responses
from ._protocols import FamiliarityDistribution, FamiliarityResult

__all__ = ["GMMCovarianceType", "GMMDistribution", "GaussianComponent"]

_F64 = np.dtype(np.float64)
_SCORE_BYTES = 2 << 20  # float64 rows scored at once (~2 MiB): bounds the temporaries


class GMMCovarianceType(enum.Enum):
    """Shape of each mixture component's covariance: ``FULL`` (dim x dim) or ``DIAG`` (dim).

    ``DIAG`` suits high-dimensional embeddings (few parameters per component); ``FULL`` suits
    low-dimensional data with plenty of samples.

    Examples:
        >>> from introscope.introspectors import Familiarity, GMMCovarianceType
        >>> gmm = Familiarity.Strategy.GMM(gaussian_count=3, covariance_type=GMMCovarianceType.FULL)
        >>> GMMCovarianceType.DIAG.value
        'diag'
    """

    FULL = "full"
    DIAG = "diag"


@dataclass(frozen=True)
class GaussianComponent:
    """One component as a dense Gaussian: ``mean`` of shape (1, dim), ``covariance`` (dim, dim)."""

    mean: np.ndarray
    covariance: np.ndarray


def _precision_cholesky(covariances: np.ndarray, kind: GMMCovarianceType) -> np.ndarray:
    """scikit-learn's ``precisions_cholesky_`` computed in float64 from float64 covariances."""
    if kind is GMMCovarianceType.DIAG:
        return cast(np.ndarray, 1.0 / np.sqrt(covariances))
    from scipy import linalg

    dim = covariances.shape[1]
    out = np.empty_like(covariances)
    for k, cov in enumerate(covariances):
        chol = linalg.cholesky(cov, lower=True)
        out[k] = linalg.solve_triangular(chol, np.eye(dim), lower=True).T
    return out


class GMMDistribution(FamiliarityDistribution):
    """A Gaussian mixture fitted to one response, which scores new elements of that response.

    The parameters are scikit-learn's (``weights``, ``means``, ``covariances`` in
    ``GaussianMixture``'s shapes and dtype). Scores are the mixture's log-likelihood computed by
    ``GaussianMixture.score_samples`` in float64 (float64 parameters, precision Cholesky factors
    recomputed in float64), so they agree with DNIKit's dense scipy evaluation. The sorted scores
    of the fit data are kept (one float64 per fit sample) to give each result its percentile.
    """

    def __init__(
        self,
        *,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        covariance_type: GMMCovarianceType,
        fit_scores: np.ndarray | None = None,
        name: str = "",
    ) -> None:
        self.covariance_type = GMMCovarianceType(covariance_type)
        self.weights = np.asarray(weights)
        self.means = np.asarray(means)
        self.covariances = np.asarray(covariances)
        self.name = name
        k, dim = self.means.shape
        expected = (k, dim) if self.covariance_type is GMMCovarianceType.DIAG else (k, dim, dim)
        if self.weights.shape != (k,) or self.covariances.shape != expected:
            raise IntroscopeValueError(
                f"GMMDistribution: weights {self.weights.shape}, means {self.means.shape} and "
                f"covariances {self.covariances.shape} do not describe one mixture; expected "
                f"({k},), ({k}, {dim}) and {expected}"
            )
        self._model = self._scoring_model()
        self.fit_scores = (
            self._score_rows(None) if fit_scores is None else np.asarray(fit_scores, dtype=_F64)
        )

    @classmethod
    def from_sklearn(cls, model: Any, fit_data: np.ndarray, *, name: str = "") -> GMMDistribution:
        """Wrap a fitted ``GaussianMixture`` and score its fit data for the percentiles."""
        out = cls(
            weights=model.weights_,
            means=model.means_,
            covariances=model.covariances_,
            covariance_type=GMMCovarianceType(model.covariance_type),
            fit_scores=np.empty(0),
            name=name,
        )
        out.fit_scores = np.sort(out._score_rows(fit_data))
        return out

    def _scoring_model(self) -> Any:
        from sklearn.mixture import GaussianMixture

        k, dim = self.means.shape
        cov = self.covariances.astype(_F64)
        model = GaussianMixture(n_components=k, covariance_type=self.covariance_type.value)
        model.weights_ = self.weights.astype(_F64)
        model.means_ = self.means.astype(_F64)
        model.covariances_ = cov
        model.precisions_cholesky_ = _precision_cholesky(cov, self.covariance_type)
        model.n_features_in_ = dim
        model.converged_ = True
        return model

    # -- DNIKit's view of the mixture ------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def n_features(self) -> int:
        return cast(int, self.means.shape[1])

    @property
    def log_weights(self) -> np.ndarray:
        return cast(np.ndarray, np.log(self.weights))

    @property
    def gaussians(self) -> list[GaussianComponent]:
        """Each component with a dense covariance (built on request; DNIKit's layout)."""
        dense = (
            np.array([np.diag(c) for c in self.covariances])
            if self.covariance_type is GMMCovarianceType.DIAG
            else self.covariances
        )
        return [GaussianComponent(m[None, :], c) for m, c in zip(self.means, dense, strict=True)]

    # -- scoring ----------------------------------------------------------------------------------
    def _score_rows(self, x: np.ndarray | None) -> np.ndarray:
        if x is None:
            return np.empty(0)
        from sklearn import config_context

        out = np.empty(len(x), dtype=_F64)
        step = max(64, _SCORE_BYTES // (8 * max(1, self.n_features)))
        # The rows were checked for NaN/Inf already: skip scikit-learn's second check.
        with config_context(assume_finite=True):
            for start in range(0, len(x), step):
                chunk = np.asarray(x[start : start + step], dtype=_F64)
                out[start : start + len(chunk)] = self._model.score_samples(chunk)
        return out

    def score_samples(self, x: Any, *, field: str = "", where: str = "") -> np.ndarray:
        """Log-likelihood of each row of ``x`` (float64 array; no result objects)."""
        name = field or self.name
        data = check_responses("Familiarity", name, x, where)
        if data.shape[1] != self.n_features:
            at = f" ({where})" if where else ""
            raise IntroscopeValueError(
                f"Familiarity: response {name!r}{at} has {data.shape[1]} features per element but "
                f"its distribution was fitted on {self.n_features}; score responses of the "
                f"layer it was fitted on"
            )
        return self._score_rows(data)

    def percentiles(self, scores: np.ndarray) -> np.ndarray:
        """Percentage (0 to 100) of fit samples scoring at most each of ``scores``."""
        n = len(self.fit_scores)
        if n == 0:
            return np.full(len(scores), np.nan)
        return np.searchsorted(self.fit_scores, scores, side="right") * 100.0 / n

    def compute_familiarity_score(self, x: np.ndarray) -> Sequence[FamiliarityResult]:
        """One ``FamiliarityResult`` (score and percentile) per row of ``x``."""
        return self.results(x)

    def results(self, x: Any, *, field: str = "", where: str = "") -> list[FamiliarityResult]:
        scores = self.score_samples(x, field=field, where=where)
        pct = self.percentiles(scores)
        # Iterating the float64 array gives numpy.float64 scores, DNIKit's type (a float
        # subclass, so JSON and float arithmetic take it); percentiles are plain floats.
        return [FamiliarityResult(s, p) for s, p in zip(scores, pct.tolist(), strict=True)]

    # -- state dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """numpy arrays and JSON scalars (no pickle); ``from_state_dict`` restores it."""
        return {
            "covariance_type": self.covariance_type.value,
            "name": self.name,
            "weights": self.weights.copy(),
            "means": self.means.copy(),
            "covariances": self.covariances.copy(),
            "fit_scores": self.fit_scores.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GMMDistribution:
        return cls(
            weights=np.asarray(state["weights"]),
            means=np.asarray(state["means"]),
            covariances=np.asarray(state["covariances"]),
            covariance_type=GMMCovarianceType(str(state["covariance_type"])),
            fit_scores=np.asarray(state["fit_scores"]),
            name=str(state.get("name", "")),
        )

    def __repr__(self) -> str:
        return (
            f"GMMDistribution({self.name!r}, {self.n_components} components, "
            f"{self.n_features} features, {self.covariance_type.value})"
        )
