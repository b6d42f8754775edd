"""The responses of an ONNX graph: tensors computed from the inputs whose dimension 0 is the batch.

Each gets its ``LayerKind`` from the producing node and its channel axis from the layout of the
tensors it was computed from; every other tensor gets the reason it is not a response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from introscope.base import ResponseInfo
from introscope.base._response_info import UNKNOWN_UPSTREAM, channels_first_axis

from ._dry_run import Probe, dry_run, mixed_rows
from ._inputs import GraphInputs, static_follows
from ._kinds import node_kind
from ._proto import Constants, Shape, TensorType, format_shape, tensor_type
from ._session import SessionFactory

__all__ = ["Responses", "find_responses"]

_logger = logging.getLogger("introscope.onnx")

# Ops whose outputs describe a tensor's shape, not its values: anything computed only from them
# is bookkeeping (reshape targets, ...) and not a response of a sample.
_SHAPE_OPS = frozenset({"Shape", "Size"})

# Operators whose output has the layout of their (same-rank) data input.
_LAYOUT_PRESERVING = frozenset(
    """Abs Add BatchNormalization Cast Celu Clip Concat Div Dropout Elu Erf Exp Gelu HardSigmoid
    HardSwish Identity InstanceNormalization LeakyRelu Log Max Mean Min Mish Mul Neg Pad Pow PRelu
    QuantizeLinear DequantizeLinear Reciprocal Relu Resize Selu Sigmoid Sign Softplus Softsign
    Sqrt Sub Sum Tanh ThresholdedRelu Upsample Where""".split()
)

_FIX = (
    "introscope needs the batch on dimension 0: request a tensor computed from it that has the "
    "batch first (after the Transpose back, for example), or export the model with batch-first "
    "layouts (batch_first=True for recurrent and attention layers)"
)


@dataclass
class Responses:
    """The responses in the graph's order, and why each other tensor is not one."""

    infos: list[ResponseInfo] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class _Candidate:
    name: str
    node: int
    typed: TensorType | None  # None: no type information (the dry run may give it)


def _public_shape(shape: Shape) -> tuple[int | None, ...]:
    if shape is None:
        return ()
    # The first dimension is the batch: report it as unknown, like every introscope adapter.
    return (None,) + tuple(d if isinstance(d, int) else None for d in shape[1:])


def _upstream(
    node: Any, rank: int, axes: Mapping[str, tuple[int | None, int | None]]
) -> int | None | object:
    """The layout a node's output takes from its inputs (ONNX graphs say it explicitly)."""
    if node.op_type not in _LAYOUT_PRESERVING:
        return None  # Transpose, Reshape, Flatten, MatMul, ...: no channel layout follows
    for name in node.input:
        known_rank, axis = axes.get(name, (None, None))
        if known_rank == rank:
            return axis
    return UNKNOWN_UPSTREAM


def _walk(
    graph: Any, value_infos: Mapping[str, Any], inputs: GraphInputs, reasons: dict[str, str]
) -> list[_Candidate]:
    """The tensors computed from the fed inputs (candidates), in the graph's order."""
    constants = Constants(graph)
    for name in constants:
        kind = "a Constant node's value" if name in constants.node_outputs else "a weight"
        reasons[name] = f"ONNX tensor {name!r} is {kind}, not computed from the model's inputs"
    for name in inputs.fixed:
        reasons[name] = f"ONNX graph input {name!r} is given once in fixed_inputs, not a response"
    data_dependent = set(inputs.fed)
    shape_derived: set[str] = set()
    candidates: list[_Candidate] = []
    for index, node in enumerate(graph.node):
        outputs = [o for o in node.output if o]  # "" is an omitted optional output
        if node.op_type in _SHAPE_OPS or not any(i in data_dependent for i in node.input):
            if node.op_type in _SHAPE_OPS or any(i in shape_derived for i in node.input):
                shape_derived.update(outputs)
                why = "computed only from tensor shapes (Shape/Size), not from a sample's values"
            else:
                why = "computed only from weights and constants, not from the batched inputs"
            for out in outputs:
                reasons.setdefault(out, f"ONNX tensor {out!r} is {why}")
            continue
        data_dependent.update(outputs)
        for out in outputs:
            info = value_infos.get(out)
            value_kind = info.type.WhichOneof("value") if info is not None else None
            if value_kind not in (None, "tensor_type"):
                reasons[out] = f"ONNX value {out!r} is a {value_kind.split('_')[0]}, not a tensor"
                continue
            candidates.append(_Candidate(out, index, tensor_type(info)))
    return candidates


def _batch_words(inputs: GraphInputs) -> str:
    if inputs.static_batch is not None:
        return f"the batch size {inputs.static_batch} the graph was exported for"
    symbols = sorted(inputs.batch_symbols)
    return f"the inputs' batch {' or '.join(map(repr, symbols))}" if symbols else "the batch"


