"""Map ``torch.nn`` module types to :class:`ResponseInfo.LayerKind`."""

from __future__ import annotations

from typing import TypeAlias

from introscope.base import ResponseInfo

__all__ = ["layer_kind"]

_Kind: TypeAlias = ResponseInfo.LayerKind

# Class names of torch.nn, looked up along a module's MRO so subclasses inherit their base kind.
_KINDS: dict[str, _Kind] = {
    "Linear": _Kind.LINEAR,
    "LazyLinear": _Kind.LINEAR,
    "Embedding": _Kind.EMBEDDING,
    "EmbeddingBag": _Kind.EMBEDDING,
    "Conv1d": _Kind.CONV_1D,
    "Conv2d": _Kind.CONV_2D,
    "Conv3d": _Kind.CONV_3D,
    "LazyConv1d": _Kind.CONV_1D,
    "LazyConv2d": _Kind.CONV_2D,
    "LazyConv3d": _Kind.CONV_3D,
    "ConvTranspose1d": _Kind.CONV_TRANSPOSE_1D,
    "ConvTranspose2d": _Kind.CONV_TRANSPOSE_2D,
    "ConvTranspose3d": _Kind.CONV_TRANSPOSE_3D,
    "LazyConvTranspose1d": _Kind.CONV_TRANSPOSE_1D,
    "LazyConvTranspose2d": _Kind.CONV_TRANSPOSE_2D,
    "LazyConvTranspose3d": _Kind.CONV_TRANSPOSE_3D,
    "MaxPool1d": _Kind.MAX_POOLING_1D,
    "MaxPool2d": _Kind.MAX_POOLING_2D,
    "MaxPool3d": _Kind.MAX_POOLING_3D,
    "AdaptiveMaxPool1d": _Kind.MAX_POOLING_1D,
    "AdaptiveMaxPool2d": _Kind.MAX_POOLING_2D,
    "AdaptiveMaxPool3d": _Kind.MAX_POOLING_3D,
    "AvgPool1d": _Kind.AVERAGE_POOLING_1D,
    "AvgPool2d": _Kind.AVERAGE_POOLING_2D,
    "AvgPool3d": _Kind.AVERAGE_POOLING_3D,
    "AdaptiveAvgPool1d": _Kind.AVERAGE_POOLING_1D,
    "AdaptiveAvgPool2d": _Kind.AVERAGE_POOLING_2D,
    "AdaptiveAvgPool3d": _Kind.AVERAGE_POOLING_3D,
    "RNN": _Kind.RNN,
    "RNNCell": _Kind.RNN,
    "LSTM": _Kind.LSTM,
    "LSTMCell": _Kind.LSTM,
    "GRU": _Kind.GRU,
    "GRUCell": _Kind.GRU,
    "BatchNorm1d": _Kind.BATCH_NORM,
    "BatchNorm2d": _Kind.BATCH_NORM_2D,
    "BatchNorm3d": _Kind.BATCH_NORM_3D,
    "LazyBatchNorm1d": _Kind.BATCH_NORM,
    "LazyBatchNorm2d": _Kind.BATCH_NORM_2D,
    "LazyBatchNorm3d": _Kind.BATCH_NORM_3D,
    "SyncBatchNorm": _Kind.BATCH_NORM,
    "LayerNorm": _Kind.LAYER_NORM,
    "Dropout": _Kind.DROPOUT,
    "Dropout1d": _Kind.DROPOUT,
    "AlphaDropout": _Kind.DROPOUT,
    "Dropout2d": _Kind.DROPOUT_2D,
    "Dropout3d": _Kind.DROPOUT_3D,
    "Sigmoid": _Kind.SIGMOID,
    "Tanh": _Kind.TANH,
    "ReLU": _Kind.RELU,
    "ReLU6": _Kind.RELU6,
    "LeakyReLU": _Kind.LEAKY_RELU,
    "PReLU": _Kind.PRELU,
    "ELU": _Kind.ELU,
    "Softmax": _Kind.SOFTMAX,
    "MultiheadAttention": _Kind.ATTENTION,
}


def layer_kind(module: object) -> ResponseInfo.LayerKind:
    """The ``ResponseInfo.LayerKind`` of a ``torch.nn`` module (``UNKNOWN`` if none fits).

    Examples:
        >>> import torch
        >>> from introscope.torch import layer_kind
        >>> layer_kind(torch.nn.Conv2d(1, 2, 3)).name, layer_kind(torch.nn.ReLU()).name
        ('CONV_2D', 'RELU')
        >>> layer_kind(torch.nn.Identity()).name
        'UNKNOWN'
    """
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.") and cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
    return _Kind.UNKNOWN
