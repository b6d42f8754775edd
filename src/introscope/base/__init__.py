"""Core types: batches, producers, pipelines, models and introspector plumbing."""

from ._batch import Batch, concatenate_batches
from ._introspector import Introspector
from ._model import Model, ModelBackend
from ._pipeline import PipelineStage, pipeline
from ._producer import Producer, peek_first_batch
from ._response_info import ResponseInfo

__all__ = [
    "Batch",
    "Introspector",
    "Model",
    "ModelBackend",
    "PipelineStage",
    "Producer",
    "ResponseInfo",
    "concatenate_batches",
    "peek_first_batch",
    "pipeline",
]
