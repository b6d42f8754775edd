"""What ``introscope.ray.introspect`` accepts as an introspector, as one uniform state interface.

An entry knows how to start an empty state, fold a batch of one response into it, turn it into
a state dict (numpy arrays + JSON-able scalars) and back, merge two states of disjoint data, and
finish the merged state into the object that the introspector's own ``introspect`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from introscope.base import Batch
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import PFA
from introscope.introspectors.pfa._covariance import PFACovarianceState

try:
    from introscope.introspectors._accumulator import Accumulator
except ImportError:  # the contract has not landed in this checkout
    Accumulator = None  # type: ignore[assignment,misc]

__all__ = [
    "AccumulatorEntry",
    "Entry",
    "FamiliarityEntry",
    "PFAEntry",
    "resolve_entries",
]


class Entry:
    """The state interface the Ray workers and the driver use, one per introspector.

    ``new`` makes a block's empty state on a worker. The driver merges block states in a
    balanced tree, or, for a ``sequential`` entry, folds them in dataset order into
    ``driver_new()`` with ``merged(driver_state, block_state)``.

    Examples:
        An entry that counts rows, run by hand as the workers and the driver would (no cluster):

        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.ray import Entry
        >>> class RowCount(Entry):
        ...     label = "RowCount"
        ...     def new(self):
        ...         return {"rows": 0}
        ...     def update_batch(self, state, batch, index):
        ...         state["rows"] += batch.batch_size
        ...     def state_dict(self, state):
        ...         return {"rows": np.asarray(state["rows"])}
        ...     def from_state_dict(self, data):
        ...         return {"rows": int(data["rows"])}
        ...     def merged(self, left, right):
        ...         return {"rows": left["rows"] + right["rows"]}
        ...     def finalize(self, state):
        ...         return state["rows"]
        >>> entry = RowCount()
        >>> block_a, block_b = entry.new(), entry.new()
        >>> entry.update_batch(block_a, Batch({"x": np.zeros(3)}), 0)
        >>> entry.update_batch(block_b, Batch({"x": np.zeros(2)}), 0)
        >>> shipped = [entry.from_state_dict(entry.state_dict(s)) for s in (block_a, block_b)]
        >>> entry.finalize(entry.merged(*shipped))
        5
    """

    label = "introspector"
    sequential = False

    def new(self) -> Any:
        """A block's empty state, made on a worker."""
        raise NotImplementedError

    def driver_new(self) -> Any:
        """The driver's empty state a ``sequential`` entry folds blocks into; ``new()`` by default."""
        return self.new()

    def update_batch(self, state: Any, batch: Batch, index: int) -> None:
        """Fold ``batch`` (the ``index``-th of its block) into ``state`` in place."""
        raise NotImplementedError

    def state_dict(self, state: Any) -> dict[str, Any]:
        """``state`` as numpy arrays and JSON-able scalars, to ship from a worker to the driver."""
        raise NotImplementedError

    def from_state_dict(self, data: Mapping[str, Any]) -> Any:
        """The state that ``state_dict`` turned into ``data``."""
        raise NotImplementedError

    def merged(self, left: Any, right: Any) -> Any:
        """One state of the data of ``left`` and ``right`` (disjoint blocks, ``left`` first)."""
        raise NotImplementedError

    def combined(self, left: Any, right: Any) -> Any:
        """Two block states merged on a worker (the second merge level); ``merged`` by default."""
        return self.merged(left, right)

    def finalize(self, state: Any) -> Any:
        """The merged state finished into what the introspector's own ``introspect`` returns."""
        raise NotImplementedError


