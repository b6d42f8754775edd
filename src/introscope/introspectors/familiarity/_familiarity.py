"""``Familiarity``: fit a density per response, then score batches as a pipeline stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np

from introscope.base import Batch, DictMetaKey, PipelineStage, Producer
from introscope.exceptions import IntroscopeKeyError, IntroscopeValueError

from . import _gmm
from ._distribution import GMMDistribution
from ._gmm import GMM
from ._protocols import FamiliarityDistribution, FamiliarityResult, FamiliarityStrategyType

if TYPE_CHECKING:
    from ._accumulator import FamiliarityAccumulator

__all__ = ["Familiarity"]


@dataclass(frozen=True)
class Familiarity(PipelineStage):
    """Densities fitted to a producer's responses; as a pipeline stage, scores new batches.

    Make one with ``introspect``. Piping batches through it writes, for every field,
    ``batch.metadata[fam.meta_key][field]``: a list with one ``FamiliarityResult`` per
    element (``score``, the log-likelihood, higher is more familiar; ``percentile`` among the
    fit data).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.introspectors import Familiarity
        >>> rng = np.random.default_rng(0)
        >>> fit_data = producer_from_batches(Batch({"emb": rng.normal(size=(40, 2))}))
        >>> gmm = Familiarity.Strategy.GMM(gaussian_count=1, random_state=0)
        >>> familiarity = Familiarity.introspect(fit_data, strategy=gmm)
        >>> new = producer_from_batches(Batch({"emb": np.array([[0.0, 0.0], [6.0, 6.0]])}))
        >>> scored = peek_first_batch(pipeline(new, familiarity), batch_size=2)
        >>> near, far = scored.metadata[familiarity.meta_key]["emb"]
        >>> bool(near.score > far.score), far.percentile
        (True, 0.0)
    """

    meta_key: DictMetaKey[FamiliarityResult]
    """Metadata key of the results (the strategy's ``metadata_key``)."""

    _distributions: Mapping[str, FamiliarityDistribution]

    class Strategy:
        """Bundled familiarity strategies (see ``FamiliarityStrategyType``)."""

        GMM: TypeAlias = _gmm.GMM

    @staticmethod
    def introspect(
        producer: Producer,
        *,
        strategy: FamiliarityStrategyType | None = None,
        batch_size: int = 1024,
    ) -> Familiarity:
        """Fit a familiarity model to each field of ``producer`` (pulled once).

        Args:
            producer: yields batches of 2-D responses (samples, features)
            strategy: how to model each response; ``Familiarity.Strategy.GMM()`` (seeded) by
                default
            batch_size: size of the batches pulled from ``producer``
        """
        if strategy is None:
            strategy = GMM()
        distributions = strategy(producer, batch_size=batch_size)
        return Familiarity(strategy.metadata_key, dict(distributions))

    @staticmethod
    def accumulator(
        *, strategy: FamiliarityStrategyType | None = None, offset: int = 0
    ) -> FamiliarityAccumulator:
        """An empty accumulator for ``introspect``'s pass (for ``multi_introspect``,
        monitors and shards); its ``finalize()`` returns the ``Familiarity``.

        ``offset``: the index of the accumulator's first row in the whole stream. Shards of a
        stream fitted on a sample (``GMM(max_fit_samples=...)``) each give theirs (e.g. 0 and
        the first shard's length), so that their merged sample is the one-stream sample.
        """
        if strategy is None:
            strategy = GMM()
        factory = getattr(strategy, "accumulator", None)
        if factory is None:
            raise IntroscopeValueError(
                f"Familiarity.accumulator: the strategy {type(strategy).__name__} has no "
                f"accumulator() method; call Familiarity.introspect(producer, strategy=...)"
            )
        return cast("FamiliarityAccumulator", factory(offset=offset) if offset else factory())

    @property
    def distributions(self) -> Mapping[str, FamiliarityDistribution]:
        """The fitted distribution of each field, in field order."""
        return self._distributions

    def score(self, field: str, x: Any) -> np.ndarray:
        """Scores (float64) of the rows of ``x`` under ``field``'s distribution, no objects."""
        dist = self._distribution(field, "score()")
        if isinstance(dist, GMMDistribution):
            return dist.score_samples(x, field=field)
        return np.array([r.score for r in dist.compute_familiarity_score(np.asarray(x))])

    def _distribution(self, field: str, where: str) -> FamiliarityDistribution:
        try:
            return self._distributions[field]
        except KeyError:  # DNIKit's KeyError: ``except KeyError`` still catches it
            raise IntroscopeKeyError(
                f"Familiarity: response {field!r} ({where}) has no fitted distribution; it was "
                f"fitted on {sorted(self._distributions)}. Remove other fields (FieldRemover) "
                f"or fit on them too"
            ) from None

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        counter = iter(range(1 << 62))

        def _score(batch: Batch) -> Batch:
            where = f"batch {next(counter)}"
            builder = Batch.Builder(base=batch)
            builder.metadata[self.meta_key] = {}
            for field, data in batch.fields.items():
                dist = self._distribution(field, where)
                if isinstance(dist, GMMDistribution):
                    results = dist.results(data, field=field, where=where)
                else:
                    results = list(dist.compute_familiarity_score(data))
                builder.metadata[self.meta_key][field] = results
            return builder.make_batch()

        return _score

    def __repr__(self) -> str:
        return f"Familiarity({self.meta_key!r}, fields={list(self._distributions)})"
