"""What runs on the Ray workers: one block in, one encoded partial state per introspector out."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from introscope.base import Batch, Model, PipelineStage, pipeline
from introscope.exceptions import IntroscopeError, IntroscopeValueError, StateError

from ._codec import decode_state, encode_state
from ._entries import Entry
from ._errors import error_info

__all__ = [
    "BlockAccumulator",
    "ModelBlockAccumulator",
    "StateCombiner",
    "STATE_COLUMNS",
    "load_model_stage",
    "numeric_column",
    "conflicting_response",
    "row_shape_error",
    "with_ray_input_hint",
]

_LOG = logging.getLogger("introscope.ray")

#: Columns of the dataset of partial states: entry index (-1: an error), rows and blocks folded
#: in, the encoded state, the Ray node that made it, the bytes of block states that a combiner
#: received from other nodes (0 for a block's own state), and the shape of one row of each
#: response the state holds (JSON ``{name: [dims]}``; for the error message of a merge that
#: fails because blocks hold rows of different shapes).
STATE_COLUMNS = ("entry", "rows", "blocks", "state", "node", "remote_bytes", "shapes")

#: The row shape of each response of a state, as shipped in the ``shapes`` column.
RowShapes = dict[str, tuple[int, ...]]


def node_id() -> str:
    """The Ray node this process runs on (hex), or "" outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def load_model_stage(
    model_factory: Callable[[], Model], responses: Sequence[str] | None, owner: str
) -> tuple[PipelineStage | None, dict[str, Any] | None]:
    """``(stage, None)``: the stage of the model that ``model_factory`` builds, computing
    ``responses`` (all when None); or ``(None, error info)`` when building it failed.

    Run in an actor's constructor, where an error would kill the actor and the driver would see
    Ray's ActorDiedError with the cause deep in its text: the error is kept instead, for the
    actor's first call to report (see :mod:`introscope.ray._errors`).
    """
    try:
        model = model_factory()
        if not isinstance(model, Model):
            raise IntroscopeValueError(
                f"{owner}: model() returned a {type(model).__name__}; it must return an "
                f"introscope Model (e.g. from introscope.torch.load_torch_model_from_memory)"
            )
        return model(None if responses is None else list(responses)), None
    except IntroscopeError as exc:
        return None, error_info(exc)
    except Exception as exc:  # noqa: BLE001 - the user's factory: any error, reported whole
        message = f"{owner}: the model factory raised {type(exc).__name__}: {exc}"
        return None, error_info(IntroscopeError(message))


# The model stages' advice for inputs that do not match the batch's fields (base._model and
# the torch adapter): a FieldRenamer stage, which introscope.ray runs only after the model.
_RENAMER_HINT = re.compile(r"; rename fields with introscope\.processors\.FieldRenamer.*\Z", re.S)


def with_ray_input_hint(exc: IntroscopeError, owner: str) -> IntroscopeError:
    """``exc``, or when it advises a ``FieldRenamer`` for model inputs that the batch's fields
    do not match, the same error with advice that works in ``owner`` (``introscope.ray.*``),
    where ``stages`` run after the model: select, drop or rename the dataset's columns."""
    message = str(exc)
    if not _RENAMER_HINT.search(message):
        return exc
    keep = (
        "; or name the other columns in keep=, which passes them by the model"
        if owner.endswith("score")
        else ""
    )
    hint = (
        f"; in {owner} the stages run after the model, so a FieldRenamer cannot rename its "
        f"inputs: give the dataset the model's input columns only, with "
        f"dataset.select_columns([...]) or dataset.drop_columns([...]), renaming them with "
        f"dataset.rename_columns({{old: new}}) where needed{keep}"
    )
    out = IntroscopeError(_RENAMER_HINT.sub(lambda _: hint, message))
    if type(exc) is not IntroscopeError:
        try:
            out = type(exc)(out.args[0])
        except Exception:  # noqa: BLE001 - a subclass whose __init__ takes other arguments
            pass
    return out


def _rows_of(a: tuple[int, ...], b: tuple[int, ...]) -> str:
    if len(a) == len(b) == 1:
        return f"lengths {a[0]} and {b[0]}"
    return f"shapes {a} and {b}"


