"""The channel axis of Keras responses, followed along the layer graph from each tensor's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from introscope.base import ResponseInfo
from introscope.base._response_info import FEATURES_LAST_KINDS, SPATIAL_KINDS

from ._keras import layer_kind

__all__ = ["ChannelLayouts"]

Kind = ResponseInfo.LayerKind

#: Layers and ``keras.ops`` operations (by class name) that keep the layout of their input:
#: element-wise maps, normalisations, noise, merges of same-shaped tensors.
_LAYOUT_PRESERVING = frozenset(
    {
        # layers
        "Activation",
        "ActivityRegularization",
        "Add",
        "AlphaDropout",
        "Average",
        "BatchNormalization",
        "Concatenate",
        "Dropout",
        "ELU",
        "GaussianDropout",
        "GaussianNoise",
        "GroupNormalization",
        "Identity",
        "LeakyReLU",
        "Masking",
        "Maximum",
        "Minimum",
        "Multiply",
        "Normalization",
        "PReLU",
        "ReLU",
        "Rescaling",
        "Softmax",
        "Subtract",
        "ThresholdedReLU",
        "UnitNormalization",
        # keras.ops operations applied to symbolic tensors (nodes of the graph, not responses)
        "Abs",
        "Cast",
        "Celu",
        "Clip",
        "Divide",
        "Elu",
        "Exp",
        "Gelu",
        "Glu",
        "HardSigmoid",
        "HardSilu",
        "HardTanh",
        "LeakyRelu",
        "Log",
        "LogSigmoid",
        "LogSoftmax",
        "Negative",
        "Power",
        "Relu",
        "Relu6",
        "Selu",
        "Sigmoid",
        "Silu",
        "Softplus",
        "Softsign",
        "Sqrt",
        "Square",
        "Tanh",
        "TrueDivide",
    }
)

#: Layers outside :data:`FEATURES_LAST_KINDS` whose output features are on the last axis.
_FEATURES_LAST_CLASSES = frozenset({"Embedding"})

#: Normalisations whose ``axis`` names the channels when nothing upstream says otherwise.
_AXIS_NORMALIZATIONS = frozenset({"BatchNormalization", "GroupNormalization"})

_FORMATS = {"channels_first": 1, "channels_last": -1}


def _normalized(axis: int | None, rank: int) -> int | None:
    """``axis`` for a tensor of ``rank`` (batch included): -1 for the last axis, else positive."""
    if axis is None or not -rank <= axis < rank:
        return None
    axis %= rank
    if axis == 0:
        return None  # the batch axis is never the channels
    return -1 if axis == rank - 1 else axis


def _class_names(operation: Any) -> list[str]:
    names = []
    for cls in type(operation).__mro__:
        if cls.__name__ in ("Layer", "Operation", "object"):
            break
        names.append(cls.__name__)
    return names


def _history(tensor: Any) -> tuple[Any, Any, int] | None:
    """(operation, node, output index) that produced a symbolic tensor, or None."""
    history: Any = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None)
    if operation is None:
        return None
    try:
        node = operation._inbound_nodes[history.node_index]
    except (AttributeError, IndexError, TypeError):
        return None
    return operation, node, int(history.tensor_index)


def _rank(tensor: Any) -> int | None:
    shape = getattr(tensor, "shape", None)
    return None if shape is None else len(shape)


class ChannelLayouts:
    """The channel axis of each symbolic tensor of a Keras graph, from the layers that made it.

    Convolution-like layers (and pooling, padding, up-sampling...) take their ``data_format``;
    dense, recurrent, attention, layer-norm and embedding layers act on the last axis (-1), but
    an attention layer's further outputs (its scores) have no channel axis;
    element-wise layers and operations (activations, batch norm, dropout, ``Add``...) keep the
    layout of the tensors they were computed from; ``Permute`` moves the channel axis where its
    ``dims`` say; a feature vector reshaped to ``(1, 1, C)`` has its channels at ``C``; a nested
    model gives the layout of its own output. Any other layer (other ``Reshape``s, ``Lambda``,
    custom layers) moves or reinterprets axes, so its output, and what is computed from it
    alone, has no known layout (``None``). Tensors of rank below 3 have no channel axis.
    Graph inputs have no known layout unless :meth:`seed` gives it (a nested model's inputs).
    """

    def __init__(self) -> None:
        # id(tensor) -> (rank, axis); the tensors are kept so that their ids stay unique
        self._memo: dict[int, tuple[int | None, int | None]] = {}
        self._alive: list[Any] = []

    def seed(self, tensor: Any, axis: int | None) -> None:
        """Declare the channel axis of a graph entry point."""
        rank = _rank(tensor)
        self._memo[id(tensor)] = (rank, _normalized(axis, rank) if rank else None)
        self._alive.append(tensor)

    def axis(self, tensor: Any) -> int | None:
        """The channel axis of ``tensor`` (batch axis counted), or None when unknown."""
        # Iterative depth-first walk: deep models would overflow Python's recursion limit.
        stack = [tensor]
        while stack:
            current = stack[-1]
            if id(current) in self._memo:
                stack.pop()
                continue
            produced = _history(current)
            inputs = list(produced[1].input_tensors) if produced is not None else []
            pending = [t for t in inputs if id(t) not in self._memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            rank = _rank(current)
            axis = None
            if produced is not None and rank is not None and rank >= 3:
                operation, node, index = produced
                upstream = [self._memo[id(t)] for t in inputs]
                axis = _normalized(self._own_axis(operation, node, index, rank, upstream), rank)
            self._memo[id(current)] = (rank, axis)
            self._alive.append(current)
        return self._memo[id(tensor)][1]

    def _own_axis(
        self,
        operation: Any,
        node: Any,
        index: int,
        rank: int,
        upstream: Sequence[tuple[int | None, int | None]],
    ) -> int | None:
        names = _class_names(operation)
        inherited = _consensus(upstream, rank)
        if "TimeDistributed" in names:
            return _per_step_axis(getattr(operation, "layer", None), inherited)
        if "Functional" in names or "Sequential" in names:
            return self._nested_axis(operation, node, index)
        if "Permute" in names and len(upstream) == 1:
            return _permuted_axis(getattr(operation, "dims", None), upstream[0], rank)
        if "Reshape" in names and len(upstream) == 1 and upstream[0][0] == 2:
            return _unflattened_axis(node.output_tensors[index])
        return _layer_axis(operation, names, index, rank, inherited)

    def _nested_axis(self, model: Any, node: Any, index: int) -> int | None:
        try:
            inner_inputs, inner_outputs = list(model.inputs), list(model.outputs)
        except (AttributeError, ValueError):
            return None
        if index >= len(inner_outputs):
            return None
        inner = ChannelLayouts()
        outer_inputs = list(node.input_tensors)
        if len(outer_inputs) == len(inner_inputs):
            for outer, entry in zip(outer_inputs, inner_inputs):
                inner.seed(entry, self._memo.get(id(outer), (None, None))[1])
        return inner.axis(inner_outputs[index])


def _per_step_axis(inner: Any, inherited: int | None) -> int | None:
    """``TimeDistributed(inner)``: the inner layer's layout, one axis further for the steps."""
    if inner is None:
        return None
    names = _class_names(inner)
    if layer_kind(inner) in FEATURES_LAST_KINDS or _FEATURES_LAST_CLASSES & {*names}:
        return -1
    axis = _FORMATS.get(getattr(inner, "data_format", None) or "")
    if axis is not None:
        return -1 if axis == -1 else axis + 1
    return inherited if _LAYOUT_PRESERVING & {*names} else None


def _permuted_axis(dims: Any, upstream: tuple[int | None, int | None], rank: int) -> int | None:
    """Where ``Permute(dims)`` moves the channel axis of its input."""
    in_rank, axis = upstream
    if axis is None or in_rank != rank or dims is None:
        return None
    axis %= rank
    dims = list(dims)  # dims[i] is the input axis (batch = 0) at output axis i + 1
    return dims.index(axis) + 1 if axis in dims else None


def _unflattened_axis(tensor: Any) -> int | None:
    """A feature vector reshaped to ``(1, ..., 1, C)`` or ``(C, 1, ..., 1)``: the axis of ``C``."""
    sizes = list(getattr(tensor, "shape", ())[1:])
    wide = [i + 1 for i, size in enumerate(sizes) if size != 1]
    return wide[0] if len(wide) == 1 and sizes[wide[0] - 1] is not None else None


def _consensus(upstream: Sequence[tuple[int | None, int | None]], rank: int) -> int | None:
    """The one layout the same-rank inputs agree on (unknown ones ignored), else None."""
    known = {axis for r, axis in upstream if r == rank and axis is not None}
    return known.pop() if len(known) == 1 else None


def _layer_axis(
    layer: Any, names: Sequence[str], index: int, rank: int, inherited: int | None
) -> int | None:
    """The channel axis of output ``index`` of ``layer``, given the layout of its inputs."""
    if rank < 3:
        return None
    axis = _FORMATS.get(getattr(layer, "data_format", None) or "")
    if axis is not None:
        # ConvLSTM channels_first with return_sequences: (batch, time, channels, ...)
        if axis == 1 and index == 0 and getattr(layer, "return_sequences", False):
            return 2
        return axis
    kind = layer_kind(layer) if not _is_plain_operation(layer) else None
    if kind is Kind.ATTENTION and index > 0:
        return None  # attention scores (batch, heads, queries, keys): no feature axis
    if kind in FEATURES_LAST_KINDS or any(n in _FEATURES_LAST_CLASSES for n in names):
        return -1
    if kind in SPATIAL_KINDS:
        return -1  # Keras' default data format
    if any(n in _LAYOUT_PRESERVING for n in names):
        if inherited is not None:
            return inherited
        if any(n in _AXIS_NORMALIZATIONS for n in names):
            axis = getattr(layer, "axis", None)
            return axis if isinstance(axis, int) else None
    return None


def _is_plain_operation(operation: Any) -> bool:
    """A ``keras.ops`` node rather than a layer (its class names can shadow layer names)."""
    return not any(cls.__name__ == "Layer" for cls in type(operation).__mro__)
