"""Bridges between PyTorch data (``Dataset``/``DataLoader``) and introscope producers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, Union

import numpy as np

from introscope.base import Batch, Producer, concatenate_batches
from introscope.base._producer import check_batch_size, checked_batches
from introscope.exceptions import IntroscopeError

from ._capture import torch_module

_torch = torch_module()  # introscope.torch needs torch; this names the extra if it is missing

__all__ = ["TorchProducer", "ProducerTorchDataset"]

# TorchProducerMapping: how one position of a dataset sample maps to a batch: a field name, a
# metadata key, a callable ``(value, builder) -> None``, or None to drop the value.
# ProducerTorchMapping: how a batch element maps to one position of a dataset sample.
if TYPE_CHECKING:
    from torch.utils.data import IterableDataset as _TorchIterableDataset

    TorchProducerMapping: TypeAlias = Union[
        str, Batch.MetaKey[Any], Batch.DictMetaKey[Any], Callable[..., Any], None
    ]
    ProducerTorchMapping: TypeAlias = Union[
        str, Batch.MetaKey[Any], Batch.DictMetaKey[Any], Callable[..., Any]
    ]
    IterableDataset: TypeAlias = _TorchIterableDataset[tuple[Any, ...]]
else:  # the same aliases, unparametrized as they always were at run time
    TorchProducerMapping = Union[str, Batch.MetaKey, Batch.DictMetaKey, Callable, None]
    ProducerTorchMapping = Union[str, Batch.MetaKey, Batch.DictMetaKey, Callable]
    IterableDataset = _torch.utils.data.IterableDataset


def _check_mapping(mapping: Any, what: str) -> list[Any]:
    if isinstance(mapping, (str, bytes)) or not isinstance(mapping, Sequence):
        raise IntroscopeError(
            f"{what} mapping must be a list (e.g. ['image', labels_key]), got {mapping!r}"
        )
    return list(mapping)


class TorchProducer:
    """A producer of batches from a PyTorch ``DataLoader`` (or ``Dataset``).

    ``mapping`` says, position by position, where each value of a dataset sample goes: a ``str``
    names a field (tensor/array/list -> numpy array), a ``Batch.MetaKey`` or
    ``Batch.DictMetaKey`` names metadata (non-dict values under ``anonymous_field_name``),
    a callable ``(value, builder)`` fills a ``Batch.Builder`` itself, and ``None`` drops the value.

    A ``Dataset`` is batched with the batch size asked for; a ``DataLoader``'s own batches are
    regrouped when the batch size asked for differs from the loader's.

    Examples:
        >>> import torch
        >>> from introscope.base import Batch, peek_first_batch
        >>> from introscope.torch import TorchProducer
        >>> x, y = torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 0])
        >>> dataset = torch.utils.data.TensorDataset(x, y)
        >>> producer = TorchProducer(dataset, ["x", Batch.StdKeys.LABELS])
        >>> batch = peek_first_batch(producer, batch_size=3)
        >>> batch.fields["x"].shape, batch.metadata[Batch.StdKeys.LABELS]["_"]
        ((3, 2), [0, 1, 0])
    """

    def __init__(
        self,
        data_loader: Any,
        mapping: Sequence[TorchProducerMapping],
        anonymous_field_name: str = "_",
    ) -> None:
        torch = torch_module()
        data = torch.utils.data
        if not isinstance(data_loader, (data.DataLoader, data.Dataset)):
            raise IntroscopeError(
                f"TorchProducer needs a torch DataLoader or Dataset, got "
                f"{type(data_loader).__name__}"
            )
        if isinstance(data_loader, data.DataLoader) and data_loader.batch_sampler is None:
            raise IntroscopeError(
                "the DataLoader has automatic batching off (batch_size=None) and yields single "
                "samples; give it a batch_size or pass its Dataset to TorchProducer"
            )
        self.data_loader = data_loader
        self.mapping = _check_mapping(mapping, "TorchProducer")
        for m in self.mapping:
            if not (m is None or isinstance(m, (str, Batch.MetaKey, Batch.DictMetaKey))):
                if not callable(m):
                    raise IntroscopeError(f"TorchProducer cannot use mapping entry {m!r}")
        self.anonymous_field_name = anonymous_field_name

    @property
    def batch_size(self) -> int:
        """The DataLoader's batch size (100 for a Dataset or a loader with a batch sampler).

        Examples:
            >>> import torch
            >>> from introscope.torch import TorchProducer
            >>> dataset = torch.utils.data.TensorDataset(torch.zeros(6, 2))
            >>> loader = torch.utils.data.DataLoader(dataset, batch_size=4)
            >>> TorchProducer(loader, ["x"]).batch_size
            4
        """
        return getattr(self.data_loader, "batch_size", None) or 100

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        data = torch_module().utils.data
        loader = self.data_loader
        if isinstance(loader, data.Dataset):
            loader = data.DataLoader(loader, batch_size=batch_size, shuffle=False)
        elif loader.batch_size != batch_size:
            yield from _rebatch(self._convert_all(loader), batch_size)
            return
        yield from self._convert_all(loader)

    def _convert_all(self, loader: Any) -> Iterator[Batch]:
        for i, sample in enumerate(loader):
            values = list(sample) if isinstance(sample, (list, tuple)) else [sample]
            if len(values) != len(self.mapping):
                raise IntroscopeError(
                    f"batch {i} of the DataLoader holds {len(values)} value(s) per sample but the "
                    f"mapping has {len(self.mapping)} entries; map every position, using None "
                    f"for values to drop"
                )
            builder = Batch.Builder()
            for value, m in zip(values, self.mapping):
                self._transform(value, m, builder)
            yield builder.make_batch()

    def _transform(self, value: Any, mapping: TorchProducerMapping, builder: Batch.Builder) -> None:
        torch = torch_module()
        if mapping is None:
            return
        if isinstance(mapping, str):
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            elif isinstance(value, (list, tuple)):
                value = np.asarray(value)
            elif not isinstance(value, np.ndarray):
                raise IntroscopeError(
                    f"field {mapping!r} got a {type(value).__name__}; expected a tensor, array "
                    f"or list"
                )
            builder.fields[mapping] = value
        elif isinstance(mapping, Batch.MetaKey):
            if isinstance(value, torch.Tensor):
                value = value.tolist()
            elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise IntroscopeError(
                    f"metadata {mapping!r} got a {type(value).__name__}; expected a tensor or a "
                    f"sequence with one value per element"
                )
            builder.metadata[mapping] = list(value)
        elif isinstance(mapping, Batch.DictMetaKey):
            builder.metadata[mapping] = self._dict_metadata(value, mapping)
        else:
            mapping(value, builder)

    def _dict_metadata(self, value: Any, key: Batch.DictMetaKey[Any]) -> dict[str, list[Any]]:
        torch = torch_module()
        anon = self.anonymous_field_name
        if isinstance(value, torch.Tensor):
            return {anon: value.tolist()}
        if isinstance(value, Mapping):
            return {
                str(k): (v.tolist() if isinstance(v, torch.Tensor) else list(v))
                for k, v in value.items()
            }
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            # The default collate turns per-sample sequences into one sequence per position:
            # transpose back to one list per element.
            if value and isinstance(value[0], (list, tuple, torch.Tensor)):
                columns = [v.tolist() if isinstance(v, torch.Tensor) else list(v) for v in value]
                return {anon: [list(row) for row in zip(*columns)]}
            return {anon: list(value)}
        raise IntroscopeError(
            f"metadata {key!r} got a {type(value).__name__}; expected a tensor, sequence or dict"
        )

    def __repr__(self) -> str:
        return f"TorchProducer({type(self.data_loader).__name__}, mapping={self.mapping!r})"


def _rebatch(batches: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    pending: list[Batch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.batch_size
        if count >= batch_size:
            joined = concatenate_batches(pending)
            start = 0
            while count - start >= batch_size:
                yield joined.elements[start : start + batch_size]
                start += batch_size
            pending = [joined.elements[start:]] if start < count else []
            count -= start
    if count:
        yield concatenate_batches(pending)


class ProducerTorchDataset(IterableDataset):
    """A PyTorch ``IterableDataset`` of one tuple per element of a producer's batches.

    ``mapping`` lists what each tuple position holds: a ``str`` copies a field (writable numpy
    array), a ``Batch.MetaKey`` copies metadata, a ``Batch.DictMetaKey`` copies its dict (or the
    single value when it has one entry), and a callable computes a value from the element.
    ``transforms`` maps field names to tensor transforms. With several DataLoader workers each
    worker reads a disjoint share of the producer's batches.

    Examples:
        >>> import numpy as np
        >>> import torch
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.torch import ProducerTorchDataset
        >>> producer = producer_from_batches(Batch({"x": np.arange(6.0).reshape(3, 2)}))
        >>> dataset = ProducerTorchDataset(producer, ["x"])
        >>> loader = torch.utils.data.DataLoader(dataset, batch_size=2)
        >>> [tuple(x.shape) for (x,) in loader]
        [(2, 2), (1, 2)]
    """

    def __init__(
        self,
        producer: Producer,
        mapping: Sequence[ProducerTorchMapping],
        batch_size: int = 100,
        transforms: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        if not callable(producer):
            raise IntroscopeError(
                f"ProducerTorchDataset needs a producer, got {type(producer).__name__}"
            )
        self.producer = producer
        self.mapping = _check_mapping(mapping, "ProducerTorchDataset")
        for m in self.mapping:
            if not (isinstance(m, (str, Batch.MetaKey, Batch.DictMetaKey)) or callable(m)):
                raise IntroscopeError(f"ProducerTorchDataset cannot use mapping entry {m!r}")
        self.batch_size = check_batch_size(batch_size)
        self.transforms = dict(transforms or {})

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        torch = torch_module()
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = checked_batches(self.producer, self.batch_size, what="ProducerTorchDataset")
        for i, batch in enumerate(batches):
            if i % n_workers != worker:
                continue
            for element in batch.elements:
                yield tuple(self._value(element, m) for m in self.mapping)

    def _value(self, element: Batch.ElementType, mapping: ProducerTorchMapping) -> Any:
        if isinstance(mapping, str):
            if mapping not in element.fields:
                raise IntroscopeError(
                    f"ProducerTorchDataset mapping names field {mapping!r} but the batch has "
                    f"{sorted(element.fields)}"
                )
            data = np.array(element.fields[mapping])  # writable copy, as torch expects
            transform = self.transforms.get(mapping)
            if transform is not None:
                torch = torch_module()
                out = transform(torch.from_numpy(data))
                data = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out
            return data
        if isinstance(mapping, Batch.MetaKey):
            return element.metadata[mapping]
        if isinstance(mapping, Batch.DictMetaKey):
            value = element.metadata[mapping]
            return next(iter(value.values())) if len(value) == 1 else dict(value)
        return mapping(element)

    def __repr__(self) -> str:
        return f"ProducerTorchDataset({self.producer!r}, mapping={self.mapping!r})"
