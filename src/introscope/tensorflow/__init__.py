"""Keras 3 models and datasets (DNIKit's ``dnikit_tensorflow``, under DNIKit's module name).

Keras is imported only when a model is loaded (``pip install 'introscope[keras]'``). Keras 3 picks
its backend from the ``KERAS_BACKEND`` environment variable at its first import; if Keras is not
imported yet, introscope sets it to ``torch`` unless it is already set, so TensorFlow is not
needed. Set ``KERAS_BACKEND=tensorflow`` (or ``jax``) before importing to use another backend.
"""

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
