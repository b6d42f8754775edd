"""Familiarity's result type and the two protocols a familiarity strategy implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from introscope.base import DictMetaKey, Producer

__all__ = ["FamiliarityResult", "FamiliarityDistribution", "FamiliarityStrategyType"]


@dataclass(frozen=True, slots=True)
class FamiliarityResult:
    """The familiarity of one element: its ``score`` and where that score ranks among the fit data.

    Args:
        score: log-likelihood of the element under the fitted density; higher is more familiar
            (a ``numpy.float64`` in the results of ``Familiarity.Strategy.GMM``, as in DNIKit)
        percentile: percentage (0 to 100) of the fit samples whose score is at most ``score``, so
            ``percentile <= 1`` selects the rarest 1 %; ``None`` when the distribution that made
            the result does not keep the fit data's scores (results of ``Familiarity.Strategy.GMM``
            always have one; test ``is not None`` for other distributions, and for type checkers)

    Examples:
        >>> from introscope.introspectors import FamiliarityResult
        >>> rare = FamiliarityResult(score=-12.5, percentile=0.5)
        >>> rare.percentile is not None and rare.percentile <= 1  # the rarest 1 % of the fit data
        True
    """

    score: float
    percentile: float | None = None


class FamiliarityDistribution(Protocol):
    """The density fitted to one response; scores the elements of new data of that response.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import Familiarity
        >>> rng = np.random.default_rng(0)
        >>> fit_data = producer_from_batches(Batch({"emb": rng.normal(size=(40, 2))}))
        >>> familiarity = Familiarity.introspect(
        ...     fit_data, strategy=Familiarity.Strategy.GMM(gaussian_count=1, random_state=0)
        ... )
        >>> distribution = familiarity.distributions["emb"]
        >>> results = distribution.compute_familiarity_score(np.zeros((3, 2)))
        >>> len(results), type(results[0]).__name__
        (3, 'FamiliarityResult')
    """

    def compute_familiarity_score(self, x: np.ndarray) -> Sequence[FamiliarityResult]:
        """One ``FamiliarityResult`` per row of ``x`` (shape ``(samples, features)``)."""
        ...


class FamiliarityStrategyType(Protocol):
    """Fits one ``FamiliarityDistribution`` per field of a producer's batches.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import Familiarity
        >>> strategy = Familiarity.Strategy.GMM(gaussian_count=2, random_state=0)
        >>> emb = np.random.default_rng(0).normal(size=(30, 3))
        >>> producer = producer_from_batches(Batch({"emb": emb}))
        >>> sorted(strategy(producer, batch_size=10))  # one distribution per field
        ['emb']
    """

    metadata_key: ClassVar[DictMetaKey[FamiliarityResult]]
    """Key under which the strategy's results are written into batch metadata."""

    def __call__(
        self, producer: Producer, batch_size: int = 1024
    ) -> Mapping[str, FamiliarityDistribution]:
        """Pull ``producer`` in batches of ``batch_size`` and fit a distribution per field."""
        ...
