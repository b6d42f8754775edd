"""Core types: batches, producers, pipelines, models and introspector plumbing."""

from ._batch import Batch, concatenate_batches
from ._cacher import CachedProducer, Cacher
from ._image_producer import ImageFormat, ImageProducer, PixelFormat
from ._introspector import Introspector
from ._model import Model, ModelBackend
from ._multi_introspect import multi_introspect
from ._pipeline import PipelineStage, pipeline
from ._producer import Producer, peek_first_batch
from ._producer_utils import (
    accumulate_batches,
    concatenate_producers,
    produce_elements,
    producer_from_batches,
    rebatch,
    resize_batches,
    shuffle_producer,
    subset_producer,
)
from ._response_info import ResponseInfo
from ._traintest import TrainTestSplitProducer

# The metadata key classes under their own names (``introscope.base.MetaKey[str]("path")``):
# the very classes of ``Batch.MetaKey`` / ``Batch.DictMetaKey``, for type checkers too.
MetaKey = Batch.MetaKey
DictMetaKey = Batch.DictMetaKey

__all__ = [
    "Batch",
    "MetaKey",
    "DictMetaKey",
    "CachedProducer",
    "Cacher",
    "ImageFormat",
    "ImageProducer",
    "PixelFormat",
    "TrainTestSplitProducer",
    "Introspector",
    "Model",
    "ModelBackend",
    "PipelineStage",
    "Producer",
    "ResponseInfo",
    "accumulate_batches",
    "concatenate_batches",
    "concatenate_producers",
    "multi_introspect",
    "peek_first_batch",
    "pipeline",
    "produce_elements",
    "producer_from_batches",
    "rebatch",
    "resize_batches",
    "shuffle_producer",
    "subset_producer",
]
