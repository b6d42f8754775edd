"""Progress bars for long work: tqdm on a terminal, silent otherwise or when asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

_T = TypeVar("_T")


def progress_enabled() -> bool:
    """False when ``INTROSCOPE_PROGRESS=0`` or stderr is not a terminal."""
    flag = os.environ.get("INTROSCOPE_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "False", "")
    return sys.stderr.isatty()


def progress(iterable: Iterable[_T], desc: str, *, unit: str = "batch") -> Iterator[_T]:
    """Wrap ``iterable`` in a tqdm bar when progress is enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(iterable, desc=desc, unit=unit, leave=False) as bar:
        yield from bar
