"""Progress bars for long work: ``tqdm.auto`` (a terminal bar, or a widget in Jupyter).

On by default when stderr is a terminal or the code runs in a Jupyter kernel; the environment
variable ``INTROSCOPE_PROGRESS=0`` turns bars off and ``INTROSCOPE_PROGRESS=1`` turns them on.
Bars count samples out of the producer's size when it is known (:func:`producer_size`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["progress", "progress_enabled", "producer_size"]

_T = TypeVar("_T")


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # noqa: BLE001 - any odd IPython state means "not a notebook"
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_enabled() -> bool:
    """True when ``INTROSCOPE_PROGRESS`` says so, else when on a terminal or in Jupyter."""
    flag = os.environ.get("INTROSCOPE_PROGRESS")
    if flag is not None:
        return flag.strip().lower() not in ("0", "false", "no", "off", "")
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or _in_jupyter()


def _stages_keep_count(stages: Iterable[Any]) -> bool:
    # a Composer may drop elements; every other bundled stage maps a batch to one of equal size
    return not any(type(s).__name__ == "Composer" for s in stages)


def producer_size(producer: Any) -> int | None:
    """Number of samples ``producer`` yields per pass when that is known without running it.

    Known for introscope's own producers (``StubProducer``, ``TrainTestSplitProducer``,
    ``ImageProducer``, ``CachedProducer``, torch ``DataLoader`` producers over a sized dataset)
    and pipelines of them whose stages keep the number of samples; None otherwise.
    """
    for _ in range(64):  # follow pipelines down to their source
        if hasattr(producer, "source") and hasattr(producer, "stages"):  # pipeline(...)
            inner, stages = producer.source, list(producer.stages)
        elif hasattr(producer, "_upstream"):  # one stage, or a Cacher's first pass
            inner, stages = producer._upstream, [getattr(producer, "_stage", None)]
        else:
            break
        if not _stages_keep_count(stages):
            return None
        producer = inner
    try:
        if hasattr(producer, "num_elements"):  # CachedProducer
            return int(producer.num_elements)
        batch = getattr(producer, "_batch", None)  # StubProducer
        if batch is not None and hasattr(batch, "batch_size"):
            return int(batch.batch_size)
        for attribute in ("_samples", "_paths"):  # TrainTestSplitProducer, ImageProducer
            items = getattr(producer, attribute, None)
            if items is not None:
                return len(items)
        loader = getattr(producer, "data_loader", None)  # TorchProducer
        dataset = getattr(loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):
            return len(dataset)
    except Exception:  # noqa: BLE001 - a size we cannot read is an unknown size
        return None
    return None


def _tqdm_class() -> Any:
    """``tqdm.auto``'s bar: a widget in Jupyter when ipywidgets is installed. Without it,
    tqdm.auto warns ("IProgress not found") on every bar; the text bar is used instead."""
    if _in_jupyter():
        import importlib.util

        if importlib.util.find_spec("ipywidgets") is None:
            from tqdm.std import tqdm as text_tqdm

            return text_tqdm
    from tqdm.auto import tqdm

    return tqdm


def progress(
    iterable: Iterable[_T],
    desc: str,
    *,
    unit: str = "batch",
    total: int | None = None,
) -> Iterator[_T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled.

    With ``total`` (a number of samples) the bar counts samples: each item advances it by its
    ``batch_size`` (or 1 when it has none). Without, it counts ``unit`` items.
    """
    if not progress_enabled():
        yield from iterable
        return
    tqdm = _tqdm_class()

    if total is None:
        with tqdm(iterable, desc=desc, unit=unit, leave=False) as bar:
            yield from bar
        return
    with tqdm(total=total, desc=desc, unit="sample", leave=False) as bar:
        for item in iterable:
            yield item
            bar.update(int(getattr(item, "batch_size", 1)))
