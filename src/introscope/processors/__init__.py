"""Pipeline stages that transform batches."""

from introscope.base._cacher import Cacher

from ._base import Processor
from ._composer import Composer
from ._fields import (
    Concatenator,
    FieldRemover,
    FieldRenamer,
    Flattener,
    MeanStdNormalizer,
    Transposer,
)
from ._image import (
    ImageGammaContrastProcessor,
    ImageGaussianBlurProcessor,
    ImageResizer,
    ImageRotationProcessor,
)
from ._metadata import MetadataRemover, MetadataRenamer
from ._pooling import Pooler
from ._snapshots import PipelineDebugger, SnapshotRemover, SnapshotSaver

__all__ = [
    "Cacher",
    "Composer",
    "Concatenator",
    "FieldRemover",
    "FieldRenamer",
    "Flattener",
    "ImageGammaContrastProcessor",
    "ImageGaussianBlurProcessor",
    "ImageResizer",
    "ImageRotationProcessor",
    "MeanStdNormalizer",
    "MetadataRemover",
    "MetadataRenamer",
    "PipelineDebugger",
    "Pooler",
    "Processor",
    "SnapshotRemover",
    "SnapshotSaver",
    "Transposer",
]
