"""``Model``: a framework model wrapped as a pipeline stage that adds its responses to batches."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeKeyError
from introscope.typing import OneManyOrNone, resolve_one_many_or_none

from ._batch import Batch
from ._pipeline import PipelineStage
from ._response_info import ResponseInfo

_T = TypeVar("_T")

__all__ = [
    "Model",
    "ModelBackend",
    "ResponseInfoMapping",
    "check_exact_cast",
    "unknown_name_error",
]


@runtime_checkable
class ModelBackend(Protocol):
    """What a framework adapter implements to become a [`Model`][introscope.base.Model].

    Examples:
        A minimal numpy backend with one input ``"x"`` and one response ``"double"``:

        >>> import numpy as np
        >>> from introscope.base import ModelBackend, ResponseInfo
        >>> def info(name):
        ...     layer = ResponseInfo.Layer(name, ResponseInfo.LayerKind.UNKNOWN, "numpy")
        ...     return ResponseInfo(name, np.dtype(np.float64), (None, 2), layer)
        >>> class Doubler:
        ...     def run_inference(self, inputs, outputs):
        ...         return {"double": 2 * inputs["x"]}
        ...     def get_response_infos(self):
        ...         return [info("double")]
        ...     def get_input_layer_responses(self):
        ...         return [info("x")]
        >>> isinstance(Doubler(), ModelBackend)
        True
    """

    def run_inference(
        self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]
    ) -> Mapping[str, np.ndarray]:
        """Run one batch of named inputs and return the requested responses as numpy arrays."""
        ...

    def get_response_infos(self) -> Iterable[ResponseInfo]:
        """Every response the model can produce."""
        ...

    def get_input_layer_responses(self) -> Sequence[ResponseInfo]:
        """The model's inputs."""
        ...


def check_exact_cast(
    arr: np.ndarray, dtype: np.dtype | type, name: str, *, expects: str, fix: str
) -> None:
    """Raise when converting ``arr`` to ``dtype`` would change a value beyond rounding.

    int64 ids above 2**24 into float32 round, uint64 above 2**63 into int64 and int64 beyond
    2**31 into int32 wrap; finite floats beyond a narrower float's range (1e39 into float32,
    70,000 into float16) would become inf. Other floats round as they convert, and bools convert
    as they are. ``expects`` says whose dtype it is (``"the ONNX model expects"``), ``fix`` what
    to do.
    """
    dtype = np.dtype(dtype)
    if arr.dtype.kind == "f" and dtype.kind == "f" and dtype.itemsize < arr.dtype.itemsize:
        _check_float_range(arr, dtype, name, expects=expects, fix=fix)
        return
    if arr.dtype.kind not in "iu" or np.can_cast(arr.dtype, dtype, "safe") or arr.size == 0:
        return
    if dtype.kind not in "iuf":
        return
    lo, hi = int(arr.min()), int(arr.max())
    if dtype.kind == "f":
        limit = 2 ** (np.finfo(dtype).nmant + 1)  # every integer up to it is exact
        fits, what = -limit <= lo and hi <= limit, f"integers beyond +-{limit:,}"
    else:
        info = np.iinfo(dtype)
        fits, what = info.min <= lo and hi <= info.max, f"the range [{info.min}, {info.max}]"
    if not fits:
        raise IntroscopeError(
            f"model input {name!r} has {arr.dtype} values in [{lo}, {hi}], which {dtype} "
            f"({expects}) cannot hold exactly ({what}); {fix}"
        )


def _check_float_range(
    arr: np.ndarray, dtype: np.dtype, name: str, *, expects: str, fix: str
) -> None:
    """Raise when finite values of ``arr`` overflow the narrower float ``dtype``."""
    if arr.size == 0:
        return
    big = float(np.finfo(dtype).max)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if -big <= lo and hi <= big:
        return  # the common case: two reductions; NaN or inf anywhere goes the long way
    over = np.isfinite(arr) & (np.abs(arr) > big)
    count = int(np.count_nonzero(over))
    if count:
        largest = float(np.max(np.abs(arr[over])))
        raise IntroscopeError(
            f"model input {name!r} has {count} finite {arr.dtype} value(s) beyond "
            f"+-{big:.6g} (largest |x| = {largest:.6g}), which {dtype} ({expects}) cannot "
            f"hold: they would become inf; scale the data, or {fix}"
        )


def unknown_name_error(
    kind: str, unknown: Iterable[str], known: Iterable[str]
) -> IntroscopeKeyError:
    """An error for names not among ``known``, listing close matches."""
    known = list(known)
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    shown = ", ".join(map(repr, known[:20])) + (", ..." if len(known) > 20 else "")
    return IntroscopeKeyError(f"unknown {kind} {', '.join(parts)}; available: {shown}")


class ResponseInfoMapping(Mapping[str, ResponseInfo]):
    """Mapping of response name to ``ResponseInfo`` that may also be called.

    DNIKit's documentation writes both ``model.response_infos`` and ``model.response_infos()``;
    both give this mapping.
    """

    def __init__(self, infos: Mapping[str, ResponseInfo]) -> None:
        self._infos = dict(infos)

    def __getitem__(self, name: str) -> ResponseInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise unknown_name_error("response", [name], self._infos) from None

    def __contains__(self, name: object) -> bool:
        # Mapping's default __contains__/get rely on KeyError, which __getitem__ does not raise.
        return name in self._infos

    @overload
    def get(self, name: str) -> ResponseInfo | None: ...
    @overload
    def get(self, name: str, default: ResponseInfo | _T) -> ResponseInfo | _T: ...
    def get(self, name: str, default: Any = None) -> Any:
        return self._infos.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __call__(self) -> ResponseInfoMapping:
        return self

    def __repr__(self) -> str:
        return f"ResponseInfoMapping({list(self._infos)})"


