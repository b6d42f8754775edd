"""ONNX models run with onnxruntime; every intermediate tensor of the graph is a response."""

from __future__ import annotations

import logging
import pathlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from introscope.base import Model, ResponseInfo
from introscope.base._response_info import UNKNOWN_UPSTREAM, channels_first_axis
from introscope.exceptions import IntroscopeError, require
from introscope.typing import PathOrStr

from ._kinds import node_kind

__all__ = ["OnnxBackend", "load_onnx_model"]

_logger = logging.getLogger("introscope.onnx")

# Ops whose outputs describe a tensor's shape, not its values: anything computed only from them
# is bookkeeping (reshape targets, ...) and not a response of a sample.
_SHAPE_OPS = frozenset({"Shape", "Size"})
_SESSION_CACHE_SIZE = 4


def _onnx() -> Any:
    return require("onnx", "onnx", "ONNX models")


def _ort() -> Any:
    return require("onnxruntime", "onnx", "running ONNX models")


class _Constants(Mapping[str, np.ndarray]):
    """Initializers and ``Constant`` node values by name, converted to numpy only when read."""

    def __init__(self, graph: Any) -> None:
        self._protos: dict[str, Any] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self._protos[node.output[0]] = attr.t

    def __getitem__(self, name: str) -> np.ndarray:
        return _onnx().numpy_helper.to_array(self._protos[name])

    def __contains__(self, name: object) -> bool:
        return name in self._protos

    def __iter__(self) -> Iterator[str]:
        return iter(self._protos)

    def __len__(self) -> int:
        return len(self._protos)


_UNKNOWN_KIND = ResponseInfo.LayerKind.UNKNOWN

# Operators whose output has the layout of their (same-rank) data input.
_LAYOUT_PRESERVING = frozenset(
    """Abs Add BatchNormalization Cast Celu Clip Concat Div Dropout Elu Erf Exp Gelu HardSigmoid
    HardSwish Identity InstanceNormalization LeakyRelu Log Max Mean Min Mish Mul Neg Pad Pow PRelu
    QuantizeLinear DequantizeLinear Reciprocal Relu Resize Selu Sigmoid Sign Softplus Softsign
    Sqrt Sub Sum Tanh ThresholdedRelu Upsample Where""".split()
)


def _tensor_type(value_info: Any) -> tuple[np.dtype, tuple[int | str | None, ...] | None] | None:
    """(dtype, shape) of a tensor ValueInfoProto; ``None`` for sequences, maps and unknowns.

    Shape entries are ints, a ``dim_param`` string, or ``None``; the shape is ``None`` if unknown.
    """
    onnx = _onnx()
    if value_info is None or value_info.type.WhichOneof("value") != "tensor_type":
        return None
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type == 0:
        return None
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except (KeyError, TypeError, ValueError):
        return None
    if not tensor_type.HasField("shape"):
        return dtype, None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        which = dim.WhichOneof("value")
        dims.append(
            dim.dim_value
            if which == "dim_value"
            else dim.dim_param
            if which == "dim_param"
            else None
        )
    return dtype, tuple(dims)


def _public_shape(shape: tuple[int | str | None, ...] | None) -> tuple[int | None, ...]:
    if shape is None:
        return ()
    # The first dimension is the batch: report it as unknown, like every introscope adapter.
    return (None,) + tuple(d if isinstance(d, int) else None for d in shape[1:])


