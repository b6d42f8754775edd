"""``introscope.ray.introspect``: partial states per block on Ray workers, merged on the driver."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from introscope.base import Model, PipelineStage
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeError, IntroscopeValueError, StateError, require

from ._cluster import ensure_started
from ._codec import decode_state
from ._entries import Entry, resolve_entries
from ._errors import rebuild_error
from ._worker import (
    STATE_COLUMNS,
    BlockAccumulator,
    ModelBlockAccumulator,
    RowShapes,
    StateCombiner,
    conflicting_response,
    decode_shapes,
    node_id,
    row_shape_error,
)

__all__ = ["introspect", "RayRunStats", "actor_resources"]

_LOG = logging.getLogger("introscope.ray")


@dataclass
class RayRunStats:
    """What a run shipped and merged: per introspector, the encoded partial states' sizes.

    Examples:
        >>> from introscope.ray import RayRunStats
        >>> stats = RayRunStats(blocks=2, rows=10, state_bytes=[[100, 300]], merges=[1])
        >>> stats.bytes_per_merge(0)
        200.0
    """

    blocks: int = 0
    rows: int = 0
    state_bytes: list[list[int]] = field(default_factory=list)
    """For each introspector entry, the byte size of every state the driver received (one per
    block, or per ``combine`` blocks)."""
    merges: list[int] = field(default_factory=list)
    """For each introspector entry, the number of pairwise merges done on the driver."""
    states_by_node: dict[str, int] = field(default_factory=dict)
    """States the driver received, by the Ray node (id) that made them."""
    combiner_remote_bytes: int = 0
    """Bytes of block states that a combiner (``combine`` > 1) received from another node."""
    driver_remote_bytes: int = 0
    """Bytes of states the driver received from nodes other than its own."""

    @property
    def remote_bytes(self) -> int:
        """Bytes of partial states that crossed from one node to another on their way."""
        return self.combiner_remote_bytes + self.driver_remote_bytes

    def bytes_per_merge(self, entry: int) -> float:
        """Mean bytes shipped per partial state of entry ``entry``."""
        sizes = self.state_bytes[entry]
        return sum(sizes) / len(sizes) if sizes else 0.0


def actor_resources(
    cluster_cpus: float,
    concurrency: int | tuple[int, int] | None,
    num_gpus: float,
    cluster_gpus: float = 0,
) -> tuple[int | tuple[int, int], float]:
    """(pool size, CPUs per actor) that leave one CPU for the dataset's read tasks.

    On a 2-CPU cluster, actors asking 1 CPU each would take both and the read tasks that feed
    them could never run; here the actors share ``cluster_cpus - 1`` CPUs (at most 1 each).
    With ``num_gpus`` the default pool has one actor per ``num_gpus`` GPUs of the cluster.

    Examples:
        >>> from introscope.ray import actor_resources
        >>> actor_resources(2, None, 0)  # one actor on one CPU, one CPU left for reading
        (1, 1.0)
        >>> actor_resources(8, None, 0)
        (7, 1.0)
        >>> actor_resources(4, 6, 0)  # six actors share the three spare CPUs
        (6, 0.5)
    """
    if concurrency is None:
        if num_gpus > 0:
            pool: int | tuple[int, int] = max(1, int(cluster_gpus // num_gpus))
        else:
            pool = max(1, int(cluster_cpus) - 1)
    else:
        pool = concurrency
    largest = pool[1] if isinstance(pool, tuple) else pool
    spare = max(cluster_cpus - 1.0, 0.0)
    per_actor = min(1.0, spare / largest)
    # Round down to 1/100 CPU, Ray's resource granularity is 1e-4; keep a tidy number.
    return pool, math.floor(per_actor * 100) / 100


def check_num_gpus(num_gpus: Any, owner: str) -> float:
    """``num_gpus`` as a finite number >= 0, or an error naming ``owner``."""
    if (
        isinstance(num_gpus, bool)
        or not isinstance(num_gpus, (int, float))
        or not math.isfinite(num_gpus)
        or num_gpus < 0
    ):
        raise IntroscopeValueError(f"{owner}: num_gpus must be a number >= 0, got {num_gpus!r}")
    return float(num_gpus)


def check_cluster_gpus(
    num_gpus: float,
    resources: dict[str, Any],
    owner: str,
    nodes: Sequence[dict[str, Any]] | None = None,
) -> None:
    """``num_gpus`` per worker must fit in the GPUs the cluster has now, or Ray would wait
    forever for a worker it cannot place (Ray only logs "pending: 1 GPU"). ``nodes``: the
    resources of each live node (``ray.nodes()``); a worker must fit on one of them."""
    if num_gpus <= 0:
        return
    have = float(resources.get("GPU", 0) or 0)
    largest = max((float(n.get("GPU", 0) or 0) for n in nodes), default=0.0) if nodes else have
    if have >= num_gpus and largest >= num_gpus:
        return
    if have >= num_gpus:
        raise IntroscopeValueError(
            f"{owner}: num_gpus={num_gpus:g} GPUs per worker, but no node of the Ray cluster "
            f"has that many (the cluster has {have:g} GPUs, at most {largest:g} on one node), "
            f"so no worker could start and the run would wait forever; pass num_gpus of at "
            f"most {largest:g}"
        )
    raise IntroscopeValueError(
        f"{owner}: num_gpus={num_gpus:g} GPUs per worker, but the Ray cluster has {have:g} GPUs "
        f"(ray.cluster_resources() now), so no worker could start and the run would wait "
        f"forever; pass num_gpus=0 to run on CPUs, or start the cluster with GPUs (e.g. "
        f"ray.init(num_gpus=1), ray start --num-gpus=1). The check uses the resources present "
        f"now: on an autoscaling cluster, bring up the GPU nodes before calling"
    )


def live_node_resources() -> list[dict[str, Any]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]  # untyped in ray
    return [dict(n.get("Resources", {})) for n in nodes if n.get("Alive")]


def check_responses(responses: Any, owner: str) -> list[str] | None:
    """``responses`` as a list of names (a str is one name), None for all, or an error."""
    if responses is None:
        return None
    if isinstance(responses, str):
        return [responses]
    try:
        names = list(responses)
    except TypeError:
        names = None
    if (
        names is None
        or isinstance(responses, (bytes, Mapping))
        or not all(isinstance(n, str) for n in names)
    ):
        raise IntroscopeValueError(
            f"{owner}: responses must be None (every response), a response name or a list of "
            f"names (str), got {responses!r:.200}; e.g. responses=['relu1', 'relu2']"
        )
    if not names:
        raise IntroscopeValueError(f"{owner}: responses is empty; pass None for every response")
    return names


def check_model_factory(model: Any, owner: str) -> None:
    """``model`` must be a zero-argument function that builds an introscope ``Model``."""
    if model is None:
        return
    module = type(model).__module__.split(".")[0]
    if isinstance(model, Model) or not callable(model) or module == "torch":
        raise IntroscopeValueError(
            f"{owner}: model must be a zero-argument function returning an introscope Model (so "
            f"each worker loads its own copy), got {type(model).__name__}; e.g. "
            f"model=lambda: load_torch_model_from_memory(net, example_input=x)"
        )


def map_batch_rows(batch_size: int, num_gpus: float) -> int | None:
    """Rows per call of the map function: a whole block (None), or with GPUs (Ray then needs a
    number) 64 of introscope's batches, each call giving one partial state."""
    return None if not num_gpus else max(64 * batch_size, 4096)


