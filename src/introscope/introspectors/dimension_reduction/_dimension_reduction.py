"""The DimensionReduction introspector: fit one strategy per field, then project in a pipeline."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias, Union, cast

import numpy as np

from introscope._progress import progress
from introscope.base._batch import Batch
from introscope.base._pipeline import PipelineStage
from introscope.base._producer import Producer, check_batch_size, checked_batches
from introscope.exceptions import IntroscopeError, IntroscopeKeyError, IntroscopeValueError

from . import _strategies
from ._checks import check_responses
from ._protocols import DimensionReductionStrategyType

if TYPE_CHECKING:
    from ._pca_accumulator import PCAAccumulator

__all__ = ["DimensionReduction", "OneOrManyDimStrategies"]

_logger = logging.getLogger("introscope.introspectors.dimension_reduction")

_LayerStrategies = Mapping[str, DimensionReductionStrategyType]
#: One strategy for every field, or a strategy per field name.
OneOrManyDimStrategies = Union[DimensionReductionStrategyType, _LayerStrategies]

_WHO = "DimensionReduction"


def _wrap(name: str, where: str, exc: Exception) -> IntroscopeValueError:
    at = f" ({where})" if where else ""
    return IntroscopeValueError(f"{_WHO}: field {name!r}{at}: {exc}")


def _check_strategy(name: str | None, strategy: object) -> DimensionReductionStrategyType:
    if not isinstance(strategy, DimensionReductionStrategyType):
        whose = f" for field {name!r}" if name is not None else ""
        raise IntroscopeValueError(
            f"{_WHO}.introspect: strategies{whose} must be a DimensionReduction.Strategy "
            f"(e.g. DimensionReduction.Strategy.PCA(2)) or a mapping of field name to one, got "
            f"{type(strategy).__name__}: {strategy!r}"
        )
    return strategy


@dataclass(frozen=True)
class DimensionReduction(PipelineStage):
    """Dimension reduction of 2-D fields, fitted on one producer and applied in a pipeline.

    Create it with ``DimensionReduction.introspect``; then ``pipeline(producer, dr)``
    replaces each reduced field of every batch by its projection, and leaves other fields,
    snapshots and metadata as they are.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.introspectors import DimensionReduction
        >>> rng = np.random.default_rng(0)
        >>> producer = producer_from_batches(Batch({"emb": rng.normal(size=(40, 5))}))
        >>> pca = DimensionReduction.Strategy.PCA(2)
        >>> reducer = DimensionReduction.introspect(producer, strategies=pca)
        >>> peek_first_batch(pipeline(producer, reducer), batch_size=8).fields["emb"].shape
        (8, 2)
    """

    _reducers: Mapping[str, DimensionReductionStrategyType]
    """The fitted strategy of every reduced field."""

    class Strategy:
        """Bundled strategies; any ``DimensionReductionStrategyType`` works too.

        - ``PCA``: exact PCA from a streamed covariance (memory O(features^2))
        - ``StandardPCA``: scikit-learn's PCA on all of the rows in memory
        - ``TSNE``: scikit-learn's t-SNE (embeds its fitting rows only)
        - ``UMAP``: umap-learn's UMAP (extra ``dimreduction``)
        - ``PaCMAP``: pacmap's PaCMAP (extra ``dimreduction``; embeds its fitting rows only)
        """

        # TypeAlias, so type checkers take these as the classes (usable in annotations).
        PCA: TypeAlias = _strategies.PCA
        StandardPCA: TypeAlias = _strategies.StandardPCA
        TSNE: TypeAlias = _strategies.TSNE
        UMAP: TypeAlias = _strategies.UMAP
        PaCMAP: TypeAlias = _strategies.PaCMAP

    @staticmethod
    def introspect(
        producer: Producer,
        *,
        strategies: OneOrManyDimStrategies,
        batch_size: int | None = None,
    ) -> DimensionReduction:
        """Fit the strategies on the (samples, features) fields of ``producer``, in one pass.

        Args:
            producer: the data to fit on; fields must be 2-D (use ``Flattener`` or ``Pooler``
                on convolution responses)
            strategies: one strategy, copied for every field, or a mapping of field name to
                strategy (other fields pass through unchanged). The strategies given are not
                changed: fitted copies are in ``strategies``.
            batch_size: batches pulled from ``producer`` while fitting; by default the largest
                ``default_batch_size()`` of the strategies

        Strategies that are not streamed (all but ``PCA``) hold every fitting row in memory.
        """
        if isinstance(strategies, Mapping):
            if not strategies:
                raise IntroscopeValueError(
                    f"{_WHO}.introspect: strategies is an empty mapping; name at least one "
                    f"field, or pass one strategy for every field"
                )
            for name, strategy in strategies.items():
                if not isinstance(name, str):
                    raise IntroscopeValueError(
                        f"{_WHO}.introspect: strategies keys must be field names (str), got "
                        f"{name!r}"
                    )
                _check_strategy(name, strategy)
            templates: list[DimensionReductionStrategyType] = list(strategies.values())
            single = None
            # Copies: the caller's objects stay unfitted and may be reused.
            reducers = {name: strategy._clone() for name, strategy in strategies.items()}
        else:
            single = _check_strategy(None, strategies)
            templates = [single]
            reducers = {}

        if batch_size is None:
            batch_size = max(int(s.default_batch_size()) for s in templates)
        else:
            batch_size = check_batch_size(batch_size)
            for strategy in templates:
                strategy.check_batch_size(batch_size)

        names: list[str] | None = list(reducers) if single is None else None
        batches = checked_batches(producer, batch_size, what=f"{_WHO}.introspect's producer")
        for i, batch in enumerate(progress(batches, desc=f"{_WHO} fit")):
            where = f"batch {i}"
            if names is None:
                names = list(batch.fields)
                assert single is not None
                reducers = {name: single._clone() for name in names}
            _check_field_set(batch, names, single is not None, where)
            for name in names:
                x = check_responses(_WHO, name, batch.fields[name], where)
                reducer = reducers[name]
                fit = getattr(reducer, "_fit_checked", None)
                try:
                    if fit is not None:
                        fit(x)  # the error wrapper below names the field and batch
                    else:
                        reducer.fit_incremental(x)
                except (IntroscopeError, ValueError) as exc:
                    raise _wrap(name, where, exc) from exc

        for name, reducer in reducers.items():
            try:
                reducer.fit_complete()
            except (IntroscopeError, ValueError) as exc:
                raise _wrap(name, "fitting", exc) from exc
            _logger.debug("%s: fitted %r on field %r", _WHO, reducer, name)
        return DimensionReduction(_reducers=MappingProxyType(reducers))

    @staticmethod
    def pca_accumulator(*, target_dimensions: int = 2, precision: str = "auto") -> PCAAccumulator:
        """An empty streamed-PCA accumulator; its ``finalize()`` gives a DimensionReduction.

        Feed it with ``multi_introspect(acc, producer=...)``, ``acc.update_batch(batch)``,
        ``acc.update(field, array)`` (e.g. from a forward hook) or Ray workers, merge partial ones with ``merge``; the result equals ``introspect`` with
        ``Strategy.PCA(target_dimensions)`` (up to float64 rounding).
        """
        from ._pca_accumulator import PCAAccumulator

        return PCAAccumulator(target_dimensions=target_dimensions, precision=precision)

    @property
    def strategies(self) -> Mapping[str, DimensionReductionStrategyType]:
        """The fitted strategy of every reduced field (read-only mapping)."""
        return MappingProxyType(dict(self._reducers))

    @property
    def fields(self) -> list[str]:
        """Names of the reduced fields."""
        return list(self._reducers)

    def _pipeline(self, producer: Producer) -> Producer:
        return _ReducedProducer(producer, self._reducers)


def _check_field_set(batch: Batch, names: list[str], every_field: bool, where: str) -> None:
    present = list(batch.fields)
    if every_field and set(present) != set(names):
        raise IntroscopeValueError(
            f"{_WHO}.introspect: {where} has fields {present}, but the first batch had "
            f"{names}; with one strategy for every field, every batch must have the same fields"
        )
    missing = [name for name in names if name not in batch.fields]
    if missing:
        raise IntroscopeValueError(
            f"{_WHO}.introspect: field(s) {missing} named in strategies are not in {where}, "
            f"whose fields are {present}; check the names"
        )


class _ReducedProducer:
    """``producer`` with each reduced field replaced by its projection."""

    def __init__(
        self, upstream: Producer, reducers: Mapping[str, DimensionReductionStrategyType]
    ) -> None:
        self._upstream = upstream
        self._reducers = reducers

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        one_shot: dict[str, np.ndarray] = {}
        start = 0
        for i, batch in enumerate(
            checked_batches(self._upstream, batch_size, allow_empty=True, what="upstream producer")
        ):
            where = f"batch {i}"
            builder = Batch.Builder(base=batch)
            for name, reducer in self._reducers.items():
                if name not in batch.fields:  # DNIKit raised KeyError: still caught by it
                    raise IntroscopeKeyError(
                        f"{_WHO}: {where} has no field {name!r}, which was reduced when fitting "
                        f"(its fields are {list(batch.fields)})"
                    )
                x = check_responses(_WHO, name, batch.fields[name], where)
                try:
                    builder.fields[name] = self._project(name, reducer, x, start, where, one_shot)
                except (IntroscopeError, ValueError) as exc:
                    raise _wrap(name, where, exc) from exc
            start += batch.batch_size
            yield builder.make_batch()

    @staticmethod
    def _project(
        name: str,
        reducer: DimensionReductionStrategyType,
        x: np.ndarray,
        start: int,
        where: str,
        one_shot: dict[str, np.ndarray],
    ) -> np.ndarray:
        project = getattr(reducer, "_transform_at", None)
        if project is not None:
            # the caller's error wrapper names the field and batch
            return cast(np.ndarray, project(x, start))
        if not reducer.is_one_shot:
            return reducer.transform(x)
        # A strategy written for DNIKit's protocol: its embedding, by position.
        if name not in one_shot:
            one_shot[name] = np.asarray(reducer.transform_one_shot())
        embedding = one_shot[name]
        end = start + x.shape[0]
        if end > embedding.shape[0]:
            raise IntroscopeValueError(
                f"the pipeline reached row {end} but the strategy embedded only "
                f"{embedding.shape[0]} rows; a one-shot strategy projects only its fitting data"
            )
        return embedding[start:end]

    def __repr__(self) -> str:
        return f"{self._upstream!r} -> {_WHO}"