class AccumulatorEntry(Entry):
    """Any accumulator of the contract (``introspectors._accumulator.Accumulator``).

    Examples:
        Two blocks of one response folded, shipped and merged by hand, as on a cluster:

        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.introspectors import IUA
        >>> from introscope.ray import AccumulatorEntry
        >>> entry = AccumulatorEntry(IUA())
        >>> block_a, block_b = entry.new(), entry.new()
        >>> entry.update_batch(block_a, Batch({"relu": np.array([[0.0, 1.0], [0.0, 2.0]])}), 0)
        >>> entry.update_batch(block_b, Batch({"relu": np.array([[0.0, 3.0]])}), 0)
        >>> shipped = entry.from_state_dict(entry.state_dict(block_b))
        >>> iua = entry.finalize(entry.merged(block_a, shipped))
        >>> iua.results["relu"]
        IUA.Result(mean_inactive=1, std_inactive=0, samples=3, unit_shape=(2,))
    """

    def __init__(self, template: Any) -> None:
        self.template = template
        self.label = template.owner

    def new(self) -> Any:
        """A fresh accumulator spawned from the template, its warnings deferred to the driver."""
        acc = self.template.spawn()
        acc._defer_warnings = True  # one summary warning on the driver, as introspect gives
        return acc

    def update_batch(self, state: Any, batch: Batch, index: int) -> None:
        """Fold ``batch`` into the accumulator ``state`` (its ``update_batch``)."""
        state.update_batch(batch, index)

    def state_dict(self, state: Any) -> dict[str, Any]:
        """The accumulator's own ``state_dict()``."""
        return cast("dict[str, Any]", state.state_dict())

    def from_state_dict(self, data: Mapping[str, Any]) -> Any:
        """The accumulator rebuilt from ``data`` by its class's ``from_state_dict``."""
        acc = type(self.template).from_state_dict(data)
        acc._defer_warnings = True
        # Blocks defer their NaN/Inf warnings: none was given yet, the driver's summary gives it
        # (a loaded state otherwise counts its non-finite fields as warned about).
        acc._warned = set()
        return acc

    def merged(self, left: Any, right: Any) -> Any:
        """``left`` and ``right`` merged: ``left.absorb(right)`` (in place, no copy of
        ``left``'s matrices) where the accumulator has it, else ``left.merge(right)``; the
        driver's tree owns ``left``."""
        absorb = getattr(left, "absorb", None)
        out = absorb(right) if absorb is not None else left.merge(right)
        out._defer_warnings = True
        return out

    def finalize(self, state: Any) -> Any:
        """The accumulator's result, after one summary of the warnings its blocks deferred."""
        state._defer_warnings = False
        state._warn_summary(stacklevel=4)
        return state.finalize()


class PFAEntry(AccumulatorEntry):
    """PFA's accumulator, shipping each outer-product sum as its upper triangle only.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.ray import PFAEntry
        >>> entry = PFAEntry()
        >>> state = entry.new()
        >>> entry.update_batch(state, Batch({"fc": np.arange(12.0).reshape(4, 3) ** 2}), 0)
        >>> shipped = entry.state_dict(state)
        >>> [key for key in sorted(shipped) if key.startswith(("triu_", "outer_"))]
        ['triu_0']
        >>> shipped["triu_0"].shape  # 3 units: 6 of the 9 entries of the symmetric sum
        (6,)
        >>> back = entry.from_state_dict(shipped)
        >>> pfa = entry.finalize(back)
        >>> type(pfa).__name__, pfa.failed_responses
        ('PFA', [])
    """

    def __init__(
        self,
        template: PFACovarianceState | None = None,
        *,
        precision: str = "auto",
        epsilon_inactive: float = 1e-8,
    ) -> None:
        if template is None:
            template = PFACovarianceState(precision=precision, epsilon_inactive=epsilon_inactive)
        super().__init__(template)

    def state_dict(self, state: PFACovarianceState) -> dict[str, Any]:
        """The accumulator's state dict with each symmetric outer-product sum packed as its upper triangle."""
        out = dict(state.state_dict())
        # The outer sums are symmetric: ship the upper triangle (half the bytes).
        for key in [k for k in out if k.startswith("outer_")]:
            outer = out.pop(key)
            out["triu_" + key[len("outer_") :]] = outer[np.triu_indices(outer.shape[0])]
        return out

    def from_state_dict(self, data: Mapping[str, Any]) -> PFACovarianceState:
        """The accumulator rebuilt from ``data``, unpacking each upper triangle to the full symmetric sum."""
        full = dict(data)
        for key in [k for k in full if k.startswith("triu_")]:
            packed = full.pop(key)
            units = int(np.asarray(full["sum_" + key[len("triu_") :]]).shape[0])
            outer = np.zeros((units, units))
            outer[np.triu_indices(units)] = packed
            outer = outer + np.triu(outer, 1).T
            full["outer_" + key[len("triu_") :]] = outer
        acc = PFACovarianceState.from_state_dict(full)
        acc._defer_warnings = True
        return acc


