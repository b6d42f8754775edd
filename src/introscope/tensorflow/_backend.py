"""Keras 3 models (Functional or built Sequential): every layer output is a response."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from introscope.base import ResponseInfo
from introscope.base._adapter_text import batch_failure, one_line
from introscope.base._model import check_exact_cast
from introscope.exceptions import IntroscopeError

from ._keras import import_keras, layer_kind
from ._layout import ChannelLayouts

__all__ = ["KerasBackend"]

_logger = logging.getLogger("introscope.tensorflow")
_SUBMODEL_CACHE_SIZE = 4


#: Float types numpy lacks (ml_dtypes'); their responses are returned as float32, exactly.
_WIDENED_FLOATS = ("bfloat16", "float8")


def _numpy_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype a tensor of Keras ``dtype`` is returned as (bfloat16 -> float32)."""
    name = str(dtype)
    if name.startswith(_WIDENED_FLOATS):
        return np.dtype(np.float32)
    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype(object)


def _host(value: np.ndarray) -> np.ndarray:
    """``value`` with a bfloat16 (or float8) dtype widened to float32, as the torch adapter does."""
    if value.dtype.name.startswith(_WIDENED_FLOATS):
        return value.astype(np.float32)
    return value


def _check_exact_in(value: np.ndarray, keras_dtype: str, name: str) -> None:
    """Integers fed to a bfloat16 (or float8) input must be representable in it exactly."""
    if value.dtype.kind not in "iu" or value.size == 0:
        return
    import ml_dtypes  # a dependency of Keras 3

    narrow = getattr(ml_dtypes, keras_dtype, None)
    if narrow is None:
        return
    kept = value.astype(np.float64).astype(narrow).astype(np.float64)
    wrong = kept != value
    if wrong.any():
        first = value[wrong].flat[0]
        raise IntroscopeError(
            f"model input {name!r} has {value.dtype} values that {keras_dtype} (the Keras "
            f"model's input dtype) cannot hold exactly, e.g. {first} becomes "
            f"{kept[wrong].flat[0]:g}; convert the data yourself, or build the model's Input "
            f"with a wider dtype"
        )


def _flatten(tensors: Any) -> list[Any]:
    if isinstance(tensors, (list, tuple)):
        return [t for item in tensors for t in _flatten(item)]
    if isinstance(tensors, dict):
        return [t for key in sorted(tensors) for t in _flatten(tensors[key])]
    return [tensors]


