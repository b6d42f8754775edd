"""Familiarity's accumulator: one ``FitData`` per response, finished by fitting a strategy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from introscope._validation import check_int
from introscope.exceptions import IntroscopeValueError

from .._accumulator import Accumulator
from ._fit_data import FitData

if TYPE_CHECKING:
    from ._familiarity import Familiarity

__all__ = ["FamiliarityAccumulator"]


class FamiliarityAccumulator(Accumulator):
    """The fit buffers of every response; ``finalize`` fits ``strategy`` and returns
    a ``introscope.introspectors.Familiarity``.

    Fed by ``introscope.introspectors._accumulator.accumulate``, a PyTorch monitor or Ray
    workers; merged states hold the union of the rows (or of the samples, exactly).

    Args:
        strategy: a ``Familiarity.Strategy.GMM`` (the default one when None); saved with the
            state (a ``random_state`` given as a ``numpy.random.RandomState`` cannot be: pass
            the strategy again to ``finalize(strategy=...)`` after ``load``)
        max_samples: keep a seeded uniform sample of at most this many rows per response
        seed: seed of that sample
        offset: index of this accumulator's first row in the whole stream; shards of one
            stream that are sampled (``max_samples``) each give their own, so that their
            samples merge into the one-stream sample
    """

    owner = "Familiarity"
    state_type = FitData

    def __init__(
        self,
        strategy: Any = None,
        *,
        max_samples: int | None = None,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        super().__init__()
        if max_samples is not None:
            max_samples = check_int(max_samples, "max_samples", minimum=1, owner=self.owner)
        self.max_samples = max_samples
        self.seed = check_int(seed, "seed", owner=self.owner)
        self.offset = check_int(offset, "offset", owner=self.owner)
        if isinstance(strategy, Mapping):
            strategy = _strategy_from_config(strategy)
        self.strategy = strategy

    def new_state(self, field: str, array: Any) -> FitData:
        return FitData(field, max_samples=self.max_samples, seed=self.seed, offset=self.offset)

    def config(self) -> dict[str, Any]:
        return {
            "max_samples": self.max_samples,
            "seed": self.seed,
            "offset": self.offset,
            "strategy": _strategy_config(self.strategy),
        }

    def _merge_key(self) -> dict[str, Any]:
        # Shards differ in their offsets, and the strategy only matters when fitting.
        return {"max_samples": self.max_samples, "seed": self.seed}

    def spawn(self, *, offset: int | None = None) -> FamiliarityAccumulator:
        """A new, empty accumulator with these settings and strategy; ``offset``: its first
        row in the whole stream (default: this one's)."""
        out = type(self)(
            self.strategy,
            max_samples=self.max_samples,
            seed=self.seed,
            offset=self.offset if offset is None else offset,
        )
        return out

    def finalize(self, *, strategy: Any = None, **options: Any) -> Familiarity:
        """Fit the strategy (``strategy``, else this accumulator's, else ``GMM()``) to every
        response's rows, in field order: a ``Familiarity``."""
        from ._familiarity import Familiarity
        from ._gmm import GMM

        if options:
            raise IntroscopeValueError(
                f"Familiarity: finalize() takes only strategy=, got {sorted(options)}"
            )
        if strategy is None:
            strategy = self.strategy if self.strategy is not None else GMM()
        return Familiarity(strategy.metadata_key, strategy.fit(self.states))


def _strategy_config(strategy: Any) -> dict[str, Any] | None:
    """The JSON-able settings of a GMM strategy (None for no strategy)."""
    if strategy is None:
        return None
    to_config = getattr(strategy, "to_config", None)
    if to_config is None:
        return {"type": "custom:" + type(strategy).__name__}
    return cast("dict[str, Any] | None", to_config())


def _strategy_from_config(config: Mapping[str, Any]) -> Any:
    from ._gmm import GMM

    kind = config.get("type")
    if kind == "GMM":
        return GMM.from_config(config)
    # A strategy that cannot be rebuilt from a file: finalize(strategy=...) must name it.
    return _Unrestorable(str(kind), dict(config))


class _Unrestorable:
    """Stands for a saved strategy that cannot be rebuilt; fitting with it says what to do."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self.kind, self.config = kind, config

    def to_config(self) -> dict[str, Any]:
        return self.config

    @property
    def metadata_key(self) -> Any:
        raise self._error()

    def fit(self, *_: Any, **__: Any) -> Any:
        raise self._error()

    def _error(self) -> IntroscopeValueError:
        return IntroscopeValueError(
            f"Familiarity: the saved strategy ({self.kind}) cannot be restored from a file "
            f"(a custom strategy, or a GMM whose random_state was a numpy RandomState); pass "
            f"it again: accumulator.finalize(strategy=...)"
        )
