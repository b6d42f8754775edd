"""Gathering a producer's batches for Duplicates: one buffer per response, plus metadata."""

from __future__ import annotations

from typing import Any

from introscope.base import Batch
from introscope.base import _metadata as _meta
from introscope.base._batch import concatenate_batches
from introscope.exceptions import IntroscopeError

from ._state import ResponseBuffer, check_responses

__all__ = ["DuplicatesAccumulator"]


class DuplicatesAccumulator:
    """Folds batches into per-response :class:`ResponseBuffer` states and keeps their metadata.

    The vectors go into one growing array per response; metadata (per-element Python values)
    and snapshots are kept per batch and joined once at the end, so each duplicate set's
    ``batch`` can carry its members' metadata as DNIKit's does.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, ResponseBuffer] = {}
        self._metadata: list[_meta.Storage] = []
        self._snapshots: list[dict[str, Batch]] = []
        self.n_batches = 0

    @property
    def count(self) -> int:
        return len(next(iter(self.buffers.values()))) if self.buffers else 0

    def update(self, batch: Batch) -> None:
        """Fold in one batch; every batch must carry the same fields."""
        where = f"batch {self.n_batches}"
        fields = batch.fields
        if not fields:
            raise IntroscopeError(
                f"Duplicates: {where} has no fields; Duplicates needs response fields"
            )
        if self.buffers and set(fields) != set(self.buffers):
            raise IntroscopeError(
                f"Duplicates: {where} has fields {sorted(fields)}, but earlier batches had "
                f"{sorted(self.buffers)}; every batch must carry the same fields"
            )
        for name, arr in fields.items():
            buf = self.buffers.get(name)
            if buf is None:
                checked = check_responses(name, arr, where)
                buf = ResponseBuffer(name, checked.shape[1], checked.dtype, max(1024, len(arr)))
                self.buffers[name] = buf
            buf.update(arr, where)
        s = batch._s
        self._metadata.append(s.metadata)
        # Only the snapshots are kept (never the batch, whose fields are already buffered).
        self._snapshots.append(dict(s.snapshots))
        self.n_batches += 1

    def state_dict(self) -> dict[str, Any]:
        """The response vectors (numpy arrays, JSON scalars); metadata is not part of it."""
        return {
            "fields": {name: buf.state_dict() for name, buf in self.buffers.items()},
            "n_batches": self.n_batches,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> DuplicatesAccumulator:
        out = cls()
        out.buffers = {
            name: ResponseBuffer.from_state_dict(s) for name, s in state["fields"].items()
        }
        out.n_batches = int(state.get("n_batches", 0))
        return out

    def merged(self, other: DuplicatesAccumulator) -> DuplicatesAccumulator:
        """This accumulator's samples followed by ``other``'s (both must have the same fields)."""
        if set(self.buffers) != set(other.buffers):
            raise IntroscopeError(
                f"cannot merge Duplicates states with fields {sorted(self.buffers)} and "
                f"{sorted(other.buffers)}"
            )
        out = DuplicatesAccumulator()
        out.buffers = {n: b.merged(other.buffers[n]) for n, b in self.buffers.items()}
        out._metadata = self._metadata + other._metadata
        out._snapshots = self._snapshots + other._snapshots
        out.n_batches = self.n_batches + other.n_batches
        return out

    def combined_batch(self) -> Batch:
        """One batch of every sample: the buffered fields, joined metadata and snapshots."""
        fields = {name: buf.view() for name, buf in self.buffers.items()}
        try:
            metadata = _meta.concat_storages(self._metadata) if self._metadata else {}
        except ValueError as exc:
            raise IntroscopeError(f"Duplicates: cannot join the batches' metadata: {exc}") from None
        snapshots = None
        names = set(self._snapshots[0]) if self._snapshots else set()
        if any(set(snaps) != names for snaps in self._snapshots):
            raise IntroscopeError(
                "Duplicates: the batches carry different snapshots; every batch must have the "
                "same snapshots"
            )
        if names:
            snapshots = {
                name: concatenate_batches([snaps[name] for snaps in self._snapshots])
                for name in self._snapshots[0]
            }
        return Batch._from_parts(fields, snapshots, metadata)