def _check_concurrency(concurrency: Any) -> int | tuple[int, int] | None:
    if concurrency is None:
        return None
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
        return concurrency
    if (
        isinstance(concurrency, tuple)
        and len(concurrency) == 2
        and all(isinstance(c, int) and not isinstance(c, bool) for c in concurrency)
        and 0 < concurrency[0] <= concurrency[1]
    ):
        return concurrency
    raise IntroscopeValueError(
        f"introscope.ray.introspect: concurrency must be None, a positive int (a fixed pool of "
        f"workers) or a (min, max) tuple of ints with 0 < min <= max, got {concurrency!r}"
    )


@contextlib.contextmanager
def _preserved_order(ctx: Any) -> Iterator[None]:
    # Blocks come back in dataset order, so per-sample arrays (IUA's) are in the order a
    # single-process run sees the rows; retried blocks take their own place again. A dataset
    # copies the global DataContext when it is created and shares it with the datasets derived
    # from it, so the option is set on that context for the run only, then restored.
    before = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = before


def _raise_worker_error(data: bytes) -> None:
    # An introscope error on a worker (bad input: Ray must not retry it) comes back as a row,
    # since Ray Data hands the driver only the text of a UDF's exception.
    raise rebuild_error(
        decode_state(data),
        " (raised on a Ray worker, in a block of the dataset; batch numbers count from that "
        "block's first row)",
    )


