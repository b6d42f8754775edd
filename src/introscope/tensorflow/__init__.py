"""Keras 3 models and datasets (DNIKit's ``dnikit_tensorflow``, under DNIKit's module name).

Keras is imported only when a model is loaded (``pip install 'introscope[keras]'``). Keras 3 picks
its backend from the ``KERAS_BACKEND`` environment variable at its first import. Importing this
module sets it to ``torch`` when it is unset and Keras is not imported yet, so TensorFlow is not
needed whichever comes first afterwards, ``import keras`` or a model load. Set
``KERAS_BACKEND=tensorflow`` (or ``jax``) before importing to use another backend.
"""

import os as _os
import sys as _sys

if "keras" not in _sys.modules:
    _os.environ.setdefault("KERAS_BACKEND", "torch")

from ._backend import KerasBackend
from ._datasets import TFDatasetExamples
from ._examples import TFModelExamples, TFModelWrapper
from ._loading import load_tf_model_from_memory, load_tf_model_from_path

__all__ = [
    "KerasBackend",
    "TFDatasetExamples",
    "TFModelExamples",
    "TFModelWrapper",
    "load_tf_model_from_memory",
    "load_tf_model_from_path",
]
