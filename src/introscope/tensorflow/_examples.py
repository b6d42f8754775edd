"""``TFModelWrapper`` and ``TFModelExamples``: Keras models bundled with their preprocessing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np

from introscope.base import Model, PipelineStage, ResponseInfo
from introscope.exceptions import IntroscopeError
from introscope.typing import OneManyOrNone

from ._keras import import_keras
from ._loading import load_tf_model_from_memory

__all__ = ["TFModelExamples", "TFModelWrapper"]


@dataclasses.dataclass
class TFModelWrapper:
    """A ``Model`` with the stages that prepare its input and post-process its responses.

    ``wrapper(names)`` gives the stages to put in a pipeline: preprocessing, the model, then
    postprocessing (a single stage when there is only the model).

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> inputs = keras.Input((3,), name="x")
        >>> hidden = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
        >>> net = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.tensorflow import TFModelWrapper
        >>> wrapper = TFModelWrapper.from_keras(net, lambda pixels: pixels / 255.0)
        >>> stages = wrapper(["logits"])  # the preprocessing, then the model
        >>> stages
        [Processor(fields=all), Model.stage(['logits'])]
        >>> data = producer_from_batches(Batch({"x": np.full((5, 3), 255.0, np.float32)}))
        >>> peek_first_batch(pipeline(data, stages), batch_size=5).fields["logits"].shape
        (5, 2)
    """

    model: Model
    preprocessing: OneManyOrNone[PipelineStage] = None
    postprocessing: OneManyOrNone[PipelineStage] = None

    @classmethod
    def from_keras(
        cls, model: Any, preprocessing: Callable[[np.ndarray], np.ndarray]
    ) -> TFModelWrapper:
        """Wrap a Keras model and a function applied to every input field before it.

        The function gets each field's array read-only, as batches share their data: it must
        return a new array rather than change its argument in place (copy it first if needed).
        """
        from introscope.processors import Processor

        return cls(model=cls.load_keras_model(model), preprocessing=Processor(preprocessing))

    @staticmethod
    def load_keras_model(model: Any) -> Model:
        """The Keras model as an introscope ``Model`` (wrapped in memory, not re-saved)."""
        return load_tf_model_from_memory(model=model)

    @property
    def response_infos(self) -> Mapping[str, ResponseInfo]:
        """The model's responses by name (also callable, like ``Model.response_infos``)."""
        return self.model.response_infos

    def __call__(
        self, requested_responses: OneManyOrNone[str] = None
    ) -> PipelineStage | Sequence[PipelineStage]:
        """Preprocessing, model and postprocessing stages (one stage if there is only the model)."""
        stages: list[PipelineStage] = []
        for part in (self.preprocessing, self.model(requested_responses), self.postprocessing):
            if part is None:
                continue
            stages.extend(part if isinstance(part, (list, tuple)) else [cast(PipelineStage, part)])
        return stages[0] if len(stages) == 1 else stages


def _mobilenet(weights: str | None = "imagenet", **kwargs: Any) -> TFModelWrapper:
    """Keras' MobileNet (v1) with its preprocessing (pixels scaled to [-1, 1]).

    Args:
        weights: ``"imagenet"`` (downloaded by Keras on first use, then cached in
            ``~/.keras/models``), ``None`` for the untrained architecture, or a weights file path.
        kwargs: passed to ``keras.applications.MobileNet`` (``input_shape``, ``alpha``, ...).
    """
    keras = import_keras()
    try:
        model = keras.applications.MobileNet(weights=weights, **kwargs)
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when offline
        raise IntroscopeError(
            f"could not load MobileNet weights {weights!r} ({type(exc).__name__}: {exc}). Keras "
            f"downloads ImageNet weights on first use, which needs network access; pass "
            f"weights=None for the untrained architecture or the path of a local weights file"
        ) from exc
    return TFModelWrapper.from_keras(model, _mobilenet_preprocessing)


def _mobilenet_preprocessing(pixels: np.ndarray) -> np.ndarray:
    """Keras' MobileNet preprocessing on a float32 copy of ``pixels``.

    ``keras.applications.mobilenet.preprocess_input`` scales float arrays in place, which fails on
    a batch's read-only arrays (and would change the caller's data if they were writable).
    """
    keras = import_keras()
    return cast(
        np.ndarray,
        keras.applications.mobilenet.preprocess_input(np.array(pixels, np.float32, copy=True)),
    )


class TFModelExamples:
    """Ready-made Keras models with their pre- and post-processing.

    Examples:
        ``weights=None`` builds the architecture without downloading the ImageNet weights:

        >>> from introscope.tensorflow import TFModelExamples
        >>> mobilenet = TFModelExamples.MobileNet(weights=None, input_shape=(32, 32, 3), alpha=0.25)
        >>> type(mobilenet).__name__, "conv1" in mobilenet.response_infos
        ('TFModelWrapper', True)
    """

    MobileNet = staticmethod(_mobilenet)