# A state on the driver: the state, and for each response the shape of its rows with the first
# block of the dataset that had it.
_Shapes = dict[str, tuple[tuple[int, ...], int]]


class _TreeMerger:
    """Merges states pairwise as they arrive, in order, as a balanced tree (O(log n) held)."""

    def __init__(self, entry: Entry, *, with_model: bool = False) -> None:
        self.entry = entry
        self.with_model = with_model
        self.stack: list[tuple[int, Any, _Shapes]] = []
        self.merges = 0
        self.blocks = 0  # blocks of the dataset pushed so far

    def push(self, state: Any, shapes: RowShapes | None = None, blocks: int = 1) -> None:
        """Add the next state (of ``blocks`` blocks, whose responses have rows of ``shapes``)."""
        seen = {name: (shape, self.blocks) for name, shape in (shapes or {}).items()}
        self.blocks += blocks
        if self.entry.sequential:
            if self.stack:
                _, held, held_seen = self.stack[0]
            else:
                held, held_seen = self.entry.driver_new(), {}
            self.stack = [(0, *self._merged(held, held_seen, state, seen))]
            return
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, left, left_seen = self.stack.pop()
            state, seen = self._merged(left, left_seen, state, seen)
            level += 1
        self.stack.append((level, state, seen))

    def _merged(
        self, left: Any, left_seen: _Shapes, right: Any, right_seen: _Shapes
    ) -> tuple[Any, _Shapes]:
        try:
            state = self.entry.merged(left, right)
        except StateError as exc:
            # Rows of different shapes in different blocks: say so, as a block's worker does
            # for rows of different shapes within one block (not the accumulator's wording).
            name = conflicting_response(
                exc,
                {n: shape for n, (shape, _) in left_seen.items()},
                {n: shape for n, (shape, _) in right_seen.items()},
            )
            if name is None:
                raise
            (a, first), (b, other) = left_seen[name], right_seen[name]
            raise row_shape_error(
                name, a, b, with_model=self.with_model, blocks=(first, other)
            ) from exc
        self.merges += 1
        return state, {**right_seen, **left_seen}

    def result(self) -> Any:
        if not self.stack:
            return self.entry.driver_new()
        _, state, seen = self.stack.pop()
        while self.stack:
            _, left, left_seen = self.stack.pop()
            state, seen = self._merged(left, left_seen, state, seen)
        return state


