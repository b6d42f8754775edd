"""Type aliases of the public API and helpers that normalise "one or many" arguments."""

from __future__ import annotations

import pathlib
from collections.abc import Collection
from typing import Any, TypeVar, Union

import numpy as np

__all__ = [
    "OneOrMany",
    "OneManyOrNone",
    "PathOrStr",
    "StringLike",
    "TrainTestSplitType",
    "resolve_one_or_many",
    "resolve_one_many_or_none",
    "resolve_one_or_many_to_list",
    "resolve_path_or_str",
]

_T = TypeVar("_T")

OneOrMany = Union[_T, Collection[_T]]
OneManyOrNone = Union[None, _T, Collection[_T]]
PathOrStr = Union[str, pathlib.Path]
StringLike = Any
TrainTestSplitType = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def resolve_one_or_many_to_list(x: OneOrMany[_T], cls: type[_T]) -> list[_T]:
    """Return ``[x]`` if ``x`` is a ``cls``, else the items of the collection ``x``, in order.

    Examples:
        >>> from introscope.typing import resolve_one_or_many_to_list
        >>> resolve_one_or_many_to_list("fc", str), resolve_one_or_many_to_list(("fc", "conv"), str)
        (['fc'], ['fc', 'conv'])
    """
    if isinstance(x, cls):
        return [x]
    if isinstance(x, (str, bytes)) or not isinstance(x, Collection):
        raise TypeError(
            f"expected a {cls.__name__} or a collection of them, got {type(x).__name__}"
        )
    items = list(x)
    for item in items:
        if not isinstance(item, cls):
            raise TypeError(
                f"expected every item to be a {cls.__name__}, got {type(item).__name__}: {item!r}"
            )
    return items


def resolve_one_or_many(x: OneOrMany[_T], cls: type[_T]) -> frozenset[_T]:
    """Return a frozenset of the one or many ``cls`` values in ``x``.

    Examples:
        >>> from introscope.typing import resolve_one_or_many
        >>> sorted(resolve_one_or_many(["fc", "conv", "fc"], str))
        ['conv', 'fc']
    """
    return frozenset(resolve_one_or_many_to_list(x, cls))


def resolve_one_many_or_none(x: OneManyOrNone[_T], cls: type[_T]) -> frozenset[_T] | None:
    """Like ``resolve_one_or_many`` but ``None`` stays ``None``.

    Examples:
        >>> from introscope.typing import resolve_one_many_or_none
        >>> resolve_one_many_or_none(None, str) is None, resolve_one_many_or_none("fc", str)
        (True, frozenset({'fc'}))
    """
    return None if x is None else resolve_one_or_many(x, cls)


def resolve_path_or_str(x: PathOrStr) -> pathlib.Path:
    """Return ``x`` as a ``pathlib.Path``.

    Examples:
        >>> from introscope.typing import resolve_path_or_str
        >>> resolve_path_or_str("cache/responses").name
        'responses'
    """
    if not isinstance(x, (str, pathlib.Path)):
        raise TypeError(f"expected a str or pathlib.Path, got {type(x).__name__}")
    return pathlib.Path(x)
