"""Load Keras 3 models from files or memory as introscope ``Model``s."""

from __future__ import annotations

import logging
import pathlib
import zipfile
from typing import Any

from introscope.base import Model
from introscope.exceptions import IntroscopeError, IntroscopeValueError, require
from introscope.typing import PathOrStr, resolve_path_or_str

from ._backend import KerasBackend
from ._keras import import_keras

__all__ = ["load_tf_model_from_memory", "load_tf_model_from_path"]

_logger = logging.getLogger("introscope.tensorflow")

_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_tf_model_from_memory(*, session: Any = None, model: Any = None) -> Model:
    """Wrap a Keras 3 Functional or built Sequential ``model`` as an introscope ``Model``.

    Args:
        session: accepted for DNIKit's signature; TensorFlow 1 sessions are not supported.
        model: the Keras model.

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> inputs = keras.Input((3,), name="x")
        >>> hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
        >>> net = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.tensorflow import load_tf_model_from_memory
        >>> model = load_tf_model_from_memory(model=net)
        >>> list(model.response_infos), model.response_infos["hidden"].shape
        (['x', 'hidden', 'logits'], (None, 4))
        >>> data = producer_from_batches(Batch({"x": np.ones((5, 3), np.float32)}))
        >>> responses = peek_first_batch(pipeline(data, model(["hidden", "logits"])), batch_size=5)
        >>> {name: array.shape for name, array in responses.fields.items()}
        {'hidden': (5, 4), 'logits': (5, 2)}
    """
    if session is not None:
        raise IntroscopeValueError(
            "TensorFlow 1 sessions are not supported; pass a Keras 3 model with model=..."
        )
    if model is None:
        raise IntroscopeValueError("pass the Keras model with model=...")
    return Model(KerasBackend(model))


def load_tf_model_from_path(path: PathOrStr) -> Model:
    """Load a Keras model file or directory as an introscope ``Model``.

    Accepts a ``.keras`` file, a legacy ``.h5``/``.hdf5`` whole-model file, a directory holding
    one architecture ``.json`` and one weights ``.h5`` file, or a TensorFlow SavedModel directory.
    Every layer output of a Keras model is a response. A SavedModel needs TensorFlow and Keras on
    its TensorFlow backend (``KERAS_BACKEND=tensorflow``, set before Keras is imported); it runs
    through ``keras.layers.TFSMLayer`` and has no layers to look into: its responses are only the
    inputs and outputs of its ``serving_default`` signature. Re-save the model as a ``.keras``
    file for layer-level responses.

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> inputs = keras.Input((3,), name="x")
        >>> hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
        >>> net = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
        >>> import pathlib, tempfile
        >>> from introscope.tensorflow import load_tf_model_from_path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = pathlib.Path(tmp.name) / "tiny.keras"
        >>> net.save(path)
        >>> list(load_tf_model_from_path(path).response_infos)
        ['x', 'hidden', 'logits']
        >>> tmp.cleanup()
    """
    file = resolve_path_or_str(path)
    if not file.exists():
        raise IntroscopeError(f"model path {str(file)!r} does not exist")
    if file.is_dir():
        if (file / "saved_model.pb").exists() or (file / "saved_model.pbtxt").exists():
            return _load_saved_model(file)
        return Model(KerasBackend(_load_arch_and_weights(file)))
    if file.suffix.lower() not in _MODEL_SUFFIXES:
        raise IntroscopeError(
            f"{str(file)!r} is not a Keras model file: expected a {', '.join(_MODEL_SUFFIXES)} "
            f"file, an architecture-and-weights directory or a SavedModel directory"
        )
    keras = import_keras()
    damage = _damage(file)
    if damage:
        raise IntroscopeError(
            f"load_tf_model_from_path: {str(file)!r} exists but cannot be read as a "
            f"{_archive_kind(file)}: {damage}. Save the model again with model.save(path)"
        )
    try:
        model = keras.saving.load_model(str(file), compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise IntroscopeError(
            f"could not load a Keras model from {str(file)!r} ({type(exc).__name__}: {exc})"
        ) from exc
    return Model(KerasBackend(model))


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _archive_kind(file: pathlib.Path) -> str:
    if file.suffix.lower() == ".keras":
        return "Keras archive (a .keras zip file)"
    return "Keras HDF5 model file"


def _damage(file: pathlib.Path) -> str:
    """Why ``file`` (which exists) is not a readable model archive, or "" when it looks whole.

    Keras reports a damaged ``.keras`` file as "File not found"; this says what is wrong.
    """
    try:
        if file.suffix.lower() == ".keras":
            if not zipfile.is_zipfile(file):
                return "it is not a zip archive (truncated, damaged or not written by Keras)"
            with zipfile.ZipFile(file) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    return "the archive has no config.json"
                broken = archive.testzip()
            return f"the archive member {broken!r} is damaged" if broken else ""
        # HDF5 files start with the signature at offset 0 or after a user block of 512, 1024,
        # 2048, ... bytes (any power of two from 512).
        size = file.stat().st_size
        offsets = [0] + [512 << k for k in range(48) if (512 << k) + 8 <= size]
        with open(file, "rb") as handle:
            for offset in offsets:
                handle.seek(offset)
                if handle.read(8) == _HDF5_SIGNATURE:
                    return ""
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "it is not an HDF5 file (truncated, damaged or not written by Keras)"


def _load_arch_and_weights(directory: pathlib.Path) -> Any:
    keras = import_keras()
    archs = sorted(directory.glob("*.json"))
    weights = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".h5", ".hdf5"))
    if len(archs) != 1 or len(weights) != 1:
        raise IntroscopeError(
            f"directory {str(directory)!r} is not a model: expected a SavedModel "
            f"(saved_model.pb) or exactly one architecture .json and one weights .h5 file, "
            f"found {[p.name for p in archs + weights]}"
        )
    try:
        model = keras.models.model_from_json(archs[0].read_text())
        model.load_weights(str(weights[0]))
    except Exception as exc:
        raise IntroscopeError(
            f"could not load Keras architecture {archs[0].name!r} with weights "
            f"{weights[0].name!r} from {str(directory)!r} ({type(exc).__name__}: {exc})"
        ) from exc
    return model


def _load_saved_model(directory: pathlib.Path) -> Model:
    # Keras 3 runs a SavedModel only through TFSMLayer, on its TensorFlow backend, and sees only
    # the serving signature: the responses are the signature's inputs and outputs.
    tf = require("tensorflow", "tensorflow", "loading a TensorFlow SavedModel")
    keras = import_keras()
    if keras.backend.backend() != "tensorflow":
        raise IntroscopeError(
            f"{str(directory)!r} is a TensorFlow SavedModel, which Keras 3 runs only on its "
            f"TensorFlow backend: set KERAS_BACKEND=tensorflow before importing keras (it is "
            f"{keras.backend.backend()!r}), or re-save the model as a .keras file"
        )
    signature = tf.saved_model.load(str(directory)).signatures.get("serving_default")
    if signature is None:
        raise IntroscopeError(f"the SavedModel {str(directory)!r} has no serving_default signature")
    specs = signature.structured_input_signature[1]
    inputs = {
        name: keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=name)
        for name, spec in specs.items()
    }
    layer = keras.layers.TFSMLayer(str(directory), call_endpoint="serving_default")
    outputs = layer(inputs if len(inputs) > 1 else next(iter(inputs.values())))
    _logger.warning("SavedModel %s: only its serving signature's outputs are responses", directory)
    return Model(KerasBackend(keras.Model(inputs=list(inputs.values()), outputs=outputs)))