class OnnxBackend:
    """A [`ModelBackend`][introscope.base.ModelBackend] for an ONNX graph, run with onnxruntime.

    Requested intermediate tensors are added as graph outputs; one onnxruntime session is kept
    for each of the last few requested sets, so the unrequested part of the graph keeps
    onnxruntime's fusions.

    Examples:
        >>> import numpy as np
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> weights = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]], dtype=np.float32)
        >>> matmul = helper.make_node("MatMul", ["x", "w"], ["h"])
        >>> nodes = [matmul, helper.make_node("Relu", ["h"], ["y"])]
        >>> graph = helper.make_graph(
        ...     nodes,
        ...     "tiny",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        ...     [numpy_helper.from_array(weights, "w")],
        ... )
        >>> proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        >>> from introscope.onnx import OnnxBackend
        >>> backend = OnnxBackend(proto, providers=["CPUExecutionProvider"])
        >>> [info.name for info in backend.get_response_infos()]
        ['x', 'h', 'y']
        >>> x = np.array([[0.0, 1.0, -1.0]], dtype=np.float32)
        >>> backend.run_inference({"x": x}, frozenset({"h", "y"}))["h"]
        array([[ 2. , -0.5]], dtype=float32)
    """

    def __init__(
        self,
        model: Any,
        *,
        providers: Sequence[str] | None = None,
        session_options: Any = None,
    ) -> None:
        onnx = _onnx()
        self._providers = list(providers) if providers is not None else None
        self._session_options = session_options
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:  # an invalid graph; keep going with declared types only
            _logger.warning("ONNX shape inference failed (%s); using declared types only", exc)
            inferred = model
        self._model = inferred
        graph = inferred.graph
        initializers = {t.name for t in graph.initializer}
        types: dict[str, Any] = {}
        for vi in (*graph.input, *graph.value_info, *graph.output):
            types[vi.name] = vi
        self._value_infos = types
        self._graph_outputs = {o.name for o in graph.output}

        self._inputs: dict[str, tuple[np.dtype, tuple[int | str | None, ...] | None]] = {}
        for vi in graph.input:
            if vi.name in initializers:  # old exporters list weights as inputs with defaults
                continue
            typed = _tensor_type(vi)
            if typed is None:
                raise IntroscopeError(
                    f"ONNX graph input {vi.name!r} is not a tensor with a known element type; "
                    f"only tensor inputs are supported"
                )
            self._inputs[vi.name] = typed
        if not self._inputs:
            raise IntroscopeError("the ONNX graph has no inputs to feed")
        batch_dims = {shape[0] for _, shape in self._inputs.values() if shape}
        self._batch_dims = batch_dims

        constants = _Constants(graph)
        infos: list[ResponseInfo] = [
            ResponseInfo(
                name=name,
                dtype=dtype,
                shape=_public_shape(shape),
                layer=ResponseInfo.Layer(name, ResponseInfo.LayerKind.PLACEHOLDER, "Input"),
            )
            for name, (dtype, shape) in self._inputs.items()
        ]
        data_dependent = set(self._inputs)
        # tensor name -> (rank, channel axis); graph inputs are NCL / NCHW / NCDHW by rank
        axes: dict[str, tuple[int | None, int | None]] = {
            name: (len(shape), channels_first_axis(_UNKNOWN_KIND, len(shape)))
            for name, (_, shape) in self._inputs.items()
            if shape is not None
        }
        for index, node in enumerate(graph.node):
            if node.op_type in _SHAPE_OPS or not any(i in data_dependent for i in node.input):
                continue
            typename = (
                node.op_type
                if node.domain in ("", "ai.onnx")
                else (f"{node.domain}.{node.op_type}")
            )
            first = _tensor_type(types.get(node.output[0])) if node.output else None
            rank = len(first[1]) if first is not None and first[1] is not None else None
            kind = node_kind(node, rank, constants)
            layer = ResponseInfo.Layer(node.name or f"{node.op_type}_{index}", kind, typename)
            for out in node.output:
                if not out:  # an omitted optional output
                    continue
                data_dependent.add(out)
                typed = _tensor_type(types.get(out))
                if typed is None:
                    continue
                dtype, shape = typed
                if shape is not None and not self._is_per_sample(shape):
                    continue
                axis = None
                if shape is not None:
                    axis = channels_first_axis(kind, len(shape), self._upstream(node, shape, axes))
                axes[out] = (len(shape) if shape is not None else None, axis)
                infos.append(ResponseInfo(out, dtype, _public_shape(shape), layer, axis))
        self._infos = infos
        self._sessions: OrderedDict[frozenset[str], Any] = OrderedDict()

    @staticmethod
    def _upstream(
        node: Any, shape: tuple, axes: Mapping[str, tuple[int | None, int | None]]
    ) -> int | None | object:
        """The layout a node's output takes from its inputs (ONNX graphs say it explicitly)."""
        if node.op_type not in _LAYOUT_PRESERVING:
            return None  # Transpose, Reshape, Flatten, MatMul, ...: no channel layout follows
        for name in node.input:
            rank, axis = axes.get(name, (None, None))
            if rank == len(shape):
                return axis
        return UNKNOWN_UPSTREAM

    def _is_per_sample(self, shape: tuple[int | str | None, ...]) -> bool:
        """Whether a tensor of this inferred shape starts with the batch dimension."""
        if not shape:
            return False
        first = shape[0]
        if first is None or first in self._batch_dims:
            return True
        # A symbol made up by shape inference ("unk__3") may still be the batch; a symbol the
        # exporter named differently from the inputs' batch (a sequence length) is not.
        return isinstance(first, str) and first.startswith("unk__")

    # -- ModelBackend ---------------------------------------------------------------------------

    def get_response_infos(self) -> list[ResponseInfo]:
        """Every response the model can produce, in the model's order."""
        return list(self._infos)

    def get_input_layer_responses(self) -> list[ResponseInfo]:
        """The model's inputs."""
        return [info for info in self._infos if info.name in self._inputs]

    def run_inference(
        self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]
    ) -> Mapping[str, np.ndarray]:
        """Run one batch of named inputs and return the requested responses as numpy arrays."""
        feeds = self._checked_feeds(inputs)
        n = next(iter(feeds.values())).shape[0]
        graph_side = sorted(o for o in outputs if o not in self._inputs)
        results: dict[str, np.ndarray] = {o: feeds[o] for o in outputs if o in self._inputs}
        if graph_side:
            session = self._session(frozenset(graph_side))
            step = self._static_batch()
            if step is None or step == n:
                arrays = session.run(graph_side, feeds)
            else:
                arrays = self._run_in_chunks(session, graph_side, feeds, n, step)
            for name, array in zip(graph_side, arrays):
                array = np.asarray(array)
                if array.ndim == 0 or array.shape[0] != n:
                    raise IntroscopeError(
                        f"ONNX response {name!r} has shape {array.shape}, which does not start "
                        f"with the batch size {n}; it is not a per-sample response"
                    )
                results[name] = array
        return results

    # -- helpers -------------------------------------------------------------------------------

    def _static_batch(self) -> int | None:
        sizes = {d for d in self._batch_dims if isinstance(d, int) and d > 0}
        return sizes.pop() if len(sizes) == 1 else None

    @staticmethod
    def _run_in_chunks(
        session: Any, names: list[str], feeds: Mapping[str, np.ndarray], n: int, step: int
    ) -> list[np.ndarray]:
        # The graph was exported for a fixed batch size: run it that many samples at a time,
        # padding the last chunk by repeating its final sample and dropping the padding after.
        parts: list[list[np.ndarray]] = [[] for _ in names]
        for start in range(0, n, step):
            stop = min(start + step, n)
            chunk = {}
            for key, value in feeds.items():
                piece = value[start:stop]
                if stop - start < step:
                    pad = np.repeat(piece[-1:], step - (stop - start), axis=0)
                    piece = np.concatenate([piece, pad])
                chunk[key] = piece
            for i, array in enumerate(session.run(names, chunk)):
                parts[i].append(np.asarray(array)[: stop - start])
        return [np.concatenate(p) for p in parts]

    def _checked_feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(inputs) != set(self._inputs):
            raise IntroscopeError(
                f"the ONNX model expects inputs {sorted(self._inputs)} but got {sorted(inputs)}"
            )
        feeds: dict[str, np.ndarray] = {}
        sizes = set()
        for name, (dtype, shape) in self._inputs.items():
            value = np.asarray(inputs[name])
            if value.dtype != dtype:
                if not np.can_cast(value.dtype, dtype, casting="same_kind"):
                    raise IntroscopeError(
                        f"input {name!r} has dtype {value.dtype}; the ONNX model expects {dtype}"
                    )
                value = value.astype(dtype)
            if shape is not None:
                ok = value.ndim == len(shape) and all(
                    not isinstance(d, int) or d <= 0 or d == a
                    for d, a in zip(shape[1:], value.shape[1:])
                )
                if not ok:
                    expected = ", ".join("?" if not isinstance(d, int) else str(d) for d in shape)
                    raise IntroscopeError(
                        f"input {name!r} has shape {value.shape}; the ONNX model expects "
                        f"({expected}) with any batch size"
                    )
            sizes.add(value.shape[0] if value.ndim else None)
            feeds[name] = np.ascontiguousarray(value)
        if len(sizes) != 1 or None in sizes:
            raise IntroscopeError(f"model inputs have different batch sizes: {sorted(sizes)}")
        return feeds

    def _session(self, names: frozenset[str]) -> Any:
        session = self._sessions.get(names)
        if session is not None:
            self._sessions.move_to_end(names)
            return session
        onnx = _onnx()
        ort = _ort()
        model = onnx.ModelProto()
        model.CopyFrom(self._model)
        for name in sorted(names - self._graph_outputs):
            model.graph.output.append(self._value_infos[name])
        providers = self._providers or ort.get_available_providers()
        try:
            session = ort.InferenceSession(
                model.SerializeToString(), sess_options=self._session_options, providers=providers
            )
        except Exception as exc:
            raise IntroscopeError(f"onnxruntime could not load the model: {exc}") from exc
        self._sessions[names] = session
        if len(self._sessions) > _SESSION_CACHE_SIZE:
            self._sessions.popitem(last=False)
        return session

    def __repr__(self) -> str:
        return f"OnnxBackend(inputs={list(self._inputs)}, {len(self._infos)} responses)"