def introspect(
    dataset: Any,
    introspectors: Any,
    *,
    model: Callable[[], Model] | None = None,
    responses: str | Sequence[str] | None = None,
    batch_size: int = 256,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float = 0,
    stages: Sequence[PipelineStage] = (),
    combine: int = 1,
    return_stats: bool = False,
) -> Any:
    """Run introspectors over a ``ray.data.Dataset`` on Ray workers; one result per introspector.

    Runs on the Ray cluster this process is connected to. When Ray is not started, it starts
    one with [`init_local`][introscope.ray.init_local]: this machine only, listening on
    127.0.0.1, no dashboard (with ``RAY_ADDRESS`` set, ``ray.init()`` connects to that cluster
    instead). Ray Data starts Ray itself, with a plain ``ray.init()``, when a dataset is made:
    call ``init_local`` before building the dataset. To use a real cluster, call
    ``ray.init(address=...)`` first.

    Args:
        dataset: a ``ray.data.Dataset`` whose columns are the model's inputs, or the responses
            themselves when ``model`` is None (one row per sample, one shape per column).
        introspectors: ``IUA``, ``PFA``, a configured ``IUA(atol=...)`` or
            ``PFA.accumulator(precision=...)``, any other introspector accumulator (class or
            unused instance), or a list of them.
        model: a zero-argument function returning an introscope ``Model``; it is called once
            per worker (an actor of the pool given to ``map_batches``), not on the driver.
        responses: the model responses to compute (all when None) or, without a model, the
            dataset columns to introspect (all when None): a name or a list of names. Columns
            of Python lists (``ray.data.from_items``) are stacked into numeric arrays.
        batch_size: rows per model call and per state update; each block of the dataset yields
            one partial state per introspector, whatever its number of batches.
        concurrency: workers: a fixed number or a (min, max) autoscaling range (without a
            model, tasks: at most this many at once). Default: the cluster's CPUs minus one
            (at least 1), or with ``num_gpus`` one per ``num_gpus`` of the cluster's GPUs. The
            actors share the CPUs but one, so the read tasks always have a CPU (no deadlock on
            small machines).
        num_gpus: GPUs per worker (for a model on GPU; a fraction shares a GPU). Ray then needs
            a row count per call: each call of 64 batches (at least 4,096 rows) gives one
            partial state. More than ``ray.cluster_resources()`` has at the time of the call
            raises ``IntroscopeValueError`` (Ray would wait forever for the workers).
        stages: pipeline stages run on each batch after the model (e.g. a ``Pooler`` so that
            PFA gets 2-D responses).
        combine: merge this many consecutive block states on the workers before they travel
            to the driver (a second merge level for large clusters: the driver receives about
            blocks / combine states); 1 ships every block's state to the driver.
        return_stats: also return a ``RayRunStats`` (bytes shipped, merges).

    Returns:
        A list: for each introspector, what its ``introspect`` returns (an ``IUA``, a ``PFA``),
        with the numbers of a single-process run over the same rows in the same order. With
        ``return_stats``, the pair ``(results, stats)``.

    Examples:
        Needs a Ray cluster, so this example is not run by the test suite:

        >>> import numpy as np, ray  # doctest: +SKIP
        >>> import introscope.ray  # doctest: +SKIP
        >>> from introscope.introspectors import IUA  # doctest: +SKIP
        >>> _ = introscope.ray.init_local(num_cpus=2)  # doctest: +SKIP
        >>> rows = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])  # doctest: +SKIP
        >>> ds = ray.data.from_numpy(rows)  # doctest: +SKIP
        >>> [iua], stats = introscope.ray.introspect(ds, [IUA], return_stats=True)  # doctest: +SKIP
        >>> iua.results["data"]  # doctest: +SKIP
        IUA.Result(mean_inactive=1.33333, std_inactive=0.471405, samples=3, unit_shape=(2,))
        >>> stats.rows  # doctest: +SKIP
        3
    """
    ray = require("ray", "ray", "introscope.ray")
    ray_data = require("ray.data", "ray", "introscope.ray")
    if not isinstance(dataset, ray_data.Dataset):
        raise IntroscopeValueError(
            f"introscope.ray.introspect: dataset must be a ray.data.Dataset, got "
            f"{type(dataset).__name__}; build one with ray.data.from_numpy(...) or "
            f"ray.data.read_parquet(...)"
        )
    entries = resolve_entries(introspectors)
    batch_size = check_batch_size(batch_size)
    combine = check_batch_size(combine, "combine")
    concurrency = _check_concurrency(concurrency)
    num_gpus = check_num_gpus(num_gpus, "introscope.ray.introspect")
    names = check_responses(responses, "introscope.ray.introspect")
    check_model_factory(model, "introscope.ray.introspect")
    ensure_started()  # init_local() when Ray is not running (see its docstring)
    # Before anything is submitted: a worker asking more GPUs than the cluster has would wait
    # forever.
    check_cluster_gpus(
        num_gpus, ray.cluster_resources(), "introscope.ray.introspect", live_node_resources()
    )
    stages = list(stages)

    if model is None:
        fn: Any = BlockAccumulator(entries, batch_size=batch_size, responses=names, stages=stages)
        tasks = None if concurrency is None else max(np.atleast_1d(concurrency))
        mapped = dataset.map_batches(
            fn,
            batch_size=map_batch_rows(batch_size, num_gpus),
            batch_format="numpy",
            compute=None if tasks is None else ray_data.TaskPoolStrategy(size=int(tasks)),
            num_gpus=num_gpus or None,
        )
    else:
        resources = ray.cluster_resources()
        pool, per_actor = actor_resources(
            float(resources.get("CPU", 1.0)), concurrency, num_gpus, resources.get("GPU", 0)
        )
        size = (
            {"min_size": pool[0], "max_size": pool[1]}
            if isinstance(pool, tuple)
            else {"size": pool}
        )
        _LOG.info("introscope.ray: %s actors with %.2f CPUs each", pool, per_actor)
        mapped = dataset.map_batches(
            ModelBlockAccumulator,
            fn_constructor_args=(model, entries),
            fn_constructor_kwargs={"batch_size": batch_size, "responses": names, "stages": stages},
            batch_size=map_batch_rows(batch_size, num_gpus),
            batch_format="numpy",
            compute=ray_data.ActorPoolStrategy(**size),
            num_cpus=per_actor,
            num_gpus=num_gpus or None,
        )

    if combine > 1:
        # An actor pool: a task would be fused into the block's task and see one block only.
        # Pure in its rows, so a retried call gives the same state; 0 CPUs, so it cannot take
        # the CPU the read tasks need.
        cpus = int(ray.cluster_resources().get("CPU", 1.0))
        mapped = mapped.map_batches(
            StateCombiner,
            fn_constructor_args=(entries,),
            fn_constructor_kwargs={"with_model": model is not None},
            batch_size=combine * len(entries),
            batch_format="numpy",
            compute=ray_data.ActorPoolStrategy(min_size=1, max_size=max(1, cpus)),
            num_cpus=0,
        )
    mergers = [_TreeMerger(e, with_model=model is not None) for e in entries]
    stats = RayRunStats(state_bytes=[[] for _ in entries])
    here = node_id()
    with _preserved_order(mapped.context):
        for part in mapped.iter_batches(batch_size=None, batch_format="numpy"):
            columns = [part[c] for c in STATE_COLUMNS]
            for index, rows, blocks, blob, node, moved, shapes in zip(*columns, strict=True):
                i = int(index)
                data = bytes(blob)
                if i < 0:
                    _raise_worker_error(data)
                stats.state_bytes[i].append(len(data))
                stats.states_by_node[node] = stats.states_by_node.get(node, 0) + 1
                stats.combiner_remote_bytes += int(moved)
                if node != here:
                    stats.driver_remote_bytes += len(data)
                if i == 0:
                    stats.blocks += int(blocks)
                    stats.rows += int(rows)
                state = entries[i].from_state_dict(decode_state(data))
                mergers[i].push(state, decode_shapes(shapes), int(blocks))
    if stats.rows == 0:
        raise IntroscopeError("introscope.ray.introspect: the dataset has no rows to introspect")
    results = []
    for merger in mergers:
        state = merger.result()
        stats.merges.append(merger.merges)
        results.append(merger.entry.finalize(state))
    _LOG.info(
        "introscope.ray: %d blocks, %d rows, state bytes per entry %s",
        stats.blocks,
        stats.rows,
        [sum(s) for s in stats.state_bytes],
    )
    return (results, stats) if return_stats else results
