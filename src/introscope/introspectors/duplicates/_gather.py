"""The Duplicates accumulator: one ``ResponseBuffer`` per response, plus the metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from introscope.base import Batch
from introscope.base import _metadata as _meta
from introscope.base._batch import concatenate_batches
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors._accumulator import Accumulator

from .._knn import NeighborsArg, check_neighbors_arg
from . import _threshold
from ._state import ResponseBuffer, check_responses
from ._threshold import DuplicatesThresholdStrategyType

if TYPE_CHECKING:
    from ._duplicates import Duplicates

__all__ = ["DuplicatesAccumulator"]


def _threshold_config(strategy: DuplicatesThresholdStrategyType) -> Any:
    if isinstance(strategy, _SavedCustomThreshold):
        return strategy.spec
    if isinstance(strategy, _threshold.Slope):
        return {"Slope": {"sensitivity": strategy.sensitivity}}
    if isinstance(strategy, _threshold.Percentile):
        return {"Percentile": {"percentile": strategy.percentile}}
    return f"custom:{type(strategy).__qualname__}"


def _threshold_from_config(spec: Any) -> DuplicatesThresholdStrategyType:
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if kind in ("Slope", "Percentile"):
            return cast("DuplicatesThresholdStrategyType", getattr(_threshold, kind)(**args))
    if isinstance(spec, str) and spec.startswith("custom:"):
        # Loading works; only finishing needs the threshold, given again to finalize().
        return _SavedCustomThreshold(spec)
    raise IntroscopeValueError(
        f"Duplicates: threshold {spec!r} is not a saved threshold (Slope, Percentile or "
        f"'custom:<name>'); pass a Duplicates.ThresholdStrategy"
    )


class _SavedCustomThreshold:
    """A custom threshold named in a saved state: it cannot be rebuilt, so it asks for itself."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __call__(self, *_: Any, **__: Any) -> Any:
        raise IntroscopeValueError(
            f"Duplicates: the saved threshold {self.spec!r} is a custom strategy, which cannot "
            f"be restored from a file; pass it again: accumulator.finalize(threshold=...)"
        )


class DuplicatesAccumulator(Accumulator):
    """Folds batches into per-response ``ResponseBuffer`` states and keeps their metadata.

    The vectors go into one growing array per response; metadata (per-element Python values)
    and snapshots are kept per batch and joined once in ``finalize``, so each duplicate
    set's ``batch`` carries its members' metadata as DNIKit's does. ``state_dict`` and
    ``save`` hold the vectors only (metadata can be any Python object; no pickle).
    """

    owner = "Duplicates"
    state_type = ResponseBuffer

    def __init__(
        self,
        *,
        threshold: DuplicatesThresholdStrategyType | Any | None = None,
        neighbors: NeighborsArg = "auto",
    ) -> None:
        super().__init__()
        if threshold is None:
            threshold = _threshold.Slope()
        elif isinstance(threshold, (Mapping, str)):
            threshold = _threshold_from_config(threshold)
        if not callable(threshold):
            raise IntroscopeValueError(
                f"Duplicates: threshold must be a DuplicatesThresholdStrategyType (e.g. "
                f"Duplicates.ThresholdStrategy.Slope()), got {type(threshold).__name__}"
            )
        self.threshold = threshold
        self.neighbors = check_neighbors_arg(neighbors)
        self._metadata: list[_meta.Storage] = []
        self._snapshots: list[dict[str, Batch]] = []

    # ------------------------------------------------------------------ contract
    def new_state(self, field: str, array: Any) -> ResponseBuffer:
        arr = check_responses(array)
        return ResponseBuffer(arr.shape[1], arr.dtype, max(1024, len(arr)))

    def config(self) -> dict[str, Any]:
        return {"threshold": _threshold_config(self.threshold), "neighbors": self.neighbors}

    def spawn(self) -> DuplicatesAccumulator:
        return DuplicatesAccumulator(threshold=self.threshold, neighbors=self.neighbors)

    def update_batch(self, batch: Any, index: int | None = None) -> None:
        """Fold in every field of a batch, and keep its metadata and snapshots."""
        super().update_batch(batch, index)
        s = batch._s
        self._metadata.append(s.metadata)
        # Only the snapshots are kept (never the batch, whose fields are already buffered).
        self._snapshots.append(dict(s.snapshots))

    def reset(self) -> None:
        super().reset()
        self._metadata, self._snapshots = [], []

    def merge(self, other: DuplicatesAccumulator) -> DuplicatesAccumulator:
        out = super().merge(other)
        out._metadata = self._metadata + other._metadata
        out._snapshots = self._snapshots + other._snapshots
        return out

    merged = merge

    @property
    def count(self) -> int:
        if not self._states:
            return 0
        return len(cast("ResponseBuffer", next(iter(self._states.values()))))

    def combined_batch(self) -> Batch:
        """One batch of every sample: the buffered fields, joined metadata and snapshots."""
        fields = {name: buf.view() for name, buf in self._states.items()}  # type: ignore[attr-defined]
        metadata: _meta.Storage = {}
        if self._metadata and len(self._metadata) == self._batches:
            try:
                metadata = _meta.concat_storages(self._metadata)
            except ValueError as exc:
                raise IntroscopeError(
                    f"Duplicates: cannot join the batches' metadata: {exc}"
                ) from None
        snapshots = None
        names = set(self._snapshots[0]) if self._snapshots else set()
        if any(set(snaps) != names for snaps in self._snapshots):
            raise IntroscopeError(
                "Duplicates: the batches carry different snapshots; every batch must have the "
                "same snapshots"
            )
        if names and len(self._snapshots) == self._batches:
            snapshots = {
                name: concatenate_batches([snaps[name] for snaps in self._snapshots])
                for name in self._snapshots[0]
            }
        return Batch._from_parts(fields, snapshots, metadata)

    def finalize(self, **options: Any) -> Duplicates:
        """The ``Duplicates`` result (``threshold=`` overrides the accumulator's)."""
        from ._duplicates import Duplicates

        threshold = options.pop("threshold", None) or self.threshold
        if options:
            raise IntroscopeValueError(
                f"Duplicates: finalize() takes only threshold=, got {sorted(options)}"
            )
        if not self._states:
            raise IntroscopeValueError("Duplicates: no batch was folded in; there is no data")
        return Duplicates._from_accumulator(self, threshold=threshold, neighbors=self.neighbors)
