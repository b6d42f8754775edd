"""Snapshots (saved copies of a batch's state) and ``PipelineDebugger``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from introscope.base import Batch, PipelineStage
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone

from ._base import check_names_present, resolve_fields

__all__ = ["SnapshotSaver", "SnapshotRemover", "PipelineDebugger"]


@dataclasses.dataclass(frozen=True)
class SnapshotSaver(PipelineStage):
    """Saves the current batch (fields and metadata) as snapshot ``save``.

    Args:
        save: name of the snapshot.
        fields: fields to include (``keep=True``) or leave out (``keep=False``); None: all.
        keep: whether ``fields`` lists the fields to keep or to omit.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Processor, SnapshotSaver
        >>> batch = Batch({"x": np.array([1, 2])})
        >>> stages = [SnapshotSaver("original"), Processor(lambda a: a * 10)]
        >>> out = peek_first_batch(pipeline(producer_from_batches(batch), stages), batch_size=2)
        >>> out.fields["x"], out.snapshots["original"].fields["x"]
        (array([10, 20]), array([1, 2]))
    """

    save: str = "snapshot"
    fields: OneManyOrNone[str] = None
    keep: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.save, str) or not self.save:
            raise IntroscopeValueError(
                f"SnapshotSaver: save must be a non-empty str, got {self.save!r}"
            )
        resolve_fields(self.fields)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        names, keep, save = resolve_fields(self.fields), self.keep, self.save

        def process(batch: Batch) -> Batch:
            snapshot = Batch.Builder(base=batch)
            if names:
                check_names_present("SnapshotSaver", names, batch.fields.keys())
                snapshot.fields = {n: a for n, a in batch.fields.items() if (n in names) == keep}
            if not snapshot.fields and not batch.metadata:
                raise IntroscopeError(
                    f"SnapshotSaver(fields={sorted(names or ())}, keep={keep}) leaves no field "
                    f"to save in snapshot {save!r}"
                )
            builder = Batch.Builder(base=batch)
            builder.snapshots[save] = snapshot.make_batch()
            return builder.make_batch()

        return process


@dataclasses.dataclass(frozen=True)
class SnapshotRemover(PipelineStage):
    """Removes the named snapshots (all of them when ``snapshots`` is None);
    with ``keep=True`` removes every other snapshot instead.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import SnapshotRemover, SnapshotSaver
        >>> batch = Batch({"x": np.array([1, 2])})
        >>> stages = [SnapshotSaver("a"), SnapshotSaver("b"), SnapshotRemover("a")]
        >>> sorted(peek_first_batch(pipeline(producer_from_batches(batch), stages), 2).snapshots)
        ['b']
    """

    snapshots: OneManyOrNone[str] = None
    keep: bool = False

    def __post_init__(self) -> None:
        resolve_fields(self.snapshots, "snapshots")

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        names, keep = resolve_fields(self.snapshots, "snapshots"), self.keep

        def process(batch: Batch) -> Batch:
            builder = Batch.Builder(base=batch)
            if names:
                check_names_present("SnapshotRemover", names, batch.snapshots.keys(), "snapshot")
                builder.snapshots = {
                    n: s for n, s in batch.snapshots.items() if (n in names) == keep
                }
            else:
                builder.snapshots = {}
            return builder.make_batch()

        return process


@dataclasses.dataclass(frozen=True)
class PipelineDebugger(PipelineStage):
    """Prints a summary of batches passing through (shapes, snapshots, metadata keys).

    Args:
        label: text printed before each summary.
        first_only: print only the first batch of each pass.
        dump_fields: also print the arrays of ``fields`` (all fields when None).
        fields: fields whose contents ``dump_fields`` prints.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import PipelineDebugger
        >>> batch = Batch({"x": np.zeros((2, 3), dtype=np.float32)})
        >>> _ = peek_first_batch(pipeline(producer_from_batches(batch), PipelineDebugger("in:")), 2)
        in: Batch(batch_size=2) {
        x: (2, 3) float32
        }
        <BLANKLINE>
        <BLANKLINE>
    """

    label: str = ""
    first_only: bool = True
    dump_fields: bool = False
    fields: OneManyOrNone[str] = None

    @staticmethod
    def dump(
        batch: Batch | Batch.Builder,
        label: str = "",
        dump_fields: bool = False,
        fields: OneManyOrNone[str] = None,
    ) -> str:
        """A text summary of ``batch`` (a Batch or Batch.Builder).

        Examples:
            >>> import numpy as np
            >>> from introscope.base import Batch
            >>> from introscope.processors import PipelineDebugger
            >>> print(PipelineDebugger.dump(Batch({"x": np.arange(2)}), dump_fields=True), end="")
            Batch(batch_size=2) {
            x: (2,) int64
            [0 1]
            }
        """
        names = resolve_fields(fields)
        arrays = batch.fields
        size = f"batch_size={len(next(iter(arrays.values())))}" if arrays else ""
        lines = [f"{label + ' ' if label else ''}Batch({size}) {{"]
        for name in sorted(arrays):
            data = arrays[name]
            lines.append(f"{name}: {data.shape} {data.dtype}")
            if dump_fields and (names is None or name in names):
                lines.append(str(data))
        if batch.snapshots:
            lines += ["", "Snapshots:"]
            lines += [f"{k}: {sorted(batch.snapshots[k].fields)}" for k in sorted(batch.snapshots)]
        metadata = batch.metadata
        if metadata:
            lines += ["", "Metadata:"]
            for key in sorted(metadata.keys(), key=lambda k: k.name):
                if isinstance(key, Batch.DictMetaKey):
                    lines.append(f"{key!r}: {sorted(metadata[key].keys())}")
                else:
                    lines.append(repr(key))
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        label, first_only, dump_fields = self.label, self.first_only, self.dump_fields
        names = resolve_fields(self.fields)
        seen = [False]  # per pass: a fresh processor is made for every pass

        def process(batch: Batch) -> Batch:
            if not (first_only and seen[0]):
                print(PipelineDebugger.dump(batch, label, dump_fields, names), end="\n\n")
            seen[0] = True
            return batch

        return process
