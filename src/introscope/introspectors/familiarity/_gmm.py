"""The GMM familiarity strategy: one scikit-learn ``GaussianMixture`` per response."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from introscope.base import Batch, DictMetaKey, Producer
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeValueError

from ._distribution import GMMCovarianceType, GMMDistribution
from ._fit_data import FitData, check_responses
from ._protocols import FamiliarityResult, FamiliarityStrategyType

if TYPE_CHECKING:
    from ._accumulator import FamiliarityAccumulator

__all__ = ["GMM", "DEFAULT_SEED"]

#: Seed used when no random state is given, so that a default run is reproducible.
DEFAULT_SEED = 0

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
        from sklearn.mixture import GaussianMixture

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
            model = GaussianMixture(
                n_components=self.gaussian_count,
                max_iter=self.max_iterations,
                tol=self.convergence_threshold,
                random_state=rs,
                covariance_type=self.covariance_type.value,
            )
            try:
                with np.errstate(all="ignore"):  # overflow is checked below, not warned
                    model.fit(array)
            except ValueError as exc:  # scikit-learn: ill-defined covariance, etc.
                raise IntroscopeValueError(
                    f"Familiarity: fitting the mixture of response {name!r} "
                    f"({len(array)} x {array.shape[1]}) failed: {exc}"
                ) from exc
            fitted = (model.weights_, model.means_, model.precisions_cholesky_)
            if not all(np.isfinite(p).all() for p in fitted):
                peak = float(np.abs(array).max()) if array.size else 0.0
                raise IntroscopeValueError(
                    f"Familiarity: the mixture fitted to response {name!r} has NaN or Inf "
                    f"parameters (its largest magnitude is {peak:.3g}; squares above ~1e154 "
                    f"overflow float64); rescale the responses (e.g. standardise them) first"
                )
            out[name] = GMMDistribution.from_sklearn(model, array, name=name)
        return out