def encode_shapes(shapes: RowShapes) -> str:
    """``shapes`` as the JSON text of the ``shapes`` column."""
    return json.dumps({k: list(v) for k, v in shapes.items()})


def decode_shapes(text: Any) -> RowShapes:
    """The row shapes that :func:`encode_shapes` wrote."""
    return {k: tuple(int(d) for d in v) for k, v in json.loads(str(text)).items()}


def conflicting_response(exc: StateError, left: RowShapes, right: RowShapes) -> str | None:
    """The response whose rows have different shapes in two states whose merge failed with
    ``exc`` (the one ``exc`` names where several differ), or None when none has: ``exc`` is
    about something else."""
    differ = [n for n, shape in right.items() if n in left and left[n] != shape]
    named = [n for n in differ if repr(n) in str(exc)]
    found = named or differ
    return found[0] if found else None


def row_shape_error(
    name: str,
    left: tuple[int, ...],
    right: tuple[int, ...],
    *,
    with_model: bool,
    blocks: tuple[int, int] | None = None,
) -> StateError:
    """The error for response ``name`` having rows of shape ``left`` in one block and ``right``
    in another (``blocks``: the two blocks of the dataset, where known), which the merge of
    their states refused."""
    rows = _rows_of(left, right)
    where = "" if blocks is None else f" (blocks {blocks[0]} and {blocks[1]})"
    if with_model:
        return StateError(
            f"introscope.ray: response {name!r} has rows of {rows} in different blocks of the "
            f"dataset{where}, which cannot be merged: the model gave it a different shape for "
            f"different blocks; feed the model input rows of one shape (pad or crop the rows "
            f"to one shape, e.g. with dataset.map_batches)"
        )
    return StateError(
        f"introscope.ray: column {name!r} has rows of {rows} in different blocks of the "
        f"dataset{where}, which cannot be merged; every row of a response column must be a "
        f"number or a list/array of numbers of one shape (pad or crop the rows to one shape, "
        f"e.g. with dataset.map_batches)"
    )


def _describe(value: Any) -> str:
    return f"{type(value).__name__} values (e.g. {value!r:.40})"


def _stack_rows(values: Any, where: str = "of the block") -> np.ndarray | str:
    """The rows of an object array stacked into one numeric array, or why they cannot be."""
    parts: list[np.ndarray] = []
    first: dict[tuple[int, ...], int] = {}
    for row, value in enumerate(values):
        if isinstance(value, (str, bytes)) or value is None or isinstance(value, Mapping):
            return _describe(value)
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            # Ray makes nested lists object arrays of arrays: stack those first.
            inner = _stack_rows(value.reshape(-1), f"of the list in row {row}")
            if isinstance(inner, str):
                return inner
            array = inner.reshape(value.shape + inner.shape[1:])
        else:
            try:
                array = np.asarray(value)
            except ValueError:  # a ragged nested list
                return f"ragged nested values (e.g. {value!r:.40})"
        if array.dtype.hasobject:
            return _describe(value)
        if array.dtype.kind not in "biufc":
            return f"{array.dtype} values (e.g. {value!r:.40})"
        first.setdefault(array.shape, row)
        if len(first) > 1:
            (a, ra), (b, rb) = first.items()
            return f"rows of {_rows_of(a, b)} (rows {ra} and {rb} {where})"
        parts.append(array)
    if not parts:
        return "no rows"
    return np.stack(parts)


def numeric_column(name: str, column: np.ndarray) -> np.ndarray:
    """``column`` as a numeric array: an object column (Ray's batch of Python lists or of
    arrays) whose rows are numbers or numeric arrays of one shape is stacked (``np.stack``);
    any other object column raises an error saying what its rows hold."""
    if not column.dtype.hasobject:
        return column
    if len(column) == 0:
        return column.astype(np.float64)
    stacked = _stack_rows(column)
    if not isinstance(stacked, str):
        return stacked
    raise IntroscopeValueError(
        f"introscope.ray: column {name!r} holds Python objects (dtype object) that do not stack "
        f"into one numeric array: {stacked}; every row of a response column must be a number or "
        f"a list/array of numbers of one shape (pad or crop the rows to one shape, e.g. with "
        f"dataset.map_batches), and other columns must be left out (name the response columns "
        f"with responses=, or drop others with dataset.drop_columns([...]))"
    )


