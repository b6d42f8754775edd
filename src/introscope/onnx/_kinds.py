"""Map an ONNX node (its ``op_type`` and attributes) to a :class:`ResponseInfo.LayerKind`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import numpy as np

from introscope.base import ResponseInfo

__all__ = ["node_kind"]

Kind: TypeAlias = ResponseInfo.LayerKind

_FIXED: dict[str, Kind] = {
    "Gemm": Kind.DENSE,
    "Relu": Kind.RELU,
    "LeakyRelu": Kind.LEAKY_RELU,
    "PRelu": Kind.PRELU,
    "Elu": Kind.ELU,
    "Sigmoid": Kind.SIGMOID,
    "Tanh": Kind.TANH,
    "Softmax": Kind.SOFTMAX,
    "Dropout": Kind.DROPOUT,
    "LSTM": Kind.LSTM,
    "GRU": Kind.GRU,
    "RNN": Kind.RNN,
    "LayerNormalization": Kind.LAYER_NORM,
    "Attention": Kind.ATTENTION,
    "MultiHeadAttention": Kind.ATTENTION,
}

# op_type -> kinds for 1, 2 and 3 spatial dimensions
_BY_SPATIAL_RANK: dict[str, tuple[Kind, Kind, Kind]] = {
    "Conv": (Kind.CONV_1D, Kind.CONV_2D, Kind.CONV_3D),
    "ConvInteger": (Kind.CONV_1D, Kind.CONV_2D, Kind.CONV_3D),
    "QLinearConv": (Kind.CONV_1D, Kind.CONV_2D, Kind.CONV_3D),
    "ConvTranspose": (Kind.CONV_TRANSPOSE_1D, Kind.CONV_TRANSPOSE_2D, Kind.CONV_TRANSPOSE_3D),
    "MaxPool": (Kind.MAX_POOLING_1D, Kind.MAX_POOLING_2D, Kind.MAX_POOLING_3D),
    "GlobalMaxPool": (Kind.MAX_POOLING_1D, Kind.MAX_POOLING_2D, Kind.MAX_POOLING_3D),
    "AveragePool": (Kind.AVERAGE_POOLING_1D, Kind.AVERAGE_POOLING_2D, Kind.AVERAGE_POOLING_3D),
    "GlobalAveragePool": (
        Kind.AVERAGE_POOLING_1D,
        Kind.AVERAGE_POOLING_2D,
        Kind.AVERAGE_POOLING_3D,
    ),
    # ONNX BatchNormalization on (N, C) or (N, C, L) is PyTorch's BatchNorm1d.
    "BatchNormalization": (Kind.BATCH_NORM, Kind.BATCH_NORM_2D, Kind.BATCH_NORM_3D),
}


def _spatial_rank(node: Any, output_rank: int | None, constants: Mapping[str, np.ndarray]) -> int:
    for attr in node.attribute:
        if attr.name == "kernel_shape":
            return len(attr.ints)
    if node.op_type in ("Conv", "ConvTranspose", "ConvInteger") and len(node.input) > 1:
        weight = constants.get(node.input[1])
        if weight is not None:
            return weight.ndim - 2
    return (output_rank - 2) if output_rank is not None else 0


def _clip_kind(node: Any, constants: Mapping[str, np.ndarray]) -> Kind:
    bounds: dict[str, float | None] = {"min": None, "max": None}
    for attr in node.attribute:  # opset < 11 keeps the bounds as attributes
        if attr.name in bounds:
            bounds[attr.name] = attr.f
    for key, position in (("min", 1), ("max", 2)):
        if len(node.input) > position and node.input[position]:
            value = constants.get(node.input[position])
            bounds[key] = None if value is None or value.size != 1 else float(value.reshape(()))
    if bounds["min"] == 0.0:
        if bounds["max"] == 6.0:
            return Kind.RELU6
        if bounds["max"] is None:
            return Kind.RELU
    return Kind.UNKNOWN


_SPECIAL: dict[str, Callable[[Any, Mapping[str, np.ndarray]], Kind]] = {"Clip": _clip_kind}


def node_kind(
    node: Any, output_rank: int | None, constants: Mapping[str, np.ndarray]
) -> ResponseInfo.LayerKind:
    """The layer kind of an ONNX ``NodeProto``.

    ``output_rank`` is the rank of the node's first output when shape inference knows it;
    ``constants`` maps initializer and ``Constant`` outputs to their values.
    """
    op = node.op_type
    if op in _FIXED:
        return _FIXED[op]
    if op in _SPECIAL:
        return _SPECIAL[op](node, constants)
    if op in _BY_SPATIAL_RANK:
        rank = _spatial_rank(node, output_rank, constants)
        kinds = _BY_SPATIAL_RANK[op]
        if op == "BatchNormalization":
            return kinds[min(max(rank, 1), 3) - 1]
        return kinds[rank - 1] if 1 <= rank <= 3 else Kind.UNKNOWN
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        # A MatMul by a stored weight is a dense layer; between two activations (attention
        # scores, for example) it is not.
        i = 3 if op == "QLinearMatMul" else 1
        if len(node.input) > i and node.input[i] in constants:
            return Kind.DENSE
    return Kind.UNKNOWN
