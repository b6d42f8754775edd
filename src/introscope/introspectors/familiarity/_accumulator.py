"""Familiarity's accumulator: one ``FitData`` per response, finished by fitting a strategy."""

from __future__ import annotations

from typing import Any

from introscope._validation import check_int

from .._accumulator import Accumulator
from ._fit_data import FitData

__all__ = ["FamiliarityAccumulator"]


class FamiliarityAccumulator(Accumulator):
    """The fit buffers of every response; ``finalize`` fits ``strategy`` and returns
    a ``introscope.introspectors.Familiarity``.

    Fed by ``introscope.introspectors._accumulator.accumulate``, a PyTorch monitor or Ray
    workers; merged states hold the union of the rows (or of the samples, exactly).

    Args:
        strategy: a ``Familiarity.Strategy.GMM`` (the default one when None); it travels with
            ``spawn`` and ``merge`` but is not part of the saved settings
        max_samples: keep a seeded uniform sample of at most this many rows per response
        seed: seed of that sample
    """

    owner = "Familiarity"
    state_type = FitData

    def __init__(
        self, strategy: Any = None, *, max_samples: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        if max_samples is not None:
            max_samples = check_int(max_samples, "max_samples", minimum=1, owner=self.owner)
        self.max_samples = max_samples
        self.seed = check_int(seed, "seed", owner=self.owner)
        self.strategy = strategy

    def new_state(self, field: str, array: Any) -> FitData:
        return FitData(field, max_samples=self.max_samples, seed=self.seed)

    def config(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "seed": self.seed}

    def spawn(self) -> FamiliarityAccumulator:
        out = super().spawn()
        out.strategy = self.strategy
        return out

    def finalize(self, **options: Any) -> Any:
        """Fit the strategy to every response's rows, in field order: a ``Familiarity``."""
        from ._familiarity import Familiarity
        from ._gmm import GMM

        strategy = self.strategy if self.strategy is not None else GMM()
        return Familiarity(strategy.metadata_key, strategy.fit(self.states))
