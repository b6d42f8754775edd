"""Familiarity's result type and the two protocols a familiarity strategy implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from introscope.base import Batch, Producer

__all__ = ["FamiliarityResult", "FamiliarityDistribution", "FamiliarityStrategyType"]


@dataclass(frozen=True, slots=True)
class FamiliarityResult:
    """The familiarity of one element: its ``score`` and where that score ranks among the fit data.

    Args:
        score: log-likelihood of the element under the fitted density; higher is more familiar
        percentile: percentage (0 to 100) of the fit samples whose score is at most ``score``, so
            ``percentile <= 1`` selects the rarest 1 %; ``None`` when the distribution that made
            the result does not keep the fit data's scores
    """

    score: float
    percentile: float | None = None


class FamiliarityDistribution(Protocol):
    """The density fitted to one response; scores the elements of new data of that response."""

    def compute_familiarity_score(self, x: np.ndarray) -> Sequence[FamiliarityResult]:
        """One :class:`FamiliarityResult` per row of ``x`` (shape ``(samples, features)``)."""
        ...


class FamiliarityStrategyType(Protocol):
    """Fits one :class:`FamiliarityDistribution` per field of a producer's batches."""

    metadata_key: ClassVar[Batch.DictMetaKey[FamiliarityResult]]
    """Key under which the strategy's results are written into batch metadata."""

    def __call__(
        self, producer: Producer, batch_size: int = 1024
    ) -> Mapping[str, FamiliarityDistribution]:
        """Pull ``producer`` in batches of ``batch_size`` and fit a distribution per field."""
        ...
