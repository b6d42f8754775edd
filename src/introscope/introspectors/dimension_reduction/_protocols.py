"""The protocol every dimension-reduction strategy follows (DNIKit 2.0's, kept)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DimensionReductionStrategyType"]


@runtime_checkable
class DimensionReductionStrategyType(Protocol):
    """One field's reducer: fed batch by batch, finished once, then used to project data.

    ``DimensionReduction`` calls ``fit_incremental`` for every batch of the fitting
    pass and ``fit_complete`` once after the last one. A streaming strategy (PCA) folds each
    batch into a small state; the others keep the rows and fit in ``fit_complete``.

    Projection: when ``is_one_shot`` is False, ``transform`` maps any (samples,
    features) array to (samples, target_dimensions). When it is True, the strategy can only
    give the embedding of the rows it was fitted on, all at once, with
    ``transform_one_shot``.

    Examples:
        >>> import numpy as np
        >>> from introscope.introspectors import DimensionReduction
        >>> rows = np.random.default_rng(0).normal(size=(30, 4))
        >>> pca = DimensionReduction.Strategy.PCA(2)
        >>> pca.fit_incremental(rows[:15])
        >>> pca.fit_incremental(rows[15:])
        >>> pca.fit_complete()
        >>> pca.is_one_shot, pca.transform(rows).shape
        (False, (30, 2))
    """

    def default_batch_size(self) -> int:
        """The batch size used for fitting when the caller gives none."""
        ...

    def check_batch_size(self, batch_size: int) -> None:
        """Raise if the strategy cannot be fitted with batches of ``batch_size``."""
        ...

    @property
    def target_dimensions(self) -> int:
        """The number of dimensions of the projection."""
        ...

    def fit_incremental(self, data: np.ndarray) -> None:
        """Fold one (samples, features) batch into the fit."""
        ...

    def fit_complete(self) -> None:
        """Finish the fit after the last batch."""
        ...

    @property
    def is_one_shot(self) -> bool:
        """True when only the fitted rows can be projected (``transform_one_shot``)."""
        ...

    def transform(self, data: np.ndarray) -> np.ndarray:
        """Project a (samples, features) array to (samples, target_dimensions)."""
        ...

    def transform_one_shot(self) -> np.ndarray:
        """The (fitted samples, target_dimensions) embedding of the rows seen while fitting."""
        ...

    def _clone(self) -> DimensionReductionStrategyType:
        """A new, unfitted strategy with the same parameters."""
        ...