class FamiliarityEntry(AccumulatorEntry):
    """Familiarity: blocks ship all their rows; the driver samples them as one stream would.

    A seeded fit sample keys every row by its global index, which a Ray block does not know.
    Workers therefore keep every row of their block (``max_samples=None``); the driver feeds
    the blocks, in dataset order, into the configured accumulator, so the sample and the fitted
    mixture are those of a single-process run. Bytes shipped: all fit rows
    (O(samples x features)), as the fit needs them anyway.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.introspectors import Familiarity
        >>> from introscope.ray import FamiliarityEntry
        >>> entry = FamiliarityEntry(Familiarity.Strategy.GMM(gaussian_count=1).accumulator())
        >>> rng = np.random.default_rng(0)
        >>> blocks = []
        >>> for _ in range(2):  # each worker keeps every row of its block
        ...     block = entry.new()
        ...     entry.update_batch(block, Batch({"x": rng.standard_normal((10, 2))}), 0)
        ...     blocks.append(entry.from_state_dict(entry.state_dict(block)))
        >>> driver = entry.driver_new()
        >>> for block in blocks:  # the driver feeds the blocks in dataset order
        ...     driver = entry.merged(driver, block)
        >>> familiarity = entry.finalize(driver)
        >>> type(familiarity).__name__, entry.sequential
        ('Familiarity', True)
    """

    sequential = True

    def new(self) -> Any:
        """A block's accumulator that keeps every row (``max_samples=None``)."""
        acc = type(self.template)(self.template.strategy, max_samples=None)
        acc._defer_warnings = True
        return acc

    def driver_new(self) -> Any:
        """The driver's accumulator with the configured sampling, that the blocks are fed into."""
        return super().new()

    def from_state_dict(self, data: Mapping[str, Any]) -> Any:
        """The block's accumulator rebuilt from ``data``, with the template's strategy."""
        acc = type(self.template).from_state_dict(data)
        acc.strategy = self.template.strategy
        return acc

    def combined(self, left: Any, right: Any) -> Any:
        # Unsampled buffers of consecutive blocks: their merge is the rows in order.
        return AccumulatorEntry.merged(self, left, right)

    def merged(self, left: Any, right: Any) -> Any:
        """``right``'s rows fed into the driver state ``left`` as one more batch, in dataset order."""
        for field, state in right.states.items():
            if state.n_kept:
                left.update(field, state.data(), where=f"block {left.batches_seen}")
        left._batches += 1
        return left


def _is_accumulator(item: Any) -> bool:
    return Accumulator is not None and isinstance(item, Accumulator)


def _is_accumulator_class(item: Any) -> bool:
    return Accumulator is not None and isinstance(item, type) and issubclass(item, Accumulator)


def _is_pca_strategy(item: Any) -> bool:
    try:
        from introscope.introspectors.dimension_reduction._strategies import PCA
    except ImportError:
        return False
    return isinstance(item, PCA)


def _is_familiarity_strategy(item: Any) -> bool:
    try:
        from introscope.introspectors.familiarity import GMM  # noqa: PLC0415
    except ImportError:
        return False
    return isinstance(item, GMM)


def resolve_entries(introspectors: Any) -> list[Entry]:
    """One :class:`Entry` per item of ``introspectors`` (classes or configured instances)."""
    if isinstance(introspectors, (str, bytes)):
        # A name would be iterated letter by letter ('I', 'U', 'A').
        raise IntroscopeValueError(
            f"introscope.ray.introspect: introspectors is the string {introspectors!r:.60}; "
            f"pass a list of introspector classes or configured instances, not their names, "
            f"e.g. [IUA, PFA] after `from introscope.introspectors import IUA, PFA`"
        )
    single = isinstance(introspectors, (type, Entry)) or _is_accumulator(introspectors)
    if single:
        items = [introspectors]
    else:
        try:
            items = list(introspectors)
        except TypeError:
            items = [introspectors]
    if not items:
        raise IntroscopeValueError(
            "introscope.ray.introspect: introspectors is empty; pass e.g. [IUA, PFA]"
        )
    return [_resolve(item, i) for i, item in enumerate(items)]


def _resolve(item: Any, index: int) -> Entry:
    if isinstance(item, Entry):
        return item
    if item is PFA:
        return PFAEntry()
    if _is_accumulator_class(item):
        return PFAEntry() if issubclass(item, PFACovarianceState) else AccumulatorEntry(item())
    if _is_accumulator(item):
        if item.fields:
            raise IntroscopeValueError(
                f"introscope.ray.introspect: introspectors[{index}] is an accumulator "
                f"({item.owner}) that already holds data; pass an unused one for its settings "
                f"and merge earlier results with .merge"
            )
        if isinstance(item, PFACovarianceState):
            return PFAEntry(item)
        if getattr(item, "owner", None) == "Familiarity" and hasattr(item, "strategy"):
            return FamiliarityEntry(item)
        return AccumulatorEntry(item)
    if _is_familiarity_strategy(item):
        return FamiliarityEntry(item.accumulator())
    if _is_pca_strategy(item):
        from introscope.introspectors.dimension_reduction import PCAAccumulator

        return AccumulatorEntry(
            PCAAccumulator(target_dimensions=item.target_dimensions, precision=item.precision)
        )
    if isinstance(item, (str, bytes)):
        raise IntroscopeValueError(
            f"introscope.ray.introspect: introspectors[{index}] is the string {item!r:.60}; "
            f"pass the introspector class or a configured instance, not its name, e.g. [IUA] "
            f"after `from introscope.introspectors import IUA`"
        )
    raise IntroscopeValueError(
        f"introscope.ray.introspect: introspectors[{index}] is {item!r}; expected IUA, PFA, "
        f"a configured IUA(...) or PFA.accumulator(...), a Familiarity.Strategy.GMM(...), a "
        f"DimensionReduction.Strategy.PCA(k), or "
        f"another introspector accumulator"
    )
