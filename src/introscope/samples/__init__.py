"""Sample producers, the bundled digits data and a tiny CNN."""

from ._stubs import StubGatedAdditionDataset, StubImageDataset, StubProducer
from .digits import (
    build_digits_cnn,
    digits_cnn_accuracy,
    load_digits_cnn,
    load_digits_dataset,
    load_digits_split,
    train_digits_cnn,
)

__all__: list[str] = [
    "StubGatedAdditionDataset",
    "StubImageDataset",
    "StubProducer",
    "build_digits_cnn",
    "digits_cnn_accuracy",
    "load_digits_cnn",
    "load_digits_dataset",
    "load_digits_split",
    "train_digits_cnn",
]
