"""Stages that reshape, rescale, rename, remove or join fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast

import numpy as np

from introscope.base import Batch, PipelineStage
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone, OneOrMany

from ._base import Processor, check_names_present, resolve_fields

__all__ = [
    "MeanStdNormalizer",
    "Transposer",
    "Flattener",
    "FieldRemover",
    "FieldRenamer",
    "Concatenator",
]

_V = TypeVar("_V")


class MeanStdNormalizer(Processor):
    """Standardises fields: ``(x - mean) / std``.

    ``mean`` and ``std`` may be numbers or arrays that broadcast against each field.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import MeanStdNormalizer
        >>> batch = Batch({"x": np.array([[2.0, 4.0], [6.0, 8.0]])})
        >>> normalize = MeanStdNormalizer(mean=4.0, std=2.0)
        >>> normalized = pipeline(producer_from_batches(batch), normalize)
        >>> peek_first_batch(normalized, batch_size=2).fields["x"]
        array([[-1.,  0.],
               [ 1.,  2.]])
    """

    _needs_numbers = True

    def __init__(
        self,
        mean: float | np.ndarray,
        std: float | np.ndarray,
        *,
        fields: OneManyOrNone[str] = None,
    ) -> None:
        mean_arr = np.asarray(mean)
        std_arr = np.asarray(std)
        for name, arr in (("mean", mean_arr), ("std", std_arr)):
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise IntroscopeValueError(
                    f"MeanStdNormalizer: {name} must be finite numbers, got {arr!r}"
                )
        if np.any(std_arr == 0):
            raise IntroscopeValueError(f"MeanStdNormalizer: std must be non-zero, got {std!r}")
        self.mean = mean
        self.std = std

        def normalize(data: np.ndarray) -> np.ndarray:
            if mean_arr.ndim or std_arr.ndim:
                _check_broadcasts(data.shape, mean_arr.shape, std_arr.shape)
            if np.issubdtype(data.dtype, np.inexact):
                # The values as given: Python scalars are weakly typed, so float32 data stays
                # float32 as in DNIKit (a 0-d float64 array would promote it to float64).
                return cast(np.ndarray, np.divide(data - mean, std))
            # Integer data: 0-d arrays promote, where a Python int would wrap (uint8 - 128).
            return cast(np.ndarray, np.divide(data - mean_arr, std_arr))

        super().__init__(normalize, fields=fields)


def _check_broadcasts(shape: tuple[int, ...], mean: tuple[int, ...], std: tuple[int, ...]) -> None:
    """Refuse a mean or std that does not broadcast to a batch of ``shape`` unchanged."""
    try:
        fits = np.broadcast_shapes(shape, mean, std) == shape
    except ValueError:
        fits = False
    if not fits:
        raise IntroscopeValueError(
            f"MeanStdNormalizer: mean of shape {mean} and std of shape {std} do not broadcast "
            f"to a batch of shape {shape}; give one value, or one per channel shaped to align "
            f"with the data's trailing axes (e.g. (C,) for channels-last, (C, 1, 1) for CHW)"
        )


class Transposer(Processor):
    """Reorders the dimensions of fields with ``numpy.transpose(x, dim)``.

    Args:
        dim: the new order of dimensions; ``dim[0]`` must be 0 (the batch stays first).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Transposer
        >>> batch = Batch({"x": np.zeros((2, 3, 4))})
        >>> out = peek_first_batch(pipeline(producer_from_batches(batch), Transposer([0, 2, 1])), 2)
        >>> out.fields["x"].shape
        (2, 4, 3)
    """

    def __init__(self, dim: Sequence[int], *, fields: OneManyOrNone[str] = None) -> None:
        dims = tuple(int(d) for d in dim)
        if not dims or dims[0] != 0:
            raise IntroscopeValueError(
                f"Transposer: dim must start with 0 (dimension 0 is the batch and cannot move), "
                f"got {tuple(dim)}"
            )
        if sorted(dims) != list(range(len(dims))):
            raise IntroscopeValueError(
                f"Transposer: dim must be a permutation of 0..{len(dims) - 1}, got {dims}"
            )
        self.dim = dims
        super().__init__(np.transpose, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        if array.ndim != len(self.dim):
            raise IntroscopeError(
                f"Transposer: dim={self.dim} needs {len(self.dim)}-d fields, but field {name!r} "
                f"has shape {array.shape}"
            )
        return np.transpose(array, self.dim)


class Flattener(Processor):
    """Reshapes fields of shape ``(B, N1, N2, ...)`` to ``(B, N1*N2*...)``.

    Args:
        order: ``"C"`` (row-major, default), ``"F"`` (column-major), ``"A"`` or ``"K"``, as
            ``numpy.ndarray.flatten`` applied to each element.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Flattener
        >>> batch = Batch({"x": np.arange(8).reshape(2, 2, 2)})
        >>> peek_first_batch(pipeline(producer_from_batches(batch), Flattener()), 2).fields["x"]
        array([[0, 1, 2, 3],
               [4, 5, 6, 7]])
        >>> peek_first_batch(pipeline(producer_from_batches(batch), Flattener("F")), 2).fields["x"]
        array([[0, 2, 1, 3],
               [4, 6, 5, 7]])
    """

    def __init__(self, order: str = "C", fields: OneManyOrNone[str] = None) -> None:
        if order not in ("C", "F", "A", "K"):
            raise IntroscopeValueError(
                f"Flattener: order must be 'C', 'F', 'A' or 'K', got {order!r}"
            )
        self.order = order

        def flatten(data: np.ndarray) -> np.ndarray:
            n = data.shape[0]
            size = int(np.prod(data.shape[1:], dtype=np.int64))
            if order == "C" or data.ndim <= 2:
                return data.reshape(n, size)
            if order == "F":
                # Column-major within each element = row-major of the reversed trailing axes.
                axes = (0, *range(data.ndim - 1, 0, -1))
                return np.transpose(data, axes).reshape(n, size)
            if n == 0:
                return data.reshape(0, size)
            return np.stack([element.flatten(order) for element in data])

        super().__init__(flatten, fields=fields)


class FieldRemover(PipelineStage):
    """Removes the named fields (or, with ``keep=True``, every field except them).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import FieldRemover
        >>> batch = Batch({"a": np.zeros(2), "b": np.ones(2), "c": np.ones(2)})
        >>> source = producer_from_batches(batch)
        >>> sorted(peek_first_batch(pipeline(source, FieldRemover("a")), 2).fields)
        ['b', 'c']
        >>> sorted(peek_first_batch(pipeline(source, FieldRemover("a", keep=True)), 2).fields)
        ['a']
    """

    def __init__(self, fields: OneOrMany[str], *, keep: bool = False) -> None:
        names = resolve_fields(fields)
        if not names:
            raise IntroscopeValueError("FieldRemover: fields must name at least one field")
        self._fields = names
        self._keep = bool(keep)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        names, keep = self._fields, self._keep

        def process(batch: Batch) -> Batch:
            check_names_present("FieldRemover", names, batch.fields.keys())
            builder = Batch.Builder(base=batch)
            builder.fields = {n: a for n, a in batch.fields.items() if (n in names) == keep}
            if not builder.fields and not batch.metadata:
                raise IntroscopeError(
                    f"FieldRemover(fields={sorted(names)}, keep={keep}) would remove every field "
                    f"of a batch that has no metadata; nothing would be left"
                )
            return builder.make_batch()

        return process

    def __repr__(self) -> str:
        return f"FieldRemover(fields={sorted(self._fields)}, keep={self._keep})"


def rename_keys(mapping: Mapping[str, str], data: Mapping[str, _V]) -> dict[str, _V]:
    """Rename keys of ``data``; a key overwritten by a rename target (and not renamed) is dropped."""
    targets = set(mapping.values()) - set(mapping)
    return {mapping.get(k, k): v for k, v in data.items() if k not in targets}


def check_rename_mapping(stage: str, mapping: Mapping[str, str]) -> dict[str, str]:
    """Validate a str -> str rename mapping whose targets are distinct."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{stage}: mapping must be a dict of old name -> new name")
    for old, new in mapping.items():
        if not isinstance(old, str) or not isinstance(new, str):
            raise TypeError(f"{stage}: mapping must be str -> str, got {old!r} -> {new!r}")
    targets = list(mapping.values())
    duplicates = sorted({t for t in targets if targets.count(t) > 1})
    if duplicates:
        raise IntroscopeValueError(f"{stage}: several names are renamed to {duplicates}")
    return dict(mapping)


