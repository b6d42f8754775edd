"""One pass over the report's producer: identifiers, labels and every response, buffered."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

import numpy as np

from introscope._progress import progress
from introscope.base import Batch, Producer
from introscope.base._producer import checked_batches
from introscope.exceptions import IntroscopeValueError

__all__ = ["Collected", "collect"]

_SCALARS = (str, int, float, bool, np.str_, np.integer, np.floating, np.bool_, type(None))


class _GrowingArray:
    """Rows appended batch by batch into one array whose capacity doubles when full (the first
    batch only sets the width and dtype)."""

    def __init__(self, first: np.ndarray) -> None:
        self.width = first.shape[1:]
        self.buffer = np.empty((max(2 * len(first), 1024), *self.width), dtype=first.dtype)
        self.size = 0

    def append(self, rows: np.ndarray) -> None:
        end = self.size + len(rows)
        dtype = np.result_type(self.buffer.dtype, rows.dtype)
        if end > len(self.buffer) or dtype != self.buffer.dtype:
            capacity = len(self.buffer)
            while capacity < end:
                capacity *= 2
            grown = np.empty((capacity, *self.width), dtype=dtype)
            grown[: self.size] = self.buffer[: self.size]
            self.buffer = grown
        self.buffer[self.size : end] = rows
        self.size = end

    def array(self) -> np.ndarray:
        return self.buffer[: self.size]


@dataclasses.dataclass(frozen=True)
class Collected:
    """What the report needs from the producer, read in one pass."""

    ids: list[str]
    labels: dict[str, list[str]]
    responses: dict[str, np.ndarray]
    batches: int


def _check_label_values(dim: str, values: list[Any], batch_index: int) -> list[str]:
    for position, value in enumerate(values):
        if not isinstance(value, _SCALARS) and not (
            isinstance(value, Hashable) and not isinstance(value, np.ndarray)
        ):
            raise IntroscopeValueError(
                f"DatasetReport: label {dim!r} of element {position} in batch {batch_index} is a "
                f"{type(value).__name__}; Batch.StdKeys.LABELS needs one hashable value (a str, "
                f"number or tuple) per element and label dimension. Give each label its own "
                f"dimension, or join several values into one string"
            )
    return [v if type(v) is str else str(v) for v in values]


def _check_response(name: str, array: np.ndarray, batch_index: int) -> None:
    if array.ndim != 2:
        raise IntroscopeValueError(
            f"DatasetReport: response {name!r} has shape {array.shape[1:]} per element in batch "
            f"{batch_index}; the report needs one vector per element (2-D responses). Add "
            f"introscope.processors.Pooler (spatial pooling) or Flattener to the pipeline"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise IntroscopeValueError(
            f"DatasetReport: response {name!r} has dtype {array.dtype} in batch {batch_index}; "
            f"the report needs numeric responses"
        )
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise IntroscopeValueError(
            f"DatasetReport: response {name!r} holds {bad} NaN/Inf value(s) in batch "
            f"{batch_index}; fix or drop those elements before the report (familiarity, "
            f"duplicates and projections are undefined for them)"
        )


def collect(producer: Producer, batch_size: int, *, keep_responses: bool) -> Collected:
    """Call ``producer(batch_size)`` once and buffer identifiers, labels and responses."""
    ids: list[str] = []
    labels: dict[str, list[str]] | None = None
    buffers: dict[str, _GrowingArray] = {}
    field_names: list[str] | None = None
    index = -1
    batches = checked_batches(producer, batch_size, what="DatasetReport producer")
    for index, batch in enumerate(progress(batches, "DatasetReport")):
        metadata = batch.metadata
        if Batch.StdKeys.IDENTIFIER not in metadata:
            raise IntroscopeValueError(
                f"DatasetReport: batch {index} has no Batch.StdKeys.IDENTIFIER metadata; the "
                f"report needs one identifier per element (Symphony shows and links data by it). "
                f"Set builder.metadata[Batch.StdKeys.IDENTIFIER] = [...] in the producer"
            )
        ids.extend(str(v) for v in metadata[Batch.StdKeys.IDENTIFIER])

        batch_labels = metadata[Batch.StdKeys.LABELS] if Batch.StdKeys.LABELS in metadata else {}
        if labels is None:
            labels = {dim: [] for dim in batch_labels}
        elif set(batch_labels) != set(labels):
            raise IntroscopeValueError(
                f"DatasetReport: batch {index} has label dimensions {list(batch_labels)} but "
                f"earlier batches have {list(labels)}; every element needs a value for every "
                f"label dimension (Batch.StdKeys.LABELS)"
            )
        for dim, values in batch_labels.items():
            labels[dim].extend(_check_label_values(dim, values, index))

        if field_names is None:
            field_names = list(batch.fields)
        elif list(batch.fields) != field_names:
            raise IntroscopeValueError(
                f"DatasetReport: batch {index} has fields {list(batch.fields)} but batch 0 has "
                f"{field_names}; every batch needs the same responses"
            )
        if not keep_responses:
            continue
        for name, array in batch.fields.items():
            _check_response(name, array, index)
            if name not in buffers:
                buffers[name] = _GrowingArray(array)
            if array.shape[1:] != buffers[name].width:
                raise IntroscopeValueError(
                    f"DatasetReport: response {name!r} has {array.shape[1]} dimensions in batch "
                    f"{index} but {buffers[name].width[0]} in batch 0; every batch needs the "
                    f"same response width"
                )
            buffers[name].append(array)

    if keep_responses and not buffers:
        raise IntroscopeValueError(
            "DatasetReport: the producer's batches have no fields; familiarity, duplicates and "
            "projection need model responses (set them to None in ReportConfig to build only "
            "the summary)"
        )
    return Collected(
        ids=ids,
        labels=labels or {},
        responses={name: buf.array() for name, buf in buffers.items()},
        batches=index + 1,
    )