class KerasBackend:
    """A ``ModelBackend`` for a Keras 3 Functional or Sequential model.

    Responses are the model inputs (named after their ``InputLayer``, or after their keys for a
    model built with ``inputs={"image": ..., "meta": ...}``) and the output of every top-level
    layer, named after the layer. A layer called more than once gets one response per call
    (``name/call_1``, ...) and a layer with several outputs one per output: ``name``,
    ``name:1``, ... for a tuple or list (in its order), ``name[key]`` for a dict (``name[a][0]``
    when nested; listed in the order Keras flattens them, the outer dict's keys sorted); a nested
    model is one layer. bfloat16 (and float8)
    responses are returned, and described, as float32. Inference builds (and caches) a functional sub-model from the
    inputs to the requested outputs and runs it in inference mode.

    A response's ``channel_axis`` follows the graph from the tensors it was computed from: the
    ``data_format`` of convolution-like layers, -1 for dense, recurrent and attention layers, the
    layout of the input for element-wise layers, moved by ``Permute``, and ``None`` after a layer
    that reinterprets axes (most ``Reshape``s, ``Lambda``, custom layers).

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> inputs = keras.Input((3,), name="x")
        >>> hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
        >>> net = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
        >>> from introscope.tensorflow import KerasBackend
        >>> backend = KerasBackend(net)
        >>> [info.name for info in backend.get_response_infos()]
        ['x', 'hidden', 'logits']
        >>> out = backend.run_inference({"x": np.ones((2, 3), np.float32)}, frozenset({"hidden"}))
        >>> out["hidden"].shape
        (2, 4)
    """

    def __init__(self, model: Any) -> None:
        keras = import_keras()
        self._keras = keras
        if not isinstance(model, keras.Model):
            raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
        try:
            inputs = list(model.inputs)
        except (AttributeError, ValueError):
            inputs = []
        if not inputs:
            if isinstance(model, keras.Sequential):
                hint = (
                    "this Sequential model is not built: add a keras.Input(shape) as its first "
                    "layer or call model.build((None, *input_shape)) before loading it"
                )
            else:
                hint = (
                    "only Functional and Sequential models have a layer graph; a subclassed "
                    "keras.Model has none (rebuild it with the functional API)"
                )
            raise IntroscopeError(f"the Keras model {model.name!r} has no defined inputs: {hint}")
        self._model = model
        self._input_tensors = inputs
        keys = self._input_keys(model, inputs)
        self._input_names = [
            keys.get(id(t)) or self._source_name(t, i) for i, t in enumerate(inputs)
        ]
        self._input_dtypes = [_numpy_dtype(t.dtype) for t in inputs]
        self._input_keras_dtypes = [str(t.dtype) for t in inputs]
        self._input_shapes = [tuple(t.shape) for t in inputs]

        infos: list[ResponseInfo] = []
        tensors: dict[str, Any] = {}
        for i, (name, tensor) in enumerate(zip(self._input_names, inputs)):
            if name in tensors:
                raise IntroscopeError(f"two Keras model inputs are both named {name!r}")
            layer_name = self._source_name(tensor, i)
            kind = ResponseInfo.LayerKind.PLACEHOLDER
            infos.append(self._info(name, tensor, layer_name, kind, "InputLayer"))
            tensors[name] = tensor
        node_ids = self._model_node_ids(model)
        layouts = ChannelLayouts()
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            calls = self._layer_calls(layer, node_ids)
            kind, typename = layer_kind(layer), type(layer).__name__
            for c, (node, outputs) in enumerate(calls):
                base = layer.name if c == 0 else f"{layer.name}/call_{c}"
                out_keys = self._output_keys(layer, node, outputs)
                for j, tensor in enumerate(outputs):
                    if out_keys is not None:
                        name = base + "".join(f"[{k}]" for k in out_keys[j])
                    else:
                        name = base if len(outputs) == 1 or j == 0 else f"{base}:{j}"
                    if name in tensors:
                        raise IntroscopeError(f"two Keras responses are both named {name!r}")
                    tensors[name] = tensor
                    info = self._info(name, tensor, layer.name, kind, typename)
                    axis = layouts.axis(tensor) if len(info.shape) >= 3 else None
                    infos.append(dataclasses.replace(info, channel_axis=axis))
        self._infos = infos
        self._tensors = tensors
        self._submodels: OrderedDict[tuple[str, ...], Any] = OrderedDict()

    @staticmethod
    def _input_keys(model: Any, inputs: list[Any]) -> dict[int, str]:
        """Input names from a model built with a dict of inputs: ``id(tensor) -> key``."""
        struct = getattr(model, "_inputs_struct", None)
        if not isinstance(struct, Mapping):
            return {}
        keys = {id(t): str(k) for k, t in struct.items() if any(t is x for x in inputs)}
        return keys if len(keys) == len(inputs) else {}  # nested structures: layer names

    @staticmethod
    def _source_name(tensor: Any, index: int) -> str:
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None) if history is not None else None
        name = getattr(operation, "name", None) or getattr(tensor, "name", None)
        return str(name) if name else f"input_{index}"

    @staticmethod
    def _model_node_ids(model: Any) -> set[int] | None:
        by_depth = getattr(model, "_nodes_by_depth", None)
        if not by_depth:
            functional = getattr(model, "_functional", None)  # a built Sequential
            by_depth = getattr(functional, "_nodes_by_depth", None)
        if not by_depth:
            return None
        return {id(node) for nodes in by_depth.values() for node in nodes}

    @staticmethod
    def _layer_calls(layer: Any, node_ids: set[int] | None) -> list[tuple[Any, list[Any]]]:
        """``(node, flat outputs)`` of each call of ``layer`` in the model's graph."""
        nodes = list(getattr(layer, "_inbound_nodes", []))
        if node_ids is not None:
            nodes = [node for node in nodes if id(node) in node_ids]
        if nodes:
            return [(node, _flatten(node.output_tensors)) for node in nodes]
        # Private graph attributes unavailable: fall back to the public (first call) output.
        return [(None, _flatten(layer.output))]

    def _output_keys(
        self, layer: Any, node: Any, outputs: list[Any]
    ) -> list[tuple[Any, ...]] | None:
        """The path of each output of a call that returned a dict (``[("logits",), ...]``).

        Keras keeps a call's outputs flattened (dict values in sorted key order) and not their
        structure, which the layer's symbolic ``compute_output_spec`` on the call's arguments
        gives again. None for a single output, tuples and lists (named ``name:j``), or when the
        structure cannot be had.
        """
        if len(outputs) < 2 or node is None:
            return None
        try:
            arguments = node.arguments
            spec = layer.compute_output_spec(*arguments.args, **arguments.kwargs)
            paths = [tuple(path) for path, _ in self._keras.tree.flatten_with_path(spec)]
            leaves = self._keras.tree.flatten(spec)
        except Exception:  # noqa: BLE001 - the names fall back to positions
            _logger.debug("no output structure for Keras layer %r", layer.name, exc_info=True)
            return None
        same = len(leaves) == len(outputs) and all(
            tuple(a.shape) == tuple(b.shape) for a, b in zip(leaves, outputs)
        )
        if not same or not any(isinstance(k, str) for path in paths for k in path):
            return None
        return paths

    @staticmethod
    def _info(
        name: str, tensor: Any, layer_name: str, kind: ResponseInfo.LayerKind, typename: str
    ) -> ResponseInfo:
        shape = tuple(tensor.shape)
        shape = ((None,) + tuple(shape[1:])) if shape else ()
        return ResponseInfo(
            name=name,
            dtype=_numpy_dtype(tensor.dtype),
            shape=shape,
            layer=ResponseInfo.Layer(name=layer_name, kind=kind, typename=typename),
        )

    @property
    def model(self) -> Any:
        """The wrapped Keras model."""
        return self._model

    # -- ModelBackend ---------------------------------------------------------------------------

    def get_response_infos(self) -> list[ResponseInfo]:
        """Every response the model can produce, in the model's order."""
        return list(self._infos)

    def get_input_layer_responses(self) -> list[ResponseInfo]:
        """The model's inputs."""
        return self._infos[: len(self._input_names)]

    def run_inference(
        self, inputs: Mapping[str, np.ndarray], outputs: frozenset[str]
    ) -> Mapping[str, np.ndarray]:
        """Run one batch of named inputs and return the requested responses as numpy arrays."""
        feeds = self._checked_feeds(inputs)
        unknown = outputs - set(self._tensors)
        if unknown:
            raise IntroscopeError(f"the Keras model has no responses {sorted(unknown)}")
        by_input = dict(zip(self._input_names, feeds))
        results = {name: by_input[name] for name in outputs if name in by_input}
        names = tuple(sorted(n for n in outputs if n not in by_input))
        if names:
            submodel = self._submodel(names)
            try:
                with self._no_grad():
                    values = submodel(feeds, training=False)
            except IntroscopeError:
                raise
            except Exception as exc:  # noqa: BLE001 - Keras and its backends share no base class
                given = dict(zip(self._input_names, feeds))
                raise IntroscopeError(
                    f"{batch_failure('Keras', given, one_line(exc))} ({type(exc).__name__}). "
                    f"Check the input values (token ids within the vocabulary, indices in "
                    f"range, ...)"
                ) from exc
            values = _flatten(values)
            convert = self._keras.ops.convert_to_numpy
            for name, value in zip(names, values):
                results[name] = _host(np.asarray(convert(value)))
        return results

    # -- helpers -------------------------------------------------------------------------------

    def _no_grad(self) -> Any:
        # On the torch backend an eager call records autograd history unless told not to.
        if self._keras.backend.backend() == "torch":
            import torch

            return torch.no_grad()
        return contextlib.nullcontext()

    def _submodel(self, names: tuple[str, ...]) -> Any:
        submodel = self._submodels.get(names)
        if submodel is not None:
            self._submodels.move_to_end(names)
            return submodel
        submodel = self._keras.Model(
            inputs=list(self._input_tensors), outputs=[self._tensors[n] for n in names]
        )
        self._submodels[names] = submodel
        if len(self._submodels) > _SUBMODEL_CACHE_SIZE:
            self._submodels.popitem(last=False)
        _logger.debug("built a Keras sub-model for %d responses", len(names))
        return submodel

    def _checked_feeds(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if set(inputs) != set(self._input_names):
            raise IntroscopeError(
                f"the Keras model expects inputs {self._input_names} but got {sorted(inputs)}"
            )
        feeds = []
        sizes = set()
        specs = zip(
            self._input_names, self._input_dtypes, self._input_shapes, self._input_keras_dtypes
        )
        for name, dtype, shape, keras_dtype in specs:
            value = np.asarray(inputs[name])
            if keras_dtype.startswith(_WIDENED_FLOATS):
                _check_exact_in(value, keras_dtype, name)
            if value.dtype != dtype and dtype != np.dtype(object):
                if not np.can_cast(value.dtype, dtype, casting="same_kind"):
                    raise IntroscopeError(
                        f"input {name!r} has dtype {value.dtype}; the Keras model expects {dtype}"
                    )
                check_exact_cast(
                    value,
                    dtype,
                    name,
                    expects="the Keras model's input dtype",
                    fix=f"convert the data yourself, or build the model's Input with dtype "
                    f"{str(value.dtype)!r}",
                )
                value = value.astype(dtype)
            ok = value.ndim == len(shape) and all(
                d is None or d == a for d, a in zip(shape[1:], value.shape[1:])
            )
            if not ok:
                expected = ", ".join("?" if d is None else str(d) for d in shape)
                raise IntroscopeError(
                    f"input {name!r} has shape {value.shape}; the Keras model expects "
                    f"({expected}) with any batch size"
                )
            sizes.add(value.shape[0])
            feeds.append(value)
        if len(sizes) != 1:
            raise IntroscopeError(f"model inputs have different batch sizes: {sorted(sizes)}")
        return feeds

    def __repr__(self) -> str:
        return f"KerasBackend({self._model.name!r}, {len(self._infos)} responses)"
