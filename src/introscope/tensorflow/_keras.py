"""Import Keras 3 lazily (on the torch backend unless told otherwise) and classify its layers."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, TypeAlias

from introscope.base import ResponseInfo
from introscope.exceptions import IntroscopeError, MissingDependencyError, require

__all__ = ["import_keras", "layer_kind"]

Kind: TypeAlias = ResponseInfo.LayerKind


def import_keras() -> Any:
    """The ``keras`` module (3.x); ``KERAS_BACKEND`` defaults to ``torch`` if Keras is not loaded.

    Keras reads ``KERAS_BACKEND`` once, at its first import: set it before importing introscope
    or keras to use TensorFlow or JAX instead. Without it Keras would pick TensorFlow, which the
    ``keras`` extra does not install.
    """
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        if importlib.util.find_spec("keras") is not None:
            try:
                importlib.import_module("keras")
            except ImportError as exc:
                raise _backend_error(exc) from exc
    keras = require("keras", "keras", "Keras models")
    major = str(getattr(keras, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 3:
        raise IntroscopeError(
            f"introscope.tensorflow needs Keras 3, found keras {keras.__version__}; "
            f"upgrade with: pip install 'introscope[keras]'"
        )
    return keras


#: Packages a Keras backend needs; a failed import of one of them is the backend's, not Keras'.
_BACKEND_PACKAGES = frozenset({"tensorflow", "jax", "jaxlib", "torch", "openvino"})


def _backend_error(exc: ImportError) -> MissingDependencyError:
    """Keras is installed but does not import: its backend's package (or a dependency) is missing."""
    package = (getattr(exc, "name", None) or "").split(".")[0] or "?"
    chosen = os.environ.get("KERAS_BACKEND")
    if package in _BACKEND_PACKAGES:
        where = f"KERAS_BACKEND={chosen!r}" if chosen else "the backend of ~/.keras/keras.json"
        text = (
            f"introscope.tensorflow: keras is installed, but {where} selects a backend whose "
            f"package {package!r} does not import ({type(exc).__name__}: {exc}). Install it "
            f"(pip install {package}), or set KERAS_BACKEND=torch before importing keras or "
            f"introscope (the 'keras' extra installs torch)"
        )
    else:
        text = (
            f"introscope.tensorflow: keras is installed but does not import "
            f"(KERAS_BACKEND={chosen!r}): {type(exc).__name__}: {exc}. Install the missing "
            f"package, or reinstall with: pip install 'introscope[keras]'"
        )
    error = MissingDependencyError(package, "keras", "Keras models")
    error.args = (text,)
    return error


_BY_CLASS: dict[str, Kind] = {
    "Embedding": Kind.EMBEDDING,
    "InputLayer": Kind.PLACEHOLDER,
    "Dense": Kind.DENSE,
    "EinsumDense": Kind.DENSE,
    "Conv1D": Kind.CONV_1D,
    "Conv2D": Kind.CONV_2D,
    "Conv3D": Kind.CONV_3D,
    "DepthwiseConv1D": Kind.CONV_1D,
    "DepthwiseConv2D": Kind.CONV_2D,
    "SeparableConv1D": Kind.CONV_1D,
    "SeparableConv2D": Kind.CONV_2D,
    "Conv1DTranspose": Kind.CONV_TRANSPOSE_1D,
    "Conv2DTranspose": Kind.CONV_TRANSPOSE_2D,
    "Conv3DTranspose": Kind.CONV_TRANSPOSE_3D,
    "MaxPooling1D": Kind.MAX_POOLING_1D,
    "MaxPooling2D": Kind.MAX_POOLING_2D,
    "MaxPooling3D": Kind.MAX_POOLING_3D,
    "GlobalMaxPooling1D": Kind.MAX_POOLING_1D,
    "GlobalMaxPooling2D": Kind.MAX_POOLING_2D,
    "GlobalMaxPooling3D": Kind.MAX_POOLING_3D,
    "AveragePooling1D": Kind.AVERAGE_POOLING_1D,
    "AveragePooling2D": Kind.AVERAGE_POOLING_2D,
    "AveragePooling3D": Kind.AVERAGE_POOLING_3D,
    "GlobalAveragePooling1D": Kind.AVERAGE_POOLING_1D,
    "GlobalAveragePooling2D": Kind.AVERAGE_POOLING_2D,
    "GlobalAveragePooling3D": Kind.AVERAGE_POOLING_3D,
    # DNIKit's TensorFlow loader reports every Keras batch norm as BATCH_NORM; kept for parity.
    "BatchNormalization": Kind.BATCH_NORM,
    "LayerNormalization": Kind.LAYER_NORM,
    "LSTM": Kind.LSTM,
    "ConvLSTM1D": Kind.LSTM,
    "ConvLSTM2D": Kind.LSTM,
    "ConvLSTM3D": Kind.LSTM,
    "GRU": Kind.GRU,
    "SimpleRNN": Kind.RNN,
    "RNN": Kind.RNN,
    "Dropout": Kind.DROPOUT,
    "AlphaDropout": Kind.DROPOUT,
    "GaussianDropout": Kind.DROPOUT,
    "SpatialDropout1D": Kind.DROPOUT,
    "SpatialDropout2D": Kind.DROPOUT_2D,
    "SpatialDropout3D": Kind.DROPOUT_3D,
    "Softmax": Kind.SOFTMAX,
    "LeakyReLU": Kind.LEAKY_RELU,
    "PReLU": Kind.PRELU,
    "ELU": Kind.ELU,
    "Attention": Kind.ATTENTION,
    "AdditiveAttention": Kind.ATTENTION,
    "MultiHeadAttention": Kind.ATTENTION,
    "GroupQueryAttention": Kind.ATTENTION,
}

_BY_ACTIVATION: dict[str, Kind] = {
    "relu": Kind.RELU,
    "relu6": Kind.RELU6,
    "leaky_relu": Kind.LEAKY_RELU,
    "elu": Kind.ELU,
    "sigmoid": Kind.SIGMOID,
    "tanh": Kind.TANH,
    "softmax": Kind.SOFTMAX,
}


def layer_kind(layer: Any) -> ResponseInfo.LayerKind:
    """The :class:`ResponseInfo.LayerKind` of a Keras layer, from its class (or a base class)."""
    for cls in type(layer).__mro__:
        name = cls.__name__
        if name == "ReLU":
            if getattr(layer, "max_value", None) == 6:
                return Kind.RELU6
            if getattr(layer, "negative_slope", 0):
                return Kind.LEAKY_RELU
            return Kind.RELU
        if name == "Activation":
            activation = getattr(layer, "activation", None)
            return _BY_ACTIVATION.get(getattr(activation, "__name__", ""), Kind.UNKNOWN)
        if name == "Bidirectional":
            inner = getattr(layer, "forward_layer", None)
            return layer_kind(inner) if inner is not None else Kind.RNN
        if name in _BY_CLASS:
            return _BY_CLASS[name]
        if name in ("Layer", "Operation", "object"):
            break
    return Kind.UNKNOWN
