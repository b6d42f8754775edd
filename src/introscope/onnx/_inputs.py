"""The inputs of an ONNX graph: which are batched (fed from batch fields) and which are fixed.

Also what the inferred shapes alone say about a tensor following the batch, for when no dry run
(``_dry_run``) can tell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from introscope.base._model import unknown_name_error
from introscope.exceptions import IntroscopeError

from ._proto import Dim, Shape, TensorType, format_shape, tensor_type

__all__ = ["GraphInputs", "is_dynamic", "read_inputs", "static_follows"]


@dataclass
class GraphInputs:
    """The graph's inputs: those fed from batch fields, and those given once at load."""

    fed: dict[str, TensorType]
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    #: the batch size the graph was exported for, when every fed input fixes it
    static_batch: int | None = None

    @property
    def batch_symbols(self) -> frozenset[str]:
        """The ``dim_param`` names of the fed inputs' dimension 0."""
        return frozenset(s[0] for _, s in self.fed.values() if s and isinstance(s[0], str))


def is_dynamic(dim: Dim) -> bool:
    """Whether an input dimension may take any size (a symbol, unknown, or 0 / -1)."""
    return not isinstance(dim, int) or dim <= 0


def _fixed_value(name: str, declared: TensorType, value: Any) -> np.ndarray:
    dtype, shape = declared
    array = np.asarray(value)
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise IntroscopeError(
                f"fixed_inputs[{name!r}] has dtype {array.dtype}; the ONNX model expects {dtype}"
            )
        array = array.astype(dtype)
    if shape is not None and (
        array.ndim != len(shape)
        or any(not is_dynamic(d) and d != a for d, a in zip(shape, array.shape))
    ):
        raise IntroscopeError(
            f"fixed_inputs[{name!r}] has shape {array.shape}; the ONNX model expects "
            f"{format_shape(shape)}"
        )
    return np.ascontiguousarray(array)


def _not_batched(name: str, why: str) -> IntroscopeError:
    return IntroscopeError(
        f"ONNX graph input {name!r} {why}, so it is not batched; introscope feeds every input "
        f"from a batch field whose dimension 0 is the batch. Give its value once with "
        f"load_onnx_model(..., fixed_inputs={{{name!r}: value}})"
    )


def read_inputs(graph: Any, fixed_inputs: Mapping[str, Any] | None) -> GraphInputs:
    """The graph's inputs, refusing any that is not batched like the others unless it is fixed."""
    initializers = {t.name for t in graph.initializer}
    declared: dict[str, TensorType] = {}
    for vi in graph.input:
        if vi.name in initializers:  # old exporters list weights as inputs with defaults
            continue
        typed = tensor_type(vi)
        if typed is None:
            raise IntroscopeError(
                f"ONNX graph input {vi.name!r} is not a tensor with a known element type; "
                f"only tensor inputs are supported"
            )
        declared[vi.name] = typed
    fixed_inputs = dict(fixed_inputs or {})
    unknown = set(fixed_inputs) - set(declared)
    if unknown:
        raise unknown_name_error("ONNX graph input in fixed_inputs", unknown, declared)
    fixed = {n: _fixed_value(n, declared[n], v) for n, v in fixed_inputs.items()}
    fed = {n: t for n, t in declared.items() if n not in fixed}
    if not fed:
        raise IntroscopeError(
            "the ONNX graph has no inputs to feed from batches"
            + (" (every input is in fixed_inputs)" if fixed else "")
        )
    for name, (_, shape) in fed.items():
        if shape == ():
            raise _not_batched(name, "is a scalar (shape ())")
    dynamic = [n for n, (_, s) in fed.items() if s is None or is_dynamic(s[0])]
    # not dynamic: an int
    sizes = {
        n: cast(int, s[0]) for n, (_, s) in fed.items() if s is not None and not is_dynamic(s[0])
    }
    if dynamic and sizes:
        name, size = next(iter(sizes.items()))
        raise _not_batched(
            name,
            f"has the fixed size {size} on dimension 0 while {dynamic[0]!r} has a dynamic batch",
        )
    if len(set(sizes.values())) > 1:
        raise IntroscopeError(
            f"the ONNX graph inputs have different fixed sizes on dimension 0 ({sizes}), so "
            f"introscope cannot tell which of them are batched; give the value of each input that "
            f"is not batched with load_onnx_model(..., fixed_inputs={{name: value}})"
        )
    static = next(iter(sizes.values())) if sizes else None
    return GraphInputs(fed, fixed, static)


def static_follows(shape: Shape, inputs: GraphInputs) -> bool:
    """Whether an inferred shape says dimension 0 is the batch (unknown: no)."""
    if not shape:
        return False
    if inputs.static_batch is not None:
        return shape[0] == inputs.static_batch
    return isinstance(shape[0], str) and shape[0] in inputs.batch_symbols
