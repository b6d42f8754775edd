"""``ResponseInfo``: name, dtype, shape and producing layer of one model response."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

__all__ = ["ResponseInfo", "SPATIAL_KINDS", "FEATURES_LAST_KINDS", "channels_first_axis"]


class _LayerKind(enum.Enum):
    """Framework-neutral kinds of layer (the values DNIKit 2.0 uses)."""

    UNKNOWN = 0
    LINEAR = 1000
    DENSE = 1000
    PLACEHOLDER = 1001
    EMBEDDING = 1002  # introscope's addition: a look-up table (features last), not in DNIKit
    CONV_1D = 2000
    CONV_2D = 2001
    CONV_3D = 2002
    CONV_TRANSPOSE_1D = 2003
    CONV_TRANSPOSE_2D = 2004
    CONV_TRANSPOSE_3D = 2005
    MAX_POOLING_1D = 3000
    MAX_POOLING_2D = 3001
    MAX_POOLING_3D = 3003
    AVERAGE_POOLING_1D = 3004
    AVERAGE_POOLING_2D = 3005
    AVERAGE_POOLING_3D = 3006
    RNN = 4000
    LSTM = 4001
    GRU = 4002
    BATCH_NORM = 5000
    BATCH_NORM_2D = 5001
    BATCH_NORM_3D = 5002
    LAYER_NORM = 5003
    DROPOUT = 6000
    DROPOUT_2D = 6001
    DROPOUT_3D = 6002
    SIGMOID = 8000
    TANH = 8001
    RELU = 8002
    LEAKY_RELU = 8003
    PRELU = 8004
    ELU = 8005
    SOFTMAX = 8006
    ATTENTION = 8007
    RELU6 = 8008


@dataclass(frozen=True)
class _Layer:
    """The layer that produced a response: its name, generic kind and framework type name."""

    name: str
    kind: _LayerKind
    typename: str


class _ResponseInfoNames:
    """Nested names of ``ResponseInfo`` that are not dataclass fields.

    An annotated name in the dataclass body would be a field; a ``TypeAlias`` here, inherited,
    lets type checkers take ``ResponseInfo.Layer`` and ``ResponseInfo.LayerKind`` as the
    classes in annotations.
    """

    __slots__ = ()

    Layer: TypeAlias = _Layer
    LayerKind: TypeAlias = _LayerKind


@dataclass(frozen=True)
class ResponseInfo(_ResponseInfoNames):
    """Description of one model response (a layer output).

    ``shape`` includes the batch dimension, usually ``None``. ``channel_axis`` (beyond DNIKit,
    optional) is the axis of the channels, counted with the batch axis, when the adapter knows the
    layout of a convolution-like response: 1 for PyTorch, ONNX and Keras ``channels_first``, -1 for
    Keras ``channels_last``; ``None`` when unknown or not applicable.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import ResponseInfo
        >>> info = ResponseInfo(
        ...     name="conv1",
        ...     dtype=np.dtype(np.float32),
        ...     shape=(None, 8, 4, 4),
        ...     layer=ResponseInfo.Layer("conv1", ResponseInfo.LayerKind.CONV_2D, "Conv2d"),
        ...     channel_axis=1,
        ... )
        >>> info.shape[info.channel_axis]
        8
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    layer: _Layer
    channel_axis: int | None = None


#: Layer kinds whose outputs have channels and spatial positions, in every framework.
SPATIAL_KINDS = frozenset(
    {
        _LayerKind.CONV_1D,
        _LayerKind.CONV_2D,
        _LayerKind.CONV_3D,
        _LayerKind.CONV_TRANSPOSE_1D,
        _LayerKind.CONV_TRANSPOSE_2D,
        _LayerKind.CONV_TRANSPOSE_3D,
        _LayerKind.MAX_POOLING_1D,
        _LayerKind.MAX_POOLING_2D,
        _LayerKind.MAX_POOLING_3D,
        _LayerKind.AVERAGE_POOLING_1D,
        _LayerKind.AVERAGE_POOLING_2D,
        _LayerKind.AVERAGE_POOLING_3D,
        _LayerKind.BATCH_NORM_2D,
        _LayerKind.BATCH_NORM_3D,
        _LayerKind.DROPOUT_2D,
        _LayerKind.DROPOUT_3D,
    }
)

#: Layer kinds that act on the last axis: with positions (a sequence), their features are last.
FEATURES_LAST_KINDS = frozenset(
    {
        _LayerKind.DENSE,
        _LayerKind.EMBEDDING,
        _LayerKind.RNN,
        _LayerKind.LSTM,
        _LayerKind.GRU,
        _LayerKind.ATTENTION,
        _LayerKind.LAYER_NORM,
    }
)

#: ``inherited`` value of ``channels_first_axis`` when nothing upstream is known.
UNKNOWN_UPSTREAM = object()


def channels_first_axis(
    kind: _LayerKind, rank: int, inherited: int | None | object = UNKNOWN_UPSTREAM
) -> int | None:
    """The channel axis of a response in a channels-first framework (PyTorch, ONNX).

    ``rank`` counts the batch axis. Convolution-like layers give axis 1; layers that act on the
    last axis (dense, recurrent, attention, layer norm) give -1; any other response (activations,
    element-wise sums, normalisations) takes ``inherited``, the layout of the tensor it was
    computed from, when the adapter knows it (None: no channel axis, e.g. for what is computed
    from a (batch, sequence, features) model input), and otherwise NCL / NCHW / NCDHW by rank.
    """
    if rank < 3:
        return None
    if kind in SPATIAL_KINDS:
        return 1
    if kind in FEATURES_LAST_KINDS:
        return -1
    if inherited is not UNKNOWN_UPSTREAM:
        return inherited  # type: ignore[return-value]
    return 1
