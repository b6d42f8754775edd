"""The GMM familiarity strategy: one scikit-learn ``GaussianMixture`` per response."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from introscope._validation import user_stacklevel
from introscope.base import Batch, DictMetaKey, Producer
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeValueError

from ._distribution import GMMCovarianceType, GMMDistribution
from ._fit_data import FitData, check_responses
from ._protocols import FamiliarityResult, FamiliarityStrategyType

if TYPE_CHECKING:
    from ._accumulator import FamiliarityAccumulator

__all__ = ["GMM", "DEFAULT_SEED", "REG_COVAR", "REG_SHARE_WARN"]

#: Seed used when no random state is given, so that a default run is reproducible.
DEFAULT_SEED = 0

#: scikit-learn's ``GaussianMixture`` default ``reg_covar``, added to every component's
#: variances; GMM keeps it (DNIKit does), so it is no argument.
REG_COVAR = 1e-6
#: Warn when ``REG_COVAR`` is at least this share of the median fitted variance (see
#: ``_warn_if_regularisation_dominates``).
REG_SHARE_WARN = 0.1

_log = logging.getLogger("introscope.introspectors.familiarity")
_UNSET: Any = object()


def _positive_int(who: str, name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise IntroscopeValueError(f"{who}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, init=False)
class GMM(FamiliarityStrategyType):
    """Fit a Gaussian mixture (scikit-learn ``GaussianMixture``) to each response.

    Args:
        gaussian_count: number of mixture components
        convergence_threshold: EM stops when the lower bound improves by less than this
        max_iterations: most EM iterations
        covariance_type: ``GMMCovarianceType`` (``DIAG`` by default)
        random_state: ``None`` (seed ``DEFAULT_SEED`` = 0, fresh each fit, so runs repeat), an
            int seed (every response's fit starts from it afresh, as scikit-learn does with
            the int DNIKit passes on), or a ``numpy.random.RandomState`` that is shared by the
            fields in field order and advanced, as DNIKit does; ``_random_state`` is DNIKit's
            spelling
        max_fit_samples: fit each response on a uniform sample of at most this many elements,
            seeded from the int seed (or one draw of a given ``RandomState``); ``None`` fits on
            all of them
    """

    gaussian_count: int
    convergence_threshold: float
    max_iterations: int
    covariance_type: GMMCovarianceType
    _random_state: Any
    max_fit_samples: int | None

    metadata_key: ClassVar[DictMetaKey[FamiliarityResult]] = Batch.DictMetaKey[FamiliarityResult](
        "GMM"
    )

    def __init__(
        self,
        *,
        gaussian_count: int = 5,
        convergence_threshold: float = 1e-3,
        max_iterations: int = 200,
        covariance_type: GMMCovarianceType = GMMCovarianceType.DIAG,
        _random_state: Any = _UNSET,
        random_state: Any = _UNSET,
        max_fit_samples: int | None = None,
    ) -> None:
        who = "Familiarity.Strategy.GMM"
        if _random_state is not _UNSET and random_state is not _UNSET:
            raise IntroscopeValueError(
                f"{who}: pass random_state or _random_state (DNIKit's name), not both"
            )
        state = random_state if random_state is not _UNSET else _random_state
        state = None if state is _UNSET else state
        if state is not None and not isinstance(state, (int, np.integer, np.random.RandomState)):
            raise IntroscopeValueError(
                f"{who}: random_state must be None, an int or a numpy.random.RandomState "
                f"(scikit-learn's GaussianMixture takes no Generator), got "
                f"{type(state).__name__}"
            )
        if isinstance(state, bool):
            raise IntroscopeValueError(f"{who}: random_state must not be a bool")
        try:
            kind = GMMCovarianceType(covariance_type)
        except ValueError:
            raise IntroscopeValueError(
                f"{who}: covariance_type must be GMMCovarianceType.DIAG or .FULL, got "
                f"{covariance_type!r}"
            ) from None
        tol = float(convergence_threshold)
        if not np.isfinite(tol) or tol < 0:
            raise IntroscopeValueError(
                f"{who}: convergence_threshold must be a finite number >= 0, got "
                f"{convergence_threshold!r}"
            )
        if max_fit_samples is not None:
            max_fit_samples = _positive_int(who, "max_fit_samples", max_fit_samples)
        setattr_ = object.__setattr__
        setattr_(self, "gaussian_count", _positive_int(who, "gaussian_count", gaussian_count))
        setattr_(self, "convergence_threshold", tol)
        setattr_(self, "max_iterations", _positive_int(who, "max_iterations", max_iterations))
        setattr_(self, "covariance_type", kind)
        setattr_(self, "_random_state", state)
        setattr_(self, "max_fit_samples", max_fit_samples)

    def to_config(self) -> dict[str, Any]:
        """JSON-able settings (``type`` "GMM"); a ``RandomState`` cannot be saved, and the
        config says so (``from_config`` then refuses to fit with it)."""
        state = self._random_state
        if isinstance(state, np.random.RandomState):
            return {"type": "custom:GMM with a numpy RandomState"}
        return {
            "type": "GMM",
            "gaussian_count": self.gaussian_count,
            "convergence_threshold": self.convergence_threshold,
            "max_iterations": self.max_iterations,
            "covariance_type": self.covariance_type.value,
            "random_state": None if state is None else int(state),
            "max_fit_samples": self.max_fit_samples,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GMM:
        """The strategy ``to_config`` describes."""
        settings = {k: v for k, v in config.items() if k != "type"}
        return cls(**settings)

    @property
    def random_state(self) -> Any:
        """The random state as given (``None`` means seed ``DEFAULT_SEED``)."""
        return self._random_state

    def _fresh_random_state(self) -> np.random.RandomState:
        state = self._random_state
        if isinstance(state, np.random.RandomState):
            return state
        return np.random.RandomState(DEFAULT_SEED if state is None else int(state))

    def _sample_seed(self, random_state: np.random.RandomState) -> int:
        state = self._random_state
        if isinstance(state, np.random.RandomState):
            return int(random_state.randint(0, 2**31 - 1))
        return DEFAULT_SEED if state is None else int(state)

    def accumulator(
        self, random_state: np.random.RandomState | None = None, *, offset: int = 0
    ) -> FamiliarityAccumulator:
        """An empty ``FamiliarityAccumulator`` holding this strategy (and its sampling);
        ``offset``: index of its first row in the whole stream (for sampled shards)."""
        from ._accumulator import FamiliarityAccumulator

        if self.max_fit_samples is None:
            return FamiliarityAccumulator(self, offset=offset)
        rs = self._fresh_random_state() if random_state is None else random_state
        return FamiliarityAccumulator(
            self, max_samples=self.max_fit_samples, seed=self._sample_seed(rs), offset=offset
        )

    def __call__(self, producer: Producer, batch_size: int = 1024) -> Mapping[str, GMMDistribution]:
        """Pull ``producer`` once, buffering each field, then fit one mixture per field."""
        from .._accumulator import accumulate

        check_batch_size(batch_size)
        random_state = self._fresh_random_state()
        acc = self.accumulator(random_state)
        accumulate(producer, acc, batch_size=batch_size, desc="Familiarity", finalize=False)
        return self.fit(cast("Mapping[str, FitData]", acc.states), random_state=random_state)

    def fit(
        self,
        data: Mapping[str, FitData | np.ndarray],
        *,
        random_state: np.random.RandomState | None = None,
    ) -> dict[str, GMMDistribution]:
        """Fit one mixture per entry of ``data`` (fit buffers or arrays), in its order."""
        rs = self._fresh_random_state() if random_state is None else random_state
        # A RandomState is shared by the fields and advanced; an int (or None) seeds every
        # field's fit afresh, so a field's mixture does not depend on the fields before it.
        shared = isinstance(self._random_state, np.random.RandomState)
        out: dict[str, GMMDistribution] = {}
        for name, source in data.items():
            if not shared and out:
                rs = self._fresh_random_state()
            if isinstance(source, FitData):
                array = source.data()
            else:
                array = check_responses("Familiarity", name, source, "")
            if isinstance(source, FitData) and source.n_seen != source.n_kept:
                _log.info(
                    "Familiarity: fitting %r on a sample of %d of its %d elements",
                    name,
                    source.n_kept,
                    source.n_seen,
                )
            needed = max(2, self.gaussian_count)
            if len(array) < needed:
                raise IntroscopeValueError(
                    f"Familiarity: response {name!r} has {len(array)} samples, fewer than the "
                    f"{needed} a mixture of {self.gaussian_count} Gaussian(s) needs; give "
                    f"the producer more data or lower gaussian_count"
                )
            model = self._fit_one(name, array, rs)
            _warn_if_regularisation_dominates(name, model, array)
            out[name] = GMMDistribution.from_sklearn(model, array, name=name)
        return out

    def _model(self, random_state: np.random.RandomState) -> Any:
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(
            n_components=self.gaussian_count,
            max_iter=self.max_iterations,
            tol=self.convergence_threshold,
            random_state=random_state,
            covariance_type=self.covariance_type.value,
        )

    def _fit_one(self, name: str, array: np.ndarray, rs: np.random.RandomState) -> Any:
        """A ``GaussianMixture`` fitted to ``array``, with finite parameters.

        scikit-learn fits float32 responses in float32, as DNIKit does, and that fit is kept
        whenever it succeeds (so the numbers stay DNIKit's; a float64 fit of the same data
        differs by ~1e-5 relative). Where it fails (values whose squares overflow float32, or a
        constant column whose float32 variance cancels to below zero), DNIKit fails too; the
        data are then refitted in float64 from the same random state, with a warning.
        """
        start = rs.get_state()
        model = self._model(rs)
        reason = _try_fit(model, array)
        if reason is None:
            return model
        if array.dtype != np.float32:
            raise _fit_error(name, array, reason, self.gaussian_count, refitted=False)
        rs.set_state(start)
        model = self._model(rs)
        again = _try_fit(model, array.astype(np.float64))
        if again is not None:
            raise _fit_error(name, array, again, self.gaussian_count, refitted=True)
        warnings.warn(
            f"Familiarity: the float32 fit of response {name!r} failed ({reason}), as it does "
            f"in DNIKit, which also fits float32 responses in float32; the response was refitted "
            f"in float64 from the same random state, on a float64 copy of its {len(array)} x "
            f"{array.shape[1]} fit data. Pass float64 responses to fit in float64 directly, "
            f"without this warning",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return model


def _try_fit(model: Any, array: np.ndarray) -> str | None:
    """Fit ``model`` on ``array``: None when its parameters are finite, else why not."""
    try:
        with np.errstate(all="ignore"):  # overflow is checked below, not warned
            model.fit(array)
    except ValueError as exc:  # scikit-learn: ill-defined covariance, etc.
        # Keep scikit-learn's diagnosis, not its advice ("increase reg_covar" is no GMM
        # argument): the advice that applies is given by _fit_error.
        text = str(exc).split(" Try to ")[0].strip().rstrip(".")
        return f"scikit-learn: {text}"
    fitted = (model.weights_, model.means_, model.precisions_cholesky_)
    if not all(np.isfinite(p).all() for p in fitted):
        return "the fitted mixture has NaN or Inf parameters"
    return None


def _fit_error(
    name: str, array: np.ndarray, reason: str, gaussian_count: int, *, refitted: bool
) -> IntroscopeValueError:
    """The error of a failed fit: what failed, the likely cause in the data, what to do."""
    n, dim = array.shape
    wide = np.dtype(np.float64)
    causes: list[str] = []
    if array.size:
        peak = float(np.abs(array).max())
        limit = float(np.sqrt(np.finfo(wide).max))
        if peak * np.sqrt(n) > limit:
            causes.append(
                f"its largest magnitude is {peak:.3g}, and scikit-learn sums squared values "
                f"in float64, which overflows for magnitudes near {limit:.1e} (lower with "
                f"more samples)"
            )
        low = array.min(axis=0).astype(wide)
        high = array.max(axis=0).astype(wide)
        spread = high - low
        flat = np.flatnonzero(spread <= 1e-6 * np.maximum(np.abs(low), np.abs(high)))
        if flat.size:
            shown = ", ".join(str(int(c)) for c in flat[:8]) + (", ..." if flat.size > 8 else "")
            causes.append(
                f"{flat.size} of its {dim} columns are constant or nearly so (columns "
                f"{shown}), so a component's variance there is scikit-learn's fixed "
                f"regularisation reg_covar={REG_COVAR:g} or, after rounding, below zero"
            )
    how = " (also after refitting the float32 responses in float64)" if refitted else ""
    cause = "; ".join(causes) if causes else "no single cause found in the data"
    return IntroscopeValueError(
        f"Familiarity: fitting the mixture of response {name!r} ({n} x {dim}, "
        f"{array.dtype}) failed{how}: {reason}. Likely cause: {cause}. What to do: rescale "
        f"the responses (standardise each column, e.g. with "
        f"introscope.processors.MeanStdNormalizer and the fit data's column means and "
        f"standard deviations, applied to fit and scored data alike), drop constant columns "
        f"or reduce the dimensions first (DimensionReduction with PCA), or lower "
        f"gaussian_count (now {gaussian_count}); GMM keeps scikit-learn's default "
        f"reg_covar={REG_COVAR:g}, as DNIKit does, and takes no reg_covar argument"
    )


def _column_variances(array: np.ndarray) -> np.ndarray:
    """Per-column variances (float64) in row chunks, shifted by the first row (a constant
    column gives exactly 0), without a float64 copy of the whole array."""
    shift = array[0].astype(np.float64)
    total = np.zeros(array.shape[1])
    squares = np.zeros(array.shape[1])
    for lo in range(0, len(array), 8192):
        part = array[lo : lo + 8192].astype(np.float64) - shift
        total += part.sum(axis=0)
        squares += np.einsum("ij,ij->j", part, part)
    mean = total / len(array)
    return np.maximum(squares / len(array) - mean * mean, 0.0)


def _warn_if_regularisation_dominates(name: str, model: Any, array: np.ndarray) -> None:
    """Warn when the embeddings are so small that scikit-learn's fixed ``reg_covar`` shapes the
    scores.

    The mixture's variances are the data's within-component variances plus ``REG_COVAR``
    (1e-6). On embeddings whose variances are ~1e-5 or less the constant takes over: the
    scores rank the samples differently from the same data in larger units (at 1e-4 times unit
    scale, Spearman -0.5 against the unscaled scores) and at ~1e-30 all scores are equal. It
    warns when both

    - ``REG_COVAR`` is at least ``REG_SHARE_WARN`` (10 %) of the median fitted component
      variance: on clustered data at a share of 1 % the ranking is unchanged (Spearman 1.000
      against unit scale), at 10 % it starts to move (0.999), at 50 % it is visibly off (0.98),
      at 90 % badly (0.89); and
    - the data's median column variance is at most ``100 * REG_COVAR``: the data themselves are
      small, so standardising them helps. Components collapsed onto a few samples of ordinary
      data (tiny fit sets, many components) also have tiny variances, but standardising would
      not change them, so they do not warn.

    Constant columns (dead units) are left out of both medians: they add the same term to every
    fit sample's score, and their fitted variance is ``REG_COVAR`` itself.
    """
    cov = np.asarray(model.covariances_, dtype=np.float64)
    fitted = cov if cov.ndim == 2 else np.diagonal(cov, axis1=1, axis2=2)  # (k, dim)
    limit = REG_COVAR / REG_SHARE_WARN
    if len(array) == 0 or float(np.median(fitted)) > limit:
        return  # (constant columns only lower this median: the cheap test comes first)
    data_var = _column_variances(array)
    varying = np.flatnonzero(data_var > 0)
    if len(varying) == 0:
        return
    median = float(np.median(fitted[:, varying]))
    data_median = float(np.median(data_var[varying]))
    if median > limit or data_median > 100 * REG_COVAR:
        return
    share = min(REG_COVAR / median, 1.0)
    weight = "more than" if share >= 0.5 else "besides"
    warnings.warn(
        f"Familiarity: response {name!r} has a median column variance of {data_median:.2g}, "
        f"and {share:.0%} of its mixture's median variance ({median:.2g}) is scikit-learn's "
        f"fixed regularisation reg_covar={REG_COVAR:g} (kept as in DNIKit), so its scores "
        f"reflect that constant {weight} the data: they rank the samples differently from the "
        f"same embeddings in larger units. Standardise the embeddings (scale each column to "
        f"unit variance, e.g. with introscope.processors.MeanStdNormalizer and the fit data's "
        f"column means and standard deviations), then fit and score the standardised responses",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
