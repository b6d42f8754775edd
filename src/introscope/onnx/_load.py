"""Reading an ONNX model from a file path (or taking an ``onnx.ModelProto`` as it is)."""

from __future__ import annotations

import logging
import pathlib
from typing import Any

from introscope.exceptions import IntroscopeError
from introscope.typing import PathOrStr

from ._proto import onnx, ort

__all__ = ["read_model"]

_logger = logging.getLogger("introscope.onnx")


def read_model(path: PathOrStr | Any) -> Any:
    """The ``onnx.ModelProto`` of a file path or of a proto, checked with ``onnx.checker``.

    Needs both ``onnx`` and ``onnxruntime`` (a ``MissingDependencyError`` names the extra).
    """
    module = onnx()
    ort()
    if isinstance(path, module.ModelProto):
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
            model = module.load(str(file))
        except Exception as exc:
            raise IntroscopeError(
                f"{str(file)!r} is not a readable ONNX model ({type(exc).__name__}: {exc})"
            ) from exc
        if not model.graph.node and not model.graph.input:
            raise IntroscopeError(f"{str(file)!r} is not an ONNX model (it has an empty graph)")
    try:
        module.checker.check_model(model)
    except Exception as exc:  # onnxruntime runs some graphs the checker rejects; let it decide
        _logger.warning("onnx.checker reports a problem with the model: %s", exc)
    return model
