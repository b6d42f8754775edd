"""``TFDatasetExamples``: the Keras datasets (CIFAR-10/100, MNIST, Fashion-MNIST) as producers."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, ClassVar, cast

from introscope.base import TrainTestSplitProducer
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone, TrainTestSplitType

from ._keras import import_keras

__all__ = ["TFDatasetExamples"]

_CIFAR10_LABELS = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
_FASHION_LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_CIFAR100_COARSE = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
]  # fmt: skip
_CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain "
    "mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain "
    "plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
    "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree "
    "wolf woman worm"
).split()


def _download(name: str, load: Callable[[], TrainTestSplitType]) -> TrainTestSplitType:
    try:
        return load()
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when offline
        raise IntroscopeError(
            f"could not load the {name} dataset through keras.datasets ({type(exc).__name__}: "
            f"{exc}). Keras downloads it on first use (needs network access) and caches it in "
            f"~/.keras/datasets; offline, pass the arrays yourself with "
            f"split_dataset=((x_train, y_train), (x_test, y_test))"
        ) from exc


class _KerasDataset(TrainTestSplitProducer):
    """A ``keras.datasets`` split; ``split_dataset`` given explicitly skips the download."""

    _keras_name: ClassVar[str] = ""
    _class_names: ClassVar[list[str] | None] = None

    def __init__(
        self,
        split_dataset: TrainTestSplitType | None = None,
        attach_metadata: bool = True,
        max_samples: int = -1,
    ) -> None:
        if split_dataset is None:
            split_dataset = _download(self._keras_name, self._load)
        super().__init__(split_dataset, attach_metadata=attach_metadata, max_samples=max_samples)

    def _load(self) -> TrainTestSplitType:
        keras = import_keras()
        dataset = getattr(keras.datasets, self._keras_name.lower().replace("-", "_"))
        return cast(TrainTestSplitType, dataset.load_data())

    def str_to_label_idx(self) -> list[str]:
        """Class names, in label order (so ``subset(labels=["cat"])`` works)."""
        if self._class_names is None:
            raise IntroscopeError(f"{type(self).__name__} has no string class names")
        return list(self._class_names)

    def subset(
        self,
        labels: OneManyOrNone[Hashable] = None,
        datasets: OneManyOrNone[str] = None,
        max_samples: int | None = None,
    ) -> TrainTestSplitProducer:
        """Like ``TrainTestSplitProducer.subset``; labels may also be class names."""
        if labels is not None:
            many = not isinstance(labels, (str, bytes)) and hasattr(labels, "__iter__")
            values = cast("Iterable[Hashable]", labels) if many else [labels]
            converted = [self._label_index(v) for v in values]
            labels = converted
        return super().subset(labels, datasets, max_samples)

    def _label_index(self, label: Any) -> Any:
        if not isinstance(label, str):
            return label
        names = self.str_to_label_idx()
        if label not in names:
            raise LookupError(f"the label {label!r} is not in {type(self).__name__}: {names}")
        return names.index(label)


class CIFAR10(_KerasDataset):
    """CIFAR-10 (50,000 train + 10,000 test 32x32 RGB images, 10 classes), from keras.datasets."""

    _keras_name = "CIFAR10"
    _class_names = _CIFAR10_LABELS


class MNIST(_KerasDataset):
    """MNIST (60,000 train + 10,000 test 28x28 digit images), from keras.datasets."""

    _keras_name = "MNIST"


class FashionMNIST(_KerasDataset):
    """Fashion-MNIST (60,000 train + 10,000 test 28x28 clothing images), from keras.datasets."""

    _keras_name = "Fashion-MNIST"
    _class_names = _FASHION_LABELS


class CIFAR100(_KerasDataset):
    """CIFAR-100 (100 fine or 20 coarse classes), from keras.datasets.

    Args:
        label_mode: ``"fine"`` or ``"coarse"`` labels.
    """

    _keras_name = "CIFAR100"

    def __init__(
        self,
        split_dataset: TrainTestSplitType | None = None,
        attach_metadata: bool = True,
        max_samples: int = -1,
        label_mode: str = "fine",
    ) -> None:
        if label_mode not in ("fine", "coarse"):
            raise IntroscopeValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
        self.label_mode = label_mode
        super().__init__(split_dataset, attach_metadata=attach_metadata, max_samples=max_samples)

    def _load(self) -> TrainTestSplitType:
        cifar100 = import_keras().datasets.cifar100
        return cast(TrainTestSplitType, cifar100.load_data(label_mode=self.label_mode))

    def str_to_label_idx(self) -> list[str]:
        return list(_CIFAR100_FINE if self.label_mode == "fine" else _CIFAR100_COARSE)

    def subset(
        self,
        labels: OneManyOrNone[Hashable] = None,
        datasets: OneManyOrNone[str] = None,
        max_samples: int | None = None,
    ) -> TrainTestSplitProducer:
        result = cast(CIFAR100, super().subset(labels, datasets, max_samples))  # type(self)
        result.label_mode = self.label_mode  # the subset keeps the meaning of its labels
        return result


class TFDatasetExamples:
    """Datasets from ``keras.datasets``, each a ``TrainTestSplitProducer``.

    Examples:
        Without ``split_dataset`` Keras downloads the data on first use; with arrays of your own no
        network is needed:

        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch
        >>> from introscope.tensorflow import TFDatasetExamples
        >>> train = (np.zeros((2, 28, 28), np.uint8), np.array([0, 9]))
        >>> test = (np.zeros((1, 28, 28), np.uint8), np.array([9]))
        >>> fashion = TFDatasetExamples.FashionMNIST(split_dataset=(train, test))
        >>> fashion.str_to_label_idx()[9]
        'Ankle boot'
        >>> boots = peek_first_batch(fashion.subset(labels=["Ankle boot"]), batch_size=4)
        >>> labels = boots.metadata[Batch.StdKeys.LABELS]
        >>> boots.fields["samples"].shape, [int(part) for part in labels["dataset"]]  # 0: train
        ((2, 28, 28), [0, 1])
    """

    CIFAR10 = CIFAR10
    CIFAR100 = CIFAR100
    MNIST = MNIST
    FashionMNIST = FashionMNIST
