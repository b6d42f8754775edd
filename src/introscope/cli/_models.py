"""Loading a model file for the command line and choosing its layers."""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError, MissingDependencyError

__all__ = [
    "InputFileError",
    "InputSpec",
    "load_model",
    "is_torch",
    "input_spec",
    "check_one_input",
    "layer_rows",
    "select_layers",
    "embedding_layer",
    "KIND_ALIASES",
]

_TORCH = (".pt", ".pth", ".ts", ".torchscript")
_KERAS = (".keras", ".h5", ".hdf5")


class InputFileError(IntroscopeError):
    """A model or data file is missing, unreadable or of an unknown kind (exit status 3)."""


def is_torch(path: str | os.PathLike[str], constructor: str | None) -> bool:
    """Whether ``load_model`` reads ``path`` with the PyTorch adapter."""
    return constructor is not None or pathlib.Path(path).suffix.lower() in _TORCH


def load_constructor(spec: str) -> Any:
    """Import ``module:Class`` (the current folder is importable, as a user expects)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise IntroscopeValueError(
            f"--constructor must look like 'package.module:Class', got {spec!r}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise IntroscopeValueError(
            f"--constructor {spec!r}: cannot import it ({type(exc).__name__}: {exc}); run from the "
            f"folder that holds {module_name.split('.')[0]!r} or install it"
        ) from exc
    if not callable(obj):
        raise IntroscopeValueError(f"--constructor {spec!r} is not callable")
    return obj


def load_model(
    path: str | os.PathLike[str],
    *,
    constructor: str | None = None,
    device: str | None = None,
    example_shape: Sequence[int] | None = None,
    example: np.ndarray | None = None,
    example_dtype: str = "float32",
) -> Any:
    """An introscope ``Model`` from ``.onnx``, ``.keras``/``.h5``, TorchScript or a state dict.

    PyTorch modules declare no input: ``example`` (a batch of the data) or ``example_shape``
    (per sample, of ``example_dtype``: int64 for token ids) lets the adapter run them once to
    learn their responses."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputFileError(f"--model {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from introscope.onnx import load_onnx_model

        with _reading_model(p):
            return load_onnx_model(p, providers=onnx_providers(device))
    if suffix in _TORCH or constructor:
        from introscope.torch import load_torch_model_from_memory, load_torch_model_from_path

        ctor = load_constructor(constructor) if constructor else None
        if not p.is_file():
            raise InputFileError(f"--model {str(p)!r} is not a file")
        if example is None and example_shape is not None:
            example = np.zeros((2, *example_shape), dtype=np.dtype(example_dtype))
        if ctor is not None:
            from ._checkpoint import load_state_dict_module

            module = load_state_dict_module(p, ctor, str(constructor))
            model = load_torch_model_from_memory(module, device=device)
        else:
            with _reading_model(p):  # reading the file; the dry run below is not a file error
                model = load_torch_model_from_path(p, None, device=device)
        if example is None:
            return model
        check_one_input(model, p)
        if example_shape is None:
            return model.dry_run(example)
        try:
            return model.dry_run(example)
        except IntroscopeError as exc:  # the shape and dtype came from the command line
            raise IntroscopeValueError(
                f"{exc}; check --input-shape {','.join(map(str, example_shape))} and "
                f"--input-dtype {example_dtype} (int64 for token ids)"
            ) from exc
    if suffix in _KERAS or p.is_dir():
        from introscope.tensorflow import load_tf_model_from_path

        with _reading_model(p):
            return load_tf_model_from_path(p)
    raise InputFileError(
        f"--model {str(p)!r}: unknown model type {suffix or '(no suffix)'!r}; expected .onnx, "
        f".keras/.h5, a TorchScript .pt, or a state dict with --constructor module:Class"
    )


@contextlib.contextmanager
def _reading_model(path: pathlib.Path) -> Iterator[None]:
    """A model file the adapter cannot read is an input error (exit status 3), named by flag."""
    try:
        yield
    except (IntroscopeValueError, MissingDependencyError, InputFileError):
        raise
    except IntroscopeError as exc:
        text = str(exc).replace(
            "also pass model_constructor", "also pass --constructor module:Class"
        )
        if path.is_file() and "File not found" in text:  # Keras' words for an unreadable file
            text = f"{str(path)!r} is not a readable Keras model file"
        named = "--model" if repr(str(path)) in text else f"--model {str(path)!r}"
        raise InputFileError(f"{named}: {text}") from exc


def check_one_input(model: Any, path: pathlib.Path) -> None:
    """The command line feeds one array per sample: a forward with more inputs is refused."""
    names = list(getattr(getattr(model, "backend", None), "input_names", None) or [])
    if not names:
        try:
            names = list(model.input_layers)
        except Exception:  # a model that declares its inputs only after a run
            names = []
    if len(names) > 1:
        raise IntroscopeValueError(
            f"--model {str(path)!r} takes {len(names)} inputs {names}, but the command line "
            f"feeds one input array (--data, or --input-shape); wrap the model in a module "
            f"whose forward takes one tensor and makes the others, or use the Python API with "
            f"batches that hold every input"
        )


def onnx_providers(device: str | None) -> list[str]:
    """onnxruntime execution providers for ``--device`` (cpu, cuda, cuda:N)."""
    if device in (None, "cpu"):
        return ["CPUExecutionProvider"]
    if device == "cuda" or (device or "").startswith("cuda:"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise IntroscopeValueError(
                f"--device {device!r}: this onnxruntime has no CUDA execution provider "
                f"(available: {', '.join(ort.get_available_providers())}); use --device cpu"
            )
        index = device.partition(":")[2]
        cuda = ("CUDAExecutionProvider", {"device_id": int(index)}) if index.isdigit() else None
        return [cuda or "CUDAExecutionProvider", "CPUExecutionProvider"]  # type: ignore[list-item]
    raise IntroscopeValueError(
        f"--device {device!r} is not a device for an ONNX model; use cpu, cuda or cuda:N"
    )


@dataclass(frozen=True)
class InputSpec:
    """What the model's single input declares: layout, channels and size (None when unknown)."""

    name: str | None
    layout: str  # "HWC", "CHW" or "HW"
    channels: int | None
    size: tuple[int, int] | None  # (width, height)
    dtype: Any = None  # the declared dtype (None when the model declares none: PyTorch)


def input_spec(model: Any, channels_last: bool | None = None) -> InputSpec:
    """Read the image layout from the model's declared input (one 2-D or 3-D image input)."""
    inputs = list(model.input_layers.values()) if model is not None else []
    if len(inputs) != 1:
        return InputSpec(None, "HWC", None, None, None)
    info = inputs[0]
    shape = tuple(info.shape[1:])
    try:
        dtype = np.dtype(info.dtype)
    except TypeError:
        dtype = None
    if len(shape) == 2:
        h, w = shape
        size = (w, h) if h is not None and w is not None else None
        return InputSpec(info.name, "HW", 1, size, dtype)
    if len(shape) != 3:
        return InputSpec(info.name, "HWC", None, None, dtype)
    a, b, c = shape
    if channels_last is None:
        first = a in (1, 3, 4) and c not in (1, 3, 4)
        last = c in (1, 3, 4) and a not in (1, 3, 4)
        keras = type(getattr(model, "backend", None)).__name__ == "KerasBackend"
        channels_last = last or (not first and keras)
    if channels_last:
        size = (b, a) if a is not None and b is not None else None
        return InputSpec(info.name, "HWC", c, size, dtype)
    size = (c, b) if b is not None and c is not None else None
    return InputSpec(info.name, "CHW", a, size, dtype)


def layer_rows(model: Any) -> list[tuple[str, str, str, str, str]]:
    """(name, kind, framework type, shape, channel axis) of every input and response; an input
    that is also a response (a PLACEHOLDER: ONNX, Keras) is one INPUT row."""
    from introscope.base import ResponseInfo

    rows = []
    responses = model.response_infos
    placeholder = ResponseInfo.LayerKind.PLACEHOLDER
    inputs = set(model.input_layers)
    for name, info in model.input_layers.items():
        same = responses.get(name)
        typename = same.layer.typename if same is not None and same.layer.typename else "-"
        rows.append((name, "INPUT", typename, _shape(info.shape), "-"))
    for name, info in responses.items():
        if name in inputs and info.layer.kind == placeholder:
            continue
        axis = "-" if info.channel_axis is None else str(info.channel_axis)
        rows.append((name, info.layer.kind.name, info.layer.typename, _shape(info.shape), axis))
    return rows


def _shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


#: ``--layer-kind`` spellings: lowercase LayerKind names, plus a few common aliases.
KIND_ALIASES = {"conv": "CONV_2D", "conv2d": "CONV_2D", "dense": "DENSE", "linear": "DENSE"}


def _kinds(kinds: Sequence[str]) -> set[Any]:
    from introscope.base import ResponseInfo

    members = ResponseInfo.LayerKind.__members__  # aliases too: DENSE is LINEAR
    out = set()
    for k in kinds:
        name = KIND_ALIASES.get(k.lower(), k.upper())
        if name not in members:
            raise IntroscopeValueError(
                f"--layer-kind {k!r} is not a layer kind; choose from "
                f"{sorted(n.lower() for n in members)}"
            )
        out.add(members[name])
    return out


def select_layers(
    model: Any, names: Sequence[str] | None, kinds: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """(IUA layers, PFA layers) in model order.

    ``--layers`` and ``--layer-kind`` pick both. By default IUA looks at activation outputs (ReLU
    family), or at conv/dense outputs when the model has none (Keras fuses activations); PFA at
    conv and dense layers except those that make the output (:func:`output_layers`).
    """
    infos = model.response_infos
    order = list(infos)
    if names:
        unknown = [n for n in names if n not in infos]
        if unknown:
            raise IntroscopeValueError(
                f"--layers: the model has no response named {unknown}; "
                f"`introscope layers --model ...` lists them"
            )
        chosen = [n for n in order if n in set(names)]
        return chosen, chosen
    if kinds:
        wanted = _kinds(kinds)
        chosen = [n for n in order if infos[n].layer.kind in wanted]
        if not chosen:
            raise IntroscopeValueError(
                f"--layer-kind {list(kinds)}: the model has no such layers; "
                f"`introscope layers --model ...` lists the kinds it has"
            )
        return chosen, chosen
    acts = _kinds(["relu", "relu6", "leaky_relu", "prelu", "elu"])
    weighted = _kinds(
        [
            "conv_1d",
            "conv_2d",
            "conv_3d",
            "conv_transpose_1d",
            "conv_transpose_2d",
            "conv_transpose_3d",
            "dense",
        ]
    )
    iua = [n for n in order if infos[n].layer.kind in acts]
    heads = output_layers(model, weighted)
    pfa = [n for n in order if infos[n].layer.kind in weighted and n not in heads]
    if not iua:
        iua = list(pfa)
    return iua, pfa


def _same_shape(a: Any, b: Any) -> bool:
    return tuple(a.shape[1:]) == tuple(b.shape[1:])


def _units(info: Any) -> int | None:
    """Channels (along the channel axis) or features (last axis) of a response."""
    shape = tuple(info.shape)
    if len(shape) < 2:
        return None
    axis = info.channel_axis if info.channel_axis is not None else len(shape) - 1
    return cast("int | None", shape[axis])


def output_layers(model: Any, weighted: set[Any]) -> set[str]:
    """Conv and dense layers that make the model's output: their units are the output's (the
    classes of a classifier, the channels of a segmentation map), so PFA must not shrink them.

    Walking back from the final response past parameter-free ones (activation, pooling,
    flatten): the last conv or dense layer is one when it is the final response, has the
    output's shape or as many units as the output (logits; a fully-convolutional classifier's
    1x1 conv before its global pooling). Only that one: a layer before it of the same width is
    a hidden layer (a constant-width MLP), which PFA may shrink."""
    infos = model.response_infos
    order = list(infos)
    if not order:
        return set()
    final = infos[order[-1]]
    for name in reversed(order):
        info = infos[name]
        if info.layer.kind not in weighted:
            continue
        if _same_shape(info, final) or name == order[-1] or _units(info) == _units(final):
            return {name}
        return set()
    return set()


def embedding_layer(model: Any, requested: str | None) -> str:
    """The response whose vectors feed familiarity, duplicates and the map.

    ``--embedding-layer`` when given; otherwise the last flat response before the output block
    (walking back from the final response past those of the same shape: the logits).
    """
    infos = model.response_infos
    if requested:
        if requested not in infos:
            raise IntroscopeValueError(
                f"--embedding-layer: the model has no response named {requested!r}; "
                f"`introscope layers --model ...` lists them"
            )
        return requested
    order = list(infos)
    if not order:
        raise IntroscopeError("the model has no responses")
    final = infos[order[-1]]
    for name in reversed(order):
        info = infos[name]
        if len(info.shape) == 2 and not _same_shape(info, final):
            return cast(str, name)
    return cast(str, order[-1])
