"""introscope errors raised on a Ray worker, shipped as data and raised again on the driver.

Ray Data hands the driver only the text of an exception raised in a map function, and would
retry it; the workers return introscope's errors as rows instead. The row names the error's
classes by qualified name, and the driver raises the same class again, resolving only names of
the ``introscope`` package (nothing is unpickled; an unknown name falls back to the nearest
introscope class of the error's bases).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

__all__ = ["error_info", "rebuild_error"]

_PACKAGE = "introscope"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_introscope(cls: type) -> bool:
    module = cls.__module__
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def error_info(exc: IntroscopeError, message: str | None = None) -> dict[str, Any]:
    """What the driver needs to raise ``exc`` again: its message, the qualified names of its
    introscope classes (its own first, then its bases) and its public JSON-able attributes."""
    classes = [
        _qualified(c)
        for c in type(exc).__mro__
        if isinstance(c, type) and issubclass(c, IntroscopeError) and _is_introscope(c)
    ]
    attrs = {}
    for k, v in vars(exc).items():
        if isinstance(v, np.generic) and v.ndim == 0:
            v = v.item()  # numpy scalars travel as Python ones
        if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str))):
            attrs[k] = v
    if message is None:
        # str() of a subclass that keeps its text in .message only (DNIKit's style) is empty
        message = str(exc) or str(getattr(exc, "message", "") or "")
    return {
        "message": message,
        "value_error": isinstance(exc, IntroscopeValueError),
        "classes": classes,
        "attrs": attrs,
    }


def _resolve(name: str) -> type[IntroscopeError] | None:
    """The introscope exception class named ``module:qualname``, or None (never imports a
    module outside the introscope package)."""
    module_name, _, qualname = str(name).partition(":")
    if not qualname or not (module_name == _PACKAGE or module_name.startswith(_PACKAGE + ".")):
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    if isinstance(found, type) and issubclass(found, IntroscopeError) and _is_introscope(found):
        return found
    return None


def rebuild_error(info: dict[str, Any], suffix: str = "") -> IntroscopeError:
    """The error that :func:`error_info` described, of the same introscope class (or, for a
    class the driver cannot resolve, ``IntroscopeValueError`` / ``IntroscopeError``)."""
    message = f"{info['message']}{suffix}"
    cls: type[IntroscopeError] | None = None
    for name in info.get("classes", []):
        cls = _resolve(name)
        if cls is not None:
            break
    if cls is None:
        cls = IntroscopeValueError if info.get("value_error") else IntroscopeError
    # Built without the class's __init__ (whose arguments may not be a message, e.g.
    # NonFiniteValues(count, size)); args and the shipped attributes are set as they were.
    exc = cls.__new__(cls, message)
    exc.args = (message,)
    for key, value in info.get("attrs", {}).items():
        try:
            setattr(exc, key, value)
        except AttributeError:  # a read-only property of the class
            pass
    return exc
