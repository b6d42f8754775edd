"""The report's components run on the responses buffered in memory, through the public
``DimensionReduction``, ``Duplicates`` and ``Familiarity`` introspectors."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from introscope.base import Batch, pipeline
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeError, IntroscopeValueError

from ._config import DEFAULT_DIMENSIONS

__all__ = [
    "ArrayProducer",
    "default_dim_reduction",
    "reduce",
    "find_duplicates",
    "fit_and_score_familiarity",
    "project",
    "split_label_values",
]

_WRAPPABLE = (IntroscopeError, IntroscopeValueError)
_logger = logging.getLogger("introscope.introspectors.DatasetReport")


class ArrayProducer:
    """Batches of in-memory arrays (views, no copies); it can be pulled any number of times."""

    def __init__(self, fields: Mapping[str, np.ndarray]) -> None:
        self.fields = dict(fields)
        self.size = len(next(iter(self.fields.values())))

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        for start in range(0, self.size, batch_size):
            yield Batch({n: a[start : start + batch_size] for n, a in self.fields.items()})


def default_dim_reduction(responses: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """PCA to 40 dimensions for each response wider than 40; the others are left as they are.

    With 40 samples or fewer a 40-dimensional PCA cannot be fitted (nor is it needed): the
    responses are then used as they are.
    """
    from introscope.introspectors.dimension_reduction import DimensionReduction

    out = {}
    for name, array in responses.items():
        if array.shape[1] <= DEFAULT_DIMENSIONS:
            continue
        if array.shape[0] <= DEFAULT_DIMENSIONS:
            _logger.info(
                "DatasetReport: response %r has %d samples, too few for the default PCA to "
                "%d dimensions; its %d features are used as they are",
                name,
                array.shape[0],
                DEFAULT_DIMENSIONS,
                array.shape[1],
            )
            continue
        # Only distances in the reduction matter here: no per-component precision warning.
        out[name] = DimensionReduction.Strategy.PCA(DEFAULT_DIMENSIONS, warn_precision=False)
    return out


def _collect_fields(
    producer: Any, batch_size: int, names: Sequence[str], size: int
) -> dict[str, np.ndarray]:
    """Pull an in-memory pipeline once into one array per field."""
    out: dict[str, np.ndarray] = {}
    start = 0
    for batch in producer(batch_size):
        end = start + batch.batch_size
        for name in names:
            rows = batch.fields[name]
            if name not in out:
                out[name] = np.empty((size, *rows.shape[1:]), dtype=rows.dtype)
            out[name][start:end] = rows
        start = end
    return out


def _run_reduction(
    responses: Mapping[str, np.ndarray], strategies: Any, batch_size: int
) -> dict[str, np.ndarray]:
    from introscope.introspectors.dimension_reduction import DimensionReduction

    source = ArrayProducer(responses)
    stage = DimensionReduction.introspect(source, strategies=strategies, batch_size=batch_size)
    return _collect_fields(pipeline(source, stage), batch_size, list(responses), source.size)


def reduce(
    responses: Mapping[str, np.ndarray],
    strategies: Any,
    batch_size: int,
    setting: str = "dim_reduction",
) -> dict[str, np.ndarray]:
    """Responses after ``strategies`` (one strategy, or response -> strategy; others unchanged);
    ``setting`` is the ``ReportConfig`` field errors name."""
    if isinstance(strategies, Mapping):
        if not strategies:
            return dict(responses)
        unknown = [n for n in strategies if n not in responses]
        if unknown:
            raise IntroscopeError(
                f"DatasetReport: ReportConfig.{setting} names responses {unknown} that the "
                f"producer does not have (it has {list(responses)})"
            )
        reduced = _run_reduction({n: responses[n] for n in strategies}, strategies, batch_size)
        return {n: reduced.get(n, a) for n, a in responses.items()}
    return _run_reduction(responses, strategies, batch_size)


def project(
    responses: Mapping[str, np.ndarray], strategies: Any, batch_size: int
) -> dict[str, np.ndarray]:
    """2-D coordinates per response."""
    projected = reduce(responses, strategies, batch_size, setting="projection")
    for name, coords in projected.items():
        if isinstance(strategies, Mapping) and name not in strategies and coords.shape[1:] != (2,):
            raise IntroscopeError(
                f"DatasetReport: ReportConfig.projection has no strategy for response {name!r} "
                f"({coords.shape[1:]} per element); map every response to a 2-D strategy, "
                f"e.g. {{{name!r}: DimensionReduction.Strategy.PCA(2)}}"
            )
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise IntroscopeError(
                f"DatasetReport: ReportConfig.projection must map each response to 2 dimensions, "
                f"got shape {coords.shape[1:]} for {name!r}"
            )
    return projected


def find_duplicates(
    responses: Mapping[str, np.ndarray], threshold: Any, batch_size: int
) -> dict[str, np.ndarray]:
    """Cluster number per element (-1 when in no cluster), numbered in ``Duplicates``' order."""
    from introscope.introspectors.duplicates import Duplicates

    source = ArrayProducer(responses)
    try:
        result = Duplicates.introspect(source, batch_size=batch_size, threshold=threshold)
    except (IntroscopeError, ValueError) as exc:
        wrapper = type(exc) if type(exc) in _WRAPPABLE else IntroscopeError
        raise wrapper(
            f"DatasetReport: finding duplicates among {source.size} elements failed: {exc}; "
            f"ReportConfig(duplicates=None) makes the report without duplicates"
        ) from exc
    out = {}
    for name in responses:
        clusters = np.full(source.size, -1, dtype=np.int32)
        for number, candidate in enumerate(result.results[name]):
            clusters[np.asarray(candidate.indices, dtype=np.intp)] = number
        out[name] = clusters
    return out


