"""ONNX protobufs read as numpy: tensor types (dtype and shape) and constant values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np

from introscope.exceptions import require

__all__ = ["Constants", "Dim", "Shape", "TensorType", "format_shape", "onnx", "ort", "tensor_type"]

#: One dimension of an inferred shape: a size, a symbol (``dim_param``) or ``None`` (unknown).
Dim = int | str | None
#: An inferred shape, or ``None`` when even the rank is unknown.
Shape = tuple[Dim, ...] | None
TensorType = tuple[np.dtype, Shape]


def onnx() -> Any:
    """The ``onnx`` module, or a ``MissingDependencyError`` naming the extra."""
    return require("onnx", "onnx", "ONNX models")


def ort() -> Any:
    """The ``onnxruntime`` module, or a ``MissingDependencyError`` naming the extra."""
    return require("onnxruntime", "onnx", "running ONNX models")


def tensor_type(value_info: Any) -> TensorType | None:
    """(dtype, shape) of a tensor ValueInfoProto; ``None`` for sequences, maps and unknowns."""
    if value_info is None or value_info.type.WhichOneof("value") != "tensor_type":
        return None
    tensor = value_info.type.tensor_type
    if tensor.elem_type == 0:
        return None
    try:
        dtype = np.dtype(onnx().helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    except (KeyError, TypeError, ValueError):
        return None
    if not tensor.HasField("shape"):
        return dtype, None
    dims: list[Dim] = []
    for dim in tensor.shape.dim:
        which = dim.WhichOneof("value")
        dims.append(
            dim.dim_value
            if which == "dim_value"
            else dim.dim_param
            if which == "dim_param"
            else None
        )
    return dtype, tuple(dims)


def format_shape(shape: Shape | tuple[int, ...]) -> str:
    """``(N, 7, ?)``: symbols by name, unknown sizes as ``?``."""
    if shape is None:
        return "unknown"
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


class Constants(Mapping[str, np.ndarray]):
    """Initializers and ``Constant`` node values by name, converted to numpy only when read."""

    def __init__(self, graph: Any) -> None:
        self._protos: dict[str, Any] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self._protos[node.output[0]] = attr.t
        self.node_outputs = {
            out for node in graph.node if node.op_type == "Constant" for out in node.output
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return cast(np.ndarray, onnx().numpy_helper.to_array(self._protos[name]))

    def __contains__(self, name: object) -> bool:
        return name in self._protos

    def __iter__(self) -> Iterator[str]:
        return iter(self._protos)

    def __len__(self) -> int:
        return len(self._protos)
