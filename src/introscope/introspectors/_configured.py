"""Drivers that, called on a configured introspector, run with its settings.

``IUA.introspect(producer, atol=0.5)`` is DNIKit's call; ``IUA(atol=0.5)`` is how a Ray run
or ``accumulate`` is configured. Called on such an instance, a plain classmethod would build a
default introspector and drop the instance's settings without a word. A method decorated with
``class_or_instance`` receives the class when called on the class and the instance when called
on one; ``settings_of`` then merges the instance's settings with the arguments of the call,
refusing arguments that contradict them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from introscope.exceptions import IntroscopeValueError

__all__ = ["class_or_instance", "settings_of"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class class_or_instance(Generic[_P, _R]):  # noqa: N801 - used as a decorator, like classmethod
    """A method bound to the class on the class (``IUA.introspect``) and to the instance on an
    instance (``IUA(atol=0.5).introspect``); its first parameter receives either."""

    def __init__(self, func: Callable[Concatenate[Any, _P], _R]) -> None:
        self.__func__ = func
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__wrapped__ = func

    def __get__(self, obj: object, owner: type | None = None) -> Callable[_P, _R]:
        target = owner if obj is None else obj
        return types.MethodType(self.__func__, target)


def settings_of(
    owner: str,
    method: str,
    configured: Mapping[str, Any],
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """The settings to run with: ``configured`` (the instance's), with each argument of
    ``given`` that differs from its default in ``defaults`` taken instead when it agrees, and
    an error when it contradicts the instance's value."""
    out = dict(configured)
    clashes = []
    for name, value in given.items():
        if _same(value, defaults[name]) or _same(value, configured.get(name)):
            continue
        if _same(configured.get(name), defaults[name]):
            out[name] = value  # the instance kept the default: the call's value is the setting
            continue
        clashes.append(f"{name}={value!r} (the instance has {configured.get(name)!r})")
    if clashes:
        raise IntroscopeValueError(
            f"{owner}.{method} was called on a configured {owner} with other settings: "
            f"{', '.join(clashes)}; pass each setting once, either to {owner}(...) or to "
            f"{owner}.{method}(...)"
        )
    return out


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays or odd objects: only identity counts
        return False