def load_onnx_model(
    path: PathOrStr | Any,
    *,
    providers: Sequence[str] | None = None,
    session_options: Any = None,
) -> Model:
    """Load an ONNX model (a file path or an ``onnx.ModelProto``) as an introscope ``Model``.

    Every tensor computed from the inputs is a response, named as in the graph, with its
    ``LayerKind`` from the producing node's ``op_type`` and shape and dtype from ONNX shape
    inference (the batch dimension is ``None``).

    Args:
        providers: onnxruntime execution providers (default: all available, best first).
        session_options: an ``onnxruntime.SessionOptions`` for every session.

    Examples:
        >>> import numpy as np
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> weights = np.array([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]], dtype=np.float32)
        >>> matmul = helper.make_node("MatMul", ["x", "w"], ["h"])
        >>> nodes = [matmul, helper.make_node("Relu", ["h"], ["y"])]
        >>> graph = helper.make_graph(
        ...     nodes,
        ...     "tiny",
        ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        ...     [numpy_helper.from_array(weights, "w")],
        ... )
        >>> proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.onnx import load_onnx_model
        >>> model = load_onnx_model(proto)  # or the path of a .onnx file
        >>> list(model.input_layers), model.response_infos["h"].layer.kind.name
        (['x'], 'LINEAR')
        >>> data = producer_from_batches(Batch({"x": np.array([[0.0, 1.0, -1.0]], np.float32)}))
        >>> responses = peek_first_batch(pipeline(data, model(["h", "y"])), batch_size=1)
        >>> responses.fields["h"], responses.fields["y"]
        (array([[ 2. , -0.5]], dtype=float32), array([[2., 0.]], dtype=float32))
    """
    onnx = _onnx()
    _ort()
    if isinstance(path, onnx.ModelProto):
        model = path
    else:
        if not isinstance(path, (str, pathlib.Path)):
            raise TypeError(
                f"path must be a str, pathlib.Path or onnx.ModelProto, got {type(path).__name__}"
            )
        file = pathlib.Path(path)
        if not file.exists():
            raise IntroscopeError(f"ONNX model file {str(file)!r} does not exist")
        if not file.is_file():
            raise IntroscopeError(f"ONNX model path {str(file)!r} is not a file")
        try:
            model = onnx.load(str(file))
        except Exception as exc:
            raise IntroscopeError(
                f"{str(file)!r} is not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from exc
        if not model.graph.node and not model.graph.input:
            raise IntroscopeError(f"{str(file)!r} is not an ONNX model (it has an empty graph)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # onnxruntime runs some graphs the checker rejects; let it decide
        _logger.warning("onnx.checker reports a problem with the model: %s", exc)
    return Model(OnnxBackend(model, providers=providers, session_options=session_options))
