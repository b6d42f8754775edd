"""``introscope.ray.score``: a fitted Familiarity scores a Ray dataset on the workers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from introscope.base import Model, PipelineStage, pipeline
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeError, IntroscopeValueError, require

from ._cluster import ensure_started
from ._errors import rebuild_error
from ._introspect import (
    _check_concurrency,
    actor_resources,
    check_cluster_gpus,
    check_model_factory,
    check_num_gpus,
    check_responses,
    live_node_resources,
    map_batch_rows,
)
from ._worker import _BlockProducer, load_model_stage, numeric_column, with_ray_input_hint

__all__ = ["score"]


def _column_names(dataset: Any) -> list[str] | None:
    """The dataset's column names from its schema (None when Ray cannot tell without reading)."""
    try:
        schema = dataset.schema()
    except Exception:  # noqa: BLE001 - a schema Ray cannot give: the workers check instead
        return None
    names = getattr(schema, "names", None)
    return list(names) if names else None


class _Scorer:
    """Scores every row of a block under each fitted response (Ray map function / actor)."""

    def __init__(
        self,
        familiarity: Any,
        model_factory: Callable[[], Model] | None,
        *,
        batch_size: int,
        responses: Sequence[str] | None,
        stages: Sequence[PipelineStage],
        keep: Sequence[str],
    ) -> None:
        self.familiarity = familiarity
        self.batch_size = batch_size
        self.keep = list(keep)
        self.stages = list(stages)
        self.responses = None if responses is None else list(responses)
        self.model_stage: PipelineStage | None = None
        self.init_error: dict[str, Any] | None = None
        if model_factory is not None:
            fields = (
                self.responses if self.responses is not None else list(familiarity.distributions)
            )
            # As in introspect: an error is kept (not the actor's death, which the driver would
            # see as Ray's ActorDiedError) and raised by the first call, whose error Ray passes
            # to the reader of the scores with its message.
            self.model_stage, self.init_error = load_model_stage(
                model_factory, fields, "introscope.ray.score"
            )

    def __call__(self, block: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.init_error is not None:
            raise rebuild_error(self.init_error, " (raised on a Ray worker, loading the model)")
        missing = [k for k in self.keep if k not in block]
        if missing:
            raise IntroscopeError(
                f"introscope.ray.score: keep names columns {missing} the dataset does not have "
                f"(columns: {sorted(block)})"
            )
        if self.model_stage is None:
            names = (
                self.responses
                if self.responses is not None
                else list(self.familiarity.distributions)
            )
            absent = [n for n in names if n not in block]
            if absent:
                raise IntroscopeError(
                    f"introscope.ray.score: the dataset has no column {absent} (columns: "
                    f"{sorted(block)}); pass responses= or a model"
                )
            columns = {n: numeric_column(n, block[n]) for n in names}
            stages = self.stages
        else:
            columns = {k: numeric_column(k, v) for k, v in block.items() if k not in self.keep}
            stages = [self.model_stage, *self.stages]
        scores: dict[str, list[np.ndarray]] = {}
        try:
            for batch in pipeline(_BlockProducer(columns), *stages)(self.batch_size):
                for field, array in batch.fields.items():
                    scores.setdefault(field, []).append(self.familiarity.score(field, array))
        except IntroscopeError as exc:
            hinted = with_ray_input_hint(exc, "introscope.ray.score")
            if hinted is exc:
                raise
            # Without the cause: Ray's text of the error would show the advice it replaces.
            raise hinted.with_traceback(exc.__traceback__) from None
        out = {k: block[k] for k in self.keep}
        for field, parts in scores.items():
            out[f"{field}_score"] = np.concatenate(parts)
        return out


def score(
    dataset: Any,
    familiarity: Any,
    *,
    model: Callable[[], Model] | None = None,
    responses: str | Sequence[str] | None = None,
    stages: Sequence[PipelineStage] = (),
    keep: Sequence[str] = (),
    batch_size: int = 256,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float = 0,
) -> Any:
    """A lazy ``ray.data.Dataset`` of familiarity scores, computed on the workers.

    One column ``<response>_score`` (float64 log-likelihood, higher is more familiar) per fitted
    response, one row per input row, plus the input columns named in ``keep`` (an id, a path).
    ``familiarity`` is a fitted ``Familiarity`` (e.g. from ``introspect``); the other
    arguments are those of [`introspect`][introscope.ray.introspect]. As there, a Ray that
    is not started is started with [`init_local`][introscope.ray.init_local] (loopback only,
    no dashboard), or connected to ``RAY_ADDRESS`` where that is set.

    Examples:
        Needs a Ray cluster, so this example is not run by the test suite:

        >>> import numpy as np, ray  # doctest: +SKIP
        >>> import introscope.ray  # doctest: +SKIP
        >>> from introscope.introspectors import Familiarity  # doctest: +SKIP
        >>> _ = introscope.ray.init_local(num_cpus=2)  # doctest: +SKIP
        >>> rows = np.random.default_rng(0).standard_normal((20, 2))  # doctest: +SKIP
        >>> ds = ray.data.from_numpy(rows)  # doctest: +SKIP
        >>> gmm = Familiarity.Strategy.GMM(gaussian_count=1)  # doctest: +SKIP
        >>> [familiarity] = introscope.ray.introspect(ds, [gmm])  # doctest: +SKIP
        >>> scores = introscope.ray.score(ds, familiarity)  # doctest: +SKIP
        >>> scores.columns(), scores.count()  # doctest: +SKIP
        (['data_score'], 20)
    """
    ray = require("ray", "ray", "introscope.ray")
    ray_data = require("ray.data", "ray", "introscope.ray")
    if not isinstance(dataset, ray_data.Dataset):
        raise IntroscopeValueError(
            f"introscope.ray.score: dataset must be a ray.data.Dataset, got "
            f"{type(dataset).__name__}"
        )
    if isinstance(familiarity, (str, bytes)):
        raise IntroscopeValueError(
            f"introscope.ray.score: familiarity is the string {familiarity!r:.60}; pass the "
            f"fitted Familiarity object itself, e.g. [familiarity] = introscope.ray.introspect("
            f"dataset, [Familiarity.Strategy.GMM()])"
        )
    if not hasattr(familiarity, "distributions") or not hasattr(familiarity, "score"):
        raise IntroscopeValueError(
            f"introscope.ray.score: familiarity must be a fitted Familiarity (from "
            f"Familiarity.introspect or introscope.ray.introspect), got "
            f"{type(familiarity).__name__}"
        )
    batch_size = check_batch_size(batch_size)
    concurrency = _check_concurrency(concurrency)
    num_gpus = check_num_gpus(num_gpus, "introscope.ray.score")
    check_model_factory(model, "introscope.ray.score")
    names = check_responses(responses, "introscope.ray.score")
    # Before the schema is read: Ray Data would start Ray itself, with a plain ray.init().
    ensure_started()  # init_local() when Ray is not running (see its docstring)
    # The columns are checked here: the scores are computed lazily, and an error on a worker
    # would reach the user as Ray's traceback when the dataset is first read.
    columns = _column_names(dataset)
    if columns is not None:
        absent_keep = [k for k in keep if k not in columns]
        if absent_keep:
            raise IntroscopeValueError(
                f"introscope.ray.score: keep names columns {absent_keep} the dataset does not "
                f"have (columns: {sorted(columns)})"
            )
        wanted = list(names) if names is not None else list(familiarity.distributions)
        absent = [n for n in wanted if n not in columns]
        if model is None and absent:
            raise IntroscopeValueError(
                f"introscope.ray.score: the dataset has no column {absent} (columns: "
                f"{sorted(columns)}); pass responses= naming the columns to score, or a model"
            )
    kwargs = {
        "batch_size": batch_size,
        "responses": names,
        "stages": list(stages),
        "keep": list(keep),
    }
    resources = ray.cluster_resources()
    check_cluster_gpus(num_gpus, resources, "introscope.ray.score", live_node_resources())
    pool, per_actor = actor_resources(
        float(resources.get("CPU", 1.0)), concurrency, num_gpus, resources.get("GPU", 0)
    )
    size = {"min_size": pool[0], "max_size": pool[1]} if isinstance(pool, tuple) else {"size": pool}
    # Actors: the fitted mixtures (and the model) are sent to each worker once, not per block.
    return dataset.map_batches(
        _Scorer,
        fn_constructor_args=(familiarity, model),
        fn_constructor_kwargs=kwargs,
        batch_size=map_batch_rows(batch_size, num_gpus),
        batch_format="numpy",
        compute=ray_data.ActorPoolStrategy(**size),
        num_cpus=per_actor,
        num_gpus=num_gpus or None,
    )