def split_label_values(labels: Mapping[str, Sequence[str]], minimum: int) -> dict[str, list[str]]:
    """Per label dimension, the values carried by at least ``minimum`` elements, in the order of
    their first appearance."""
    return {
        dim: [value for value, count in Counter(values).items() if count >= minimum]
        for dim, values in labels.items()
    }


def _scores(fam: Any, source: ArrayProducer, batch_size: int) -> dict[str, np.ndarray]:
    if callable(getattr(fam, "score", None)):
        # Familiarity.score: float64 scores of a whole array, no per-element result objects.
        return {name: fam.score(name, array) for name, array in source.fields.items()}
    out = {name: np.empty(source.size, dtype=np.float64) for name in source.fields}
    start = 0
    for batch in pipeline(source, fam)(batch_size):
        end = start + batch.batch_size
        results = batch.metadata[fam.meta_key]
        for name in source.fields:
            out[name][start:end] = [r.score for r in results[name]]
        start = end
    return out


def fit_and_score_familiarity(
    responses: Mapping[str, np.ndarray],
    strategy: Any,
    batch_size: int,
    *,
    rows: np.ndarray | None = None,
    what: str = "overall",
) -> dict[str, np.ndarray]:
    """Fit a familiarity model on ``rows`` (all when None) and score every element."""
    from introscope.introspectors.familiarity import Familiarity

    source = ArrayProducer(responses)
    fit_source = (
        source if rows is None else ArrayProducer({n: a[rows] for n, a in responses.items()})
    )
    try:
        fam = Familiarity.introspect(fit_source, strategy=strategy, batch_size=batch_size)
    except (IntroscopeError, ValueError) as exc:
        wrapper = type(exc) if type(exc) in _WRAPPABLE else IntroscopeError
        hint = (
            "; label values with fewer elements get no model of their own when "
            "ReportConfig.split_familiarity_min is raised"
            if rows is not None
            else "; ReportConfig(familiarity=None) makes the report without familiarity"
        )
        raise wrapper(
            f"DatasetReport: fitting the {what} familiarity model on {fit_source.size} "
            f"elements failed: {exc}{hint}"
        ) from exc
    return _scores(fam, source, batch_size)
