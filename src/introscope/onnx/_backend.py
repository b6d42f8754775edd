"""ONNX models run with onnxruntime; intermediate tensors that keep the batch are responses."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from introscope.base import Model, ResponseInfo
from introscope.base._adapter_text import batch_failure
from introscope.base._model import check_exact_cast, unknown_name_error
from introscope.exceptions import IntroscopeError
from introscope.typing import PathOrStr

from ._dry_run import _quiet, _short
from ._inputs import read_inputs
from ._load import read_model
from ._proto import format_shape, onnx
from ._responses import find_responses
from ._session import SessionFactory

__all__ = ["OnnxBackend", "load_onnx_model"]

_logger = logging.getLogger("introscope.onnx")
_SESSION_CACHE_SIZE = 4


class OnnxBackend:
    """A [`ModelBackend`][introscope.base.ModelBackend] for an ONNX graph, run with onnxruntime.

    Requested intermediate tensors are added as graph outputs; one onnxruntime session is kept
    for each of the last few requested sets, so the unrequested part of the graph keeps
    onnxruntime's fusions. Responses are chosen as by
    [`load_onnx_model`][introscope.onnx.load_onnx_model].

    Args:
        model: an ``onnx.ModelProto`` or the path of a ``.onnx`` file.
        providers: onnxruntime execution providers (default: all available, best first).
        session_options: an ``onnxruntime.SessionOptions`` for every session.
        fixed_inputs: values of graph inputs that are not batched (a scalar, a lookup table),
            fed as they are to every run instead of from batch fields.

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
        model: PathOrStr | Any,
        *,
        providers: Sequence[str] | None = None,
        session_options: Any = None,
        fixed_inputs: Mapping[str, Any] | None = None,
    ) -> None:
        model = read_model(model)
        try:
            inferred = onnx().shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:  # an invalid graph; keep going with declared types only
            _logger.warning("ONNX shape inference failed (%s); using declared types only", exc)
            inferred = model
        graph = inferred.graph
        value_infos: dict[str, Any] = {}
        for vi in (*graph.input, *graph.value_info, *graph.output):
            value_infos[vi.name] = vi
        self._inputs = read_inputs(graph, fixed_inputs)
        self._factory = SessionFactory(inferred, value_infos, providers, session_options)
        found = find_responses(graph, value_infos, self._inputs, self._factory)
        self._infos: list[ResponseInfo] = found.infos
        self._names = frozenset(info.name for info in self._infos)
        self._reasons = found.reasons
        self._sessions: OrderedDict[frozenset[str], Any] = OrderedDict()

    # -- ModelBackend ---------------------------------------------------------------------------

    def get_response_infos(self) -> list[ResponseInfo]:
        """Every response the model can produce, in the model's order."""
        return list(self._infos)

    def get_input_layer_responses(self) -> list[ResponseInfo]:
        """The model's inputs fed from batch fields."""
        return [info for info in self._infos if info.name in self._inputs.fed]

    def unavailable(self, name: str) -> str | None:
        """Why ``name``, a tensor of the graph, is not a response (``None``: not in the graph)."""
        return None if name in self._names else self._reasons.get(name)

    def run_inference(
        self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]
    ) -> Mapping[str, np.ndarray]:
        """Run one batch of named inputs and return the requested responses as numpy arrays."""
        unknown = set(outputs) - self._names
        if unknown:
            for name in sorted(unknown):
                reason = self.unavailable(name)
                if reason:
                    raise IntroscopeError(reason)
            raise unknown_name_error("response", unknown, [info.name for info in self._infos])
        feeds = self._checked_feeds(inputs)
        n = next(iter(feeds.values())).shape[0]
        graph_side = sorted(o for o in outputs if o not in feeds)
        results: dict[str, np.ndarray] = {o: feeds[o] for o in outputs if o in feeds}
        if graph_side:
            session = self._session(frozenset(graph_side))
            step = self._inputs.static_batch
            try:
                if step is None or step == n:
                    arrays = _run(session, graph_side, {**self._inputs.fixed, **feeds})
                else:
                    arrays = self._run_in_chunks(session, graph_side, feeds, n, step)
            except _OnnxRuntimeFailure as exc:
                raise IntroscopeError(
                    f"{batch_failure('onnxruntime', feeds, exc.message)}. Check the input "
                    f"values (token ids within the vocabulary, indices in range, ...): the "
                    f"model itself loaded and ran on zeros"
                ) from exc.__cause__
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

    def _run_in_chunks(
        self, session: Any, names: list[str], feeds: Mapping[str, np.ndarray], n: int, step: int
    ) -> list[np.ndarray]:
        # The graph was exported for a fixed batch size: run it that many samples at a time,
        # padding the last chunk by repeating its final sample and dropping the padding after.
        parts: list[list[np.ndarray]] = [[] for _ in names]
        for start in range(0, n, step):
            stop = min(start + step, n)
            chunk = dict(self._inputs.fixed)
            for key, value in feeds.items():
                piece = value[start:stop]
                if stop - start < step:
                    pad = np.repeat(piece[-1:], step - (stop - start), axis=0)
                    piece = np.concatenate([piece, pad])
                chunk[key] = piece
            for i, array in enumerate(_run(session, names, chunk)):
                array = np.asarray(array)
                if array.ndim == 0 or array.shape[0] != step:
                    raise IntroscopeError(
                        f"ONNX response {names[i]!r} has shape {array.shape} for a chunk of "
                        f"{step} samples (the batch size the graph was exported for), so its "
                        f"dimension 0 is not the batch and it cannot be computed chunk by chunk"
                    )
                parts[i].append(array[: stop - start])
        return [np.concatenate(p) for p in parts]

    def _checked_feeds(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = self._inputs.fed
        if set(inputs) != set(expected):
            given = ", ".join(map(repr, sorted(self._inputs.fixed)))
            fixed = f" ({given} given in fixed_inputs at load)" if given else ""
            raise IntroscopeError(
                f"the ONNX model expects inputs {sorted(expected)} but got {sorted(inputs)}{fixed}"
            )
        feeds: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        for name, (dtype, shape) in expected.items():
            value = np.asarray(inputs[name])
            if value.dtype != dtype:
                if not np.can_cast(value.dtype, dtype, casting="same_kind"):
                    raise IntroscopeError(
                        f"input {name!r} has dtype {value.dtype}; the ONNX model expects {dtype}"
                    )
                check_exact_cast(
                    value,
                    dtype,
                    name,
                    expects="the ONNX model's input dtype",
                    fix="convert the data yourself, or export the model with that input as "
                    f"{value.dtype}",
                )
                value = value.astype(dtype)
            if value.ndim == 0:
                raise IntroscopeError(
                    f"input {name!r} is a scalar; every input needs the batch on dimension 0"
                )
            if shape is not None:
                ok = value.ndim == len(shape) and all(
                    not isinstance(d, int) or d <= 0 or d == a
                    for d, a in zip(shape[1:], value.shape[1:])
                )
                if not ok:
                    wanted = ("?",) + tuple(d if isinstance(d, int) else None for d in shape[1:])
                    raise IntroscopeError(
                        f"input {name!r} has shape {value.shape}; the ONNX model expects "
                        f"{format_shape(wanted)} with any batch size"
                    )
            sizes[name] = value.shape[0]
            feeds[name] = np.ascontiguousarray(value)
        if len(set(sizes.values())) != 1:
            raise IntroscopeError(f"model inputs have different batch sizes: {sizes}")
        return feeds

    def _session(self, names: frozenset[str]) -> Any:
        session = self._sessions.get(names)
        if session is not None:
            self._sessions.move_to_end(names)
            return session
        session = self._factory.make(names)
        self._sessions[names] = session
        if len(self._sessions) > _SESSION_CACHE_SIZE:
            self._sessions.popitem(last=False)
        return session

    def __repr__(self) -> str:
        return f"OnnxBackend(inputs={list(self._inputs.fed)}, {len(self._infos)} responses)"


def load_onnx_model(
    path: PathOrStr | Any,
    *,
    providers: Sequence[str] | None = None,
    session_options: Any = None,
    fixed_inputs: Mapping[str, Any] | None = None,
) -> Model:
    """Load an ONNX model (a file path or an ``onnx.ModelProto``) as an introscope ``Model``.

    Every tensor computed from the inputs whose dimension 0 is the batch is a response, named as
    in the graph, with its ``LayerKind`` from the producing node's ``op_type`` and shape and dtype
    from ONNX shape inference (the batch dimension is ``None``). When the inputs have a dynamic
    batch, a dry run on zeros with batch sizes 2 and 3 tells which tensors keep the batch on
    dimension 0 (a sequence-first tensor of a recurrent or attention layer does not); otherwise
    the inferred shapes tell, and a tensor whose dimension 0 is unknown is left out. Asking for a
    tensor that was left out raises an error that says why.

    Args:
        path: the path of a ``.onnx`` file, or an ``onnx.ModelProto``.
        providers: onnxruntime execution providers (default: all available, best first).
        session_options: an ``onnxruntime.SessionOptions`` for every session.
        fixed_inputs: values of graph inputs that are not batched (a scalar, a lookup table),
            fed as they are to every run instead of from batch fields.

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
    backend = OnnxBackend(
        path, providers=providers, session_options=session_options, fixed_inputs=fixed_inputs
    )
    return Model(backend)


class _OnnxRuntimeFailure(Exception):
    """onnxruntime raised while running a batch (``message``: its error, in one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _run(session: Any, names: list[str], feeds: Mapping[str, Any]) -> list[Any]:
    """``session.run`` without onnxruntime's own error log line; its failures as
    ``_OnnxRuntimeFailure`` (the caller names the batch)."""
    try:
        return cast("list[Any]", session.run(names, feeds, _quiet()))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no public base class
        raise _OnnxRuntimeFailure(_short(exc)) from exc