def _static_reason(c: _Candidate, inputs: GraphInputs, no_dry_run: str) -> str | None:
    """Why the inferred shape does not show the batch on dimension 0 (``None``: it does)."""
    shape = c.typed[1] if c.typed is not None else None
    if shape is not None and static_follows(shape, inputs):
        return None
    start = f"ONNX tensor {c.name!r} is not a response:"
    if shape == ():
        return f"{start} it is a scalar (no batch dimension)"
    if shape is None or (not isinstance(shape[0], int) and shape[0] not in inputs.batch_symbols):
        known = (
            "its shape is unknown"
            if shape is None
            else f"its inferred shape is {format_shape(shape)}"
        )
        advice = (
            "; export the model with a dynamic batch (dynamic_axes={'x': {0: 'batch'}} or "
            "dynamic_shapes) so that it can"
            if inputs.static_batch is not None
            else ""
        )
        return (
            f"{start} {known} and dimension 0 is not known to be {_batch_words(inputs)}; "
            f"introscope could not check it in a dry run because {no_dry_run}{advice}"
        )
    return (
        f"{start} its inferred shape is {format_shape(shape)}, whose dimension 0 is not "
        f"{_batch_words(inputs)}; {_FIX}"
    )


class _Classifier:
    """Decides, for each candidate, whether it is a response and otherwise says why."""

    def __init__(
        self, candidates: list[_Candidate], inputs: GraphInputs, factory: SessionFactory
    ) -> None:
        untyped = [c.name for c in candidates if c.typed is None]
        self.inputs = inputs
        self.probe = dry_run(factory, inputs, [c.name for c in candidates], untyped)
        self.mixed: set[str] = set()
        if isinstance(self.probe, str):
            _logger.info("no dry run of the ONNX graph (%s); inferred shapes decide", self.probe)
            if (inputs.static_batch or 0) > 1:
                kept = [c.name for c in candidates if _static_reason(c, inputs, "") is None]
                mixed = mixed_rows(factory, inputs, kept)
                if isinstance(mixed, str):
                    _logger.info("no check of the ONNX graph's rows (%s)", mixed)
                else:
                    self.mixed = mixed

    def reason(self, c: _Candidate) -> str | None:
        """Why the candidate is not a response, or ``None`` if it is one."""
        start = f"ONNX tensor {c.name!r} is not a response:"
        probe = self.probe
        if isinstance(probe, Probe):
            if c.name not in probe.shapes:
                return (
                    f"{start} ONNX shape inference gives it no type, and onnxruntime could not "
                    f"run the graph with it as an output"
                )
            if probe.follows(c.name):
                return None
            return f"{start} {probe.describe(c.name)}, so its dimension 0 does not follow the batch; {_FIX}"
        reason = _static_reason(c, self.inputs, probe)
        if reason is None and c.name in self.mixed:
            return (
                f"{start} in a dry run with the batch size {self.inputs.static_batch} the graph "
                f"was exported for, changing only sample 0 changed its other rows too, so its "
                f"dimension 0 is not the batch; {_FIX}"
            )
        return reason

    def rank(self, c: _Candidate) -> int | None:
        """The tensor's rank, from shape inference or else from the dry run."""
        if c.typed is not None and c.typed[1] is not None:
            return len(c.typed[1])
        runs = self.probe.shapes.get(c.name) if isinstance(self.probe, Probe) else None
        return len(runs[0]) if runs and runs[0] is not None else None

    def dtype_and_shape(self, c: _Candidate) -> tuple[Any, tuple[int | None, ...]]:
        """A response's dtype and public shape (batch ``None``)."""
        static = c.typed[1] if c.typed is not None else None
        if isinstance(self.probe, Probe):
            dtype = c.typed[0] if c.typed is not None else self.probe.dtypes[c.name]
            return dtype, self.probe.shape(c.name, static)
        return c.typed[0], _public_shape(static)  # type: ignore[index]


def find_responses(
    graph: Any, value_infos: Mapping[str, Any], inputs: GraphInputs, factory: SessionFactory
) -> Responses:
    """The graph's inputs and every candidate tensor that follows the batch, as ResponseInfos."""
    found = Responses()
    candidates = _walk(graph, value_infos, inputs, found.reasons)
    classifier = _Classifier(candidates, inputs, factory)
    for name, (dtype, shape) in inputs.fed.items():
        layer = ResponseInfo.Layer(name, ResponseInfo.LayerKind.PLACEHOLDER, "Input")
        found.infos.append(ResponseInfo(name, dtype, _public_shape(shape), layer))
    # tensor name -> (rank, channel axis). A graph input's layout is not known: NCHW from
    # PyTorch, NHWC from TensorFlow (tf2onnx transposes before its first Conv), (batch,
    # sequence, features) for text. What is computed from it element-wise gets no channel axis
    # until a layer (Conv, Gemm, ...) says which axis holds the channels.
    axes: dict[str, tuple[int | None, int | None]] = {
        name: (len(shape), None) for name, (_, shape) in inputs.fed.items() if shape is not None
    }
    constants = Constants(graph)
    first_output: dict[int, _Candidate] = {}
    for c in candidates:
        first_output.setdefault(c.node, c)
    layers: dict[int, ResponseInfo.Layer] = {}
    for c in candidates:
        reason = classifier.reason(c)
        if reason is not None:
            found.reasons[c.name] = reason
            continue
        node = graph.node[c.node]
        if c.node not in layers:
            domain = "" if node.domain in ("", "ai.onnx") else f"{node.domain}."
            kind = node_kind(node, classifier.rank(first_output[c.node]), constants)
            name = node.name or f"{node.op_type}_{c.node}"
            layers[c.node] = ResponseInfo.Layer(name, kind, domain + node.op_type)
        layer = layers[c.node]
        dtype, shape = classifier.dtype_and_shape(c)
        axis = channels_first_axis(layer.kind, len(shape), _upstream(node, len(shape), axes))
        axes[c.name] = (len(shape), axis)
        found.infos.append(ResponseInfo(c.name, dtype, shape, layer, axis))
    return found