class _ModelStage(PipelineStage):
    def __init__(self, model: Model, requested: frozenset[str]) -> None:
        self._model = model
        self._requested = requested

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        inputs = self._model.input_layers
        backend = self._model._backend

        def process(batch: Batch) -> Batch:
            fields = dict(batch.fields)
            if not fields:
                raise IntroscopeError("the model stage received a batch with no fields to infer on")
            if len(inputs) == 1 and len(fields) == 1:
                (field, value), (input_name, info) = (
                    next(iter(fields.items())),
                    next(iter(inputs.items())),
                )
                expected = tuple(info.shape[1:])
                if field != input_name:
                    if not _shape_matches(value.shape[1:], expected):
                        raise IntroscopeError(
                            f"batch field {field!r} has per-element shape {value.shape[1:]} but "
                            f"the model input {input_name!r} expects {_fmt(expected)}"
                        )
                    fields = {input_name: value}
            elif not set(inputs) <= set(fields):
                raise IntroscopeError(
                    f"the model expects inputs named {sorted(inputs)} but the batch has fields "
                    f"{sorted(fields)}; rename fields with introscope.processors.FieldRenamer"
                )
            elif len(fields) > len(inputs):
                # Other fields (labels, masks) ride along as in DNIKit: the model reads its
                # inputs by name, and the output batch holds the responses.
                fields = {name: fields[name] for name in inputs}
            for name, value in fields.items():
                if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
                    raise IntroscopeError(
                        f"model input {name!r} must be numeric, got dtype {value.dtype}"
                    )
            result = backend.run_inference(fields, self._requested)
            missing = self._requested - set(result)
            if missing:
                raise IntroscopeError(f"the model backend did not return {sorted(missing)}")
            builder = Batch.Builder(base=batch)
            builder.fields = {name: result[name] for name in self._requested_order()}
            return builder.make_batch()

        return process

    def _requested_order(self) -> list[str]:
        order = list(self._model.response_infos)
        return sorted(self._requested, key=lambda n: order.index(n) if n in order else len(order))

    def __repr__(self) -> str:
        return f"Model.stage({sorted(self._requested)})"


def _shape_matches(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(
        e is None or a == e for a, e in zip(actual, expected)
    )


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class Model:
    """A framework model; ``model(names)`` is a pipeline stage that adds those responses.

    Build one with a loader such as ``introscope.torch.load_torch_model_from_memory``,
    ``introscope.tensorflow.load_tf_model_from_path`` or ``introscope.onnx.load_onnx_model``.

    Examples:
        Wrapping a minimal numpy backend (the loaders return a ``Model`` like this one):

        >>> import numpy as np
        >>> from introscope.base import Batch, Model, ResponseInfo, pipeline, producer_from_batches
        >>> def info(name):
        ...     layer = ResponseInfo.Layer(name, ResponseInfo.LayerKind.UNKNOWN, "numpy")
        ...     return ResponseInfo(name, np.dtype(np.float64), (None, 2), layer)
        >>> class Doubler:
        ...     def run_inference(self, inputs, outputs):
        ...         return {"double": 2 * inputs["x"]}
        ...     def get_response_infos(self):
        ...         return [info("double")]
        ...     def get_input_layer_responses(self):
        ...         return [info("x")]
        >>> model = Model(Doubler())
        >>> list(model.response_infos)
        ['double']
        >>> source = producer_from_batches(Batch({"x": np.ones((3, 2))}))
        >>> next(iter(pipeline(source, model("double"))(batch_size=3))).fields["double"][0]
        array([2., 2.])
    """

    def __init__(self, backend: ModelBackend) -> None:
        self._backend = backend
        self._response_infos = ResponseInfoMapping(
            {r.name: r for r in backend.get_response_infos()}
        )
        self._input_layers = ResponseInfoMapping(
            {r.name: r for r in backend.get_input_layer_responses()}
        )

    @property
    def response_infos(self) -> ResponseInfoMapping:
        """Mapping of response name to ``ResponseInfo`` (also callable, as in DNIKit docs)."""
        return self._response_infos

    @property
    def input_layers(self) -> ResponseInfoMapping:
        """Mapping of input name to [`ResponseInfo`][introscope.base.ResponseInfo]."""
        return self._input_layers

    @property
    def backend(self) -> ModelBackend:
        """The framework adapter that runs the model."""
        return self._backend

    def __call__(self, requested_responses: OneManyOrNone[str] = None) -> PipelineStage:
        """A stage whose output batches hold the requested responses (all when ``None``)."""
        requested = resolve_one_many_or_none(requested_responses, str)
        if requested is None:
            requested = frozenset(self._response_infos)
        if not requested:
            raise IntroscopeError("requested_responses is empty; name at least one response")
        unknown = requested - set(self._response_infos)
        if unknown:
            # An adapter may know why an output it saw is not a response (torch: no batch axis).
            explain = getattr(self._backend, "unavailable", None)
            if explain is not None:
                for name in sorted(unknown):
                    reason = explain(name)
                    if reason:
                        raise IntroscopeError(reason)
            raise unknown_name_error("response", unknown, self._response_infos)
        return _ModelStage(self, frozenset(requested))

    def __repr__(self) -> str:
        return f"Model({type(self._backend).__name__}, {len(self._response_infos)} responses)"