def _error_row(info: dict[str, Any]) -> dict[str, np.ndarray]:
    return {
        "entry": np.array([-1], dtype=np.int64),
        "rows": np.zeros(1, dtype=np.int64),
        "blocks": np.zeros(1, dtype=np.int64),
        "state": np.array([encode_state(info)], dtype=object),
        "node": np.array([node_id()], dtype=object),
        "remote_bytes": np.zeros(1, dtype=np.int64),
        "shapes": np.array([encode_shapes({})], dtype=object),
    }


class _BlockProducer:
    """A producer over one block's columns, cut into batches of the requested size."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self._columns = columns
        self._rows = len(next(iter(columns.values()))) if columns else 0

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self._rows, batch_size):
            yield Batch({k: v[start : start + batch_size] for k, v in self._columns.items()})


class BlockAccumulator:
    """Folds every batch of a block into fresh states and returns them encoded (Ray map fn).

    ``responses`` selects the block's columns (all when None); ``stages`` run on each batch
    first. Used directly as a Ray task function when no model is given.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        batch_size: int,
        responses: Sequence[str] | None = None,
        stages: Sequence[PipelineStage] = (),
    ) -> None:
        self.entries = list(entries)
        self.batch_size = batch_size
        self.responses = None if responses is None else list(responses)
        self.stages = list(stages)

    def _columns(self, block: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.responses is None:
            return dict(block)
        missing = [r for r in self.responses if r not in block]
        if missing:
            raise IntroscopeError(
                f"introscope.ray: the dataset has no column {missing} (columns: {sorted(block)}); "
                f"pass responses= naming existing columns, or a model"
            )
        return {r: block[r] for r in self.responses}

    def _source_stages(self) -> list[PipelineStage]:
        return self.stages

    def __call__(self, block: Mapping[str, np.ndarray]) -> dict[str, Any]:
        try:
            return self._accumulate(block)
        except IntroscopeError as exc:
            # Returned, not raised: Ray Data would pass the driver only the message's text
            # (and bad input must not be retried).
            return _error_row(error_info(exc))

    def _accumulate(self, block: Mapping[str, np.ndarray]) -> dict[str, Any]:
        columns = {n: numeric_column(n, c) for n, c in self._columns(block).items()}
        states = [e.new() for e in self.entries]
        producer = pipeline(_BlockProducer(columns), *self._source_stages())
        rows = 0
        fields: list[str] | None = None
        shapes: RowShapes = {}
        for index, batch in enumerate(producer(self.batch_size)):
            current = list(batch.fields)
            if fields is None:
                fields = current
            elif set(current) != set(fields):
                raise IntroscopeError(
                    f"introscope.ray: batch {index} of a block has fields {sorted(current)}, "
                    f"earlier batches had {sorted(fields)}; every batch must carry the same "
                    f"responses"
                )
            for name, value in batch.fields.items():
                shapes.setdefault(name, tuple(int(d) for d in np.shape(value)[1:]))
            for entry, state in zip(self.entries, states, strict=True):
                entry.update_batch(state, batch, index)
            rows += batch.batch_size
        encoded = [encode_state(e.state_dict(s)) for e, s in zip(self.entries, states, strict=True)]
        _LOG.debug("block of %d rows -> %s state bytes", rows, [len(b) for b in encoded])
        return {
            "entry": np.arange(len(encoded), dtype=np.int64),
            "rows": np.full(len(encoded), rows, dtype=np.int64),
            "blocks": np.ones(len(encoded), dtype=np.int64),
            "state": np.array(encoded, dtype=object),
            "node": np.array([node_id()] * len(encoded), dtype=object),
            "remote_bytes": np.zeros(len(encoded), dtype=np.int64),
            "shapes": np.array([encode_shapes(shapes)] * len(encoded), dtype=object),
        }


class ModelBlockAccumulator(BlockAccumulator):
    """:class:`BlockAccumulator` that runs a model first; the model loads once per actor."""

    def __init__(
        self,
        model_factory: Callable[[], Model],
        entries: Sequence[Entry],
        *,
        batch_size: int,
        responses: Sequence[str] | None = None,
        stages: Sequence[PipelineStage] = (),
    ) -> None:
        super().__init__(entries, batch_size=batch_size, stages=stages)
        # An error here is kept and returned as the first block's row (not the actor's death).
        self.model_stage, self.init_error = load_model_stage(
            model_factory, responses, "introscope.ray"
        )

    def __call__(self, block: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.init_error is not None:
            return _error_row(self.init_error)
        return super().__call__(block)

    def _columns(self, block: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(block)

    def _accumulate(self, block: Mapping[str, np.ndarray]) -> dict[str, Any]:
        try:
            return super()._accumulate(block)
        except IntroscopeError as exc:
            hinted = with_ray_input_hint(exc, "introscope.ray.introspect")
            if hinted is exc:
                raise
            raise hinted from exc

    def _source_stages(self) -> list[PipelineStage]:
        # Only called when the model loaded (__call__ returns the error row otherwise).
        assert self.model_stage is not None
        return [self.model_stage, *self.stages]


class StateCombiner:
    """Merges consecutive partial states on a worker, per introspector and in order (Ray map fn).

    A second merge level: the driver then receives one state per ``combine`` blocks. Pure in its
    input rows, so a retried task gives the same output. ``with_model``: the states are of a
    model's responses (for the wording of an error).
    """

    def __init__(self, entries: Sequence[Entry], *, with_model: bool = False) -> None:
        self.entries = list(entries)
        self.with_model = with_model

    def __call__(self, part: Mapping[str, np.ndarray]) -> dict[str, Any]:
        errors = np.flatnonzero(part["entry"] < 0)
        if len(errors):
            return _error_row(decode_state(bytes(part["state"][errors[0]])))
        try:
            return self._combine(part)
        except IntroscopeError as exc:
            # As on the block workers: returned, for the driver to raise with its class.
            return _error_row(error_info(exc))

    def _combine(self, part: Mapping[str, np.ndarray]) -> dict[str, Any]:
        here = node_id()
        merged: dict[int, Any] = {}
        rows: dict[int, int] = {}
        blocks: dict[int, int] = {}
        remote: dict[int, int] = {}
        shapes: dict[int, RowShapes] = {}
        for index, n, b, blob, node, moved, text in zip(
            part["entry"],
            part["rows"],
            part["blocks"],
            part["state"],
            part["node"],
            part["remote_bytes"],
            part["shapes"],
            strict=True,
        ):
            i = int(index)
            entry = self.entries[i]
            data = bytes(blob)
            state = entry.from_state_dict(decode_state(data))
            block_shapes = decode_shapes(text)
            if i in merged:
                try:
                    merged[i] = entry.combined(merged[i], state)
                except StateError as exc:
                    name = conflicting_response(exc, shapes[i], block_shapes)
                    if name is None:
                        raise
                    raise row_shape_error(
                        name, shapes[i][name], block_shapes[name], with_model=self.with_model
                    ) from exc
                shapes[i] = {**block_shapes, **shapes[i]}
            else:
                merged[i], shapes[i] = state, block_shapes
            rows[i] = rows.get(i, 0) + int(n)
            blocks[i] = blocks.get(i, 0) + int(b)
            # A state made on another node came over the network to this combiner.
            remote[i] = remote.get(i, 0) + int(moved) + (len(data) if node != here else 0)
        order = sorted(merged)
        return {
            "entry": np.array(order, dtype=np.int64),
            "rows": np.array([rows[i] for i in order], dtype=np.int64),
            "blocks": np.array([blocks[i] for i in order], dtype=np.int64),
            "state": np.array(
                [encode_state(self.entries[i].state_dict(merged[i])) for i in order], dtype=object
            ),
            "node": np.array([here] * len(order), dtype=object),
            "remote_bytes": np.array([remote[i] for i in order], dtype=np.int64),
            "shapes": np.array([encode_shapes(shapes[i]) for i in order], dtype=object),
        }
