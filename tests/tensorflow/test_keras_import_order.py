"""``introscope.tensorflow`` and ``import keras`` in either order, in a fresh interpreter."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("keras")


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_keras_after_introscope_tensorflow_runs_on_torch_without_tensorflow():
    # Keras reads KERAS_BACKEND at its first import; with it unset Keras would pick TensorFlow,
    # which is not installed: importing introscope.tensorflow first must set it to torch.
    script = (
        "from introscope.tensorflow import load_tf_model_from_memory\n"
        "import keras\n"
        "x = keras.Input((3,)); m = keras.Model(x, keras.layers.Dense(2, name='d')(x))\n"
        "print(keras.backend.backend(), list(load_tf_model_from_memory(model=m).response_infos))"
    )
    assert _run(script).splitlines()[-1] == "torch ['input_layer', 'd']"


def test_keras_imported_first_keeps_the_backend_it_started_with():
    script = (
        "import os; os.environ['KERAS_BACKEND'] = 'torch'\n"
        "import keras\n"
        "import introscope.tensorflow\n"
        "os.environ['KERAS_BACKEND'] = 'changed later'\n"
        "x = keras.Input((3,)); m = keras.Model(x, keras.layers.Dense(2, name='d')(x))\n"
        "from introscope.tensorflow import load_tf_model_from_memory\n"
        "print(keras.backend.backend(), 'd' in load_tf_model_from_memory(model=m).response_infos)"
    )
    assert _run(script).splitlines()[-1] == "torch True"


def test_a_backend_the_user_chose_is_not_overridden():
    script = (
        "import os; os.environ['KERAS_BACKEND'] = 'jax'\n"
        "import introscope.tensorflow; print(os.environ['KERAS_BACKEND'])"
    )
    assert _run(script).splitlines()[-1] == "jax"