class FieldRenamer(PipelineStage):
    """Renames fields by ``mapping`` (old -> new); a field a rename lands on is replaced.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import FieldRenamer
        >>> batch = Batch({"conv1": np.zeros(2), "fc": np.ones(2)})
        >>> renamed = pipeline(producer_from_batches(batch), FieldRenamer({"conv1": "features"}))
        >>> sorted(peek_first_batch(renamed, batch_size=2).fields)
        ['fc', 'features']
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = check_rename_mapping("FieldRenamer", mapping)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        mapping = self._mapping

        def process(batch: Batch) -> Batch:
            check_names_present("FieldRenamer", mapping, batch.fields.keys())
            builder = Batch.Builder(base=batch)
            builder.fields = rename_keys(mapping, batch.fields)
            return builder.make_batch()

        return process

    def __repr__(self) -> str:
        return f"FieldRenamer({self._mapping})"


class Concatenator(PipelineStage):
    """Adds field ``output_field``: the named fields joined along dimension ``dim`` (not 0).

    Example: fields of shapes ``(B, M, Z)`` and ``(B, N, Z)`` joined on ``dim=1`` give
    ``(B, M+N, Z)``. The source fields stay.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Concatenator
        >>> batch = Batch({"a": np.array([[1], [2]]), "b": np.array([[3, 4], [5, 6]])})
        >>> joined = pipeline(producer_from_batches(batch), Concatenator(1, "ab", ["a", "b"]))
        >>> peek_first_batch(joined, batch_size=2).fields["ab"]
        array([[1, 3, 4],
               [2, 5, 6]])
    """

    def __init__(self, dim: int, output_field: str, fields: Sequence[str]) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim == 0:
            raise IntroscopeValueError(
                f"Concatenator: dim must be a non-zero int (0 is the batch dimension), got {dim!r}"
            )
        if not isinstance(output_field, str) or not output_field:
            raise IntroscopeValueError(
                f"Concatenator: output_field must be a str, got {output_field!r}"
            )
        names = [fields] if isinstance(fields, str) else list(fields)
        if not names or not all(isinstance(n, str) for n in names):
            raise IntroscopeValueError(
                f"Concatenator: fields must be a non-empty list of str, got {fields!r}"
            )
        self.dim = int(dim)
        self.output_field = output_field
        self.fields = tuple(names)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        dim, output, names = self.dim, self.output_field, self.fields

        def process(batch: Batch) -> Batch:
            check_names_present("Concatenator", names, batch.fields.keys())
            arrays = [batch.fields[n] for n in names]
            shapes = {n: a.shape for n, a in zip(names, arrays)}
            ndims = {a.ndim for a in arrays}
            if len(ndims) != 1:
                raise IntroscopeError(
                    f"Concatenator: fields must have the same number of dimensions, got {shapes}"
                )
            ndim = ndims.pop()
            if not -ndim <= dim < ndim or dim % ndim == 0:
                raise IntroscopeError(
                    f"Concatenator: dim={dim} is not a non-batch dimension of fields with "
                    f"shapes {shapes}"
                )
            axis = dim % ndim
            rest = {n: s[:axis] + s[axis + 1 :] for n, s in shapes.items()}
            if len(set(rest.values())) != 1:
                raise IntroscopeError(
                    f"Concatenator: fields must match in every dimension but {dim}, got {shapes}"
                )
            builder = Batch.Builder(base=batch)
            builder.fields[output] = np.concatenate(arrays, axis=axis)
            return builder.make_batch()

        return process

    def __repr__(self) -> str:
        return f"Concatenator(dim={self.dim}, output_field={self.output_field!r}, fields={list(self.fields)})"
