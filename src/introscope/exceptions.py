"""introscope's error hierarchy (DNIKit-compatible names)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import cast

__all__ = [
    "IntroscopeError",
    "IntroscopeValueError",
    "StateError",
    "IntroscopeKeyError",
    "DNIKitException",
    "DNIKitDeprecationWarning",
    "MissingDependencyError",
    "enable_deprecation_warnings",
]


class IntroscopeError(RuntimeError):
    """Base class of every error introscope raises on purpose.

    Subclasses ``RuntimeError`` like DNIKit's ``DNIKitException`` so existing ``except`` clauses
    keep working.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.exceptions import IntroscopeError
        >>> try:
        ...     Batch([np.zeros(2)])
        ... except IntroscopeError as error:
        ...     print(error.message)
        Batch(fields) takes a mapping of str to numpy arrays, got list
    """

    @property
    def message(self) -> str:
        """The error message (DNIKit's ``DNIKitException.message``).

        Examples:
            >>> from introscope.exceptions import IntroscopeError
            >>> IntroscopeError("PFA: field 'fc' is empty").message
            "PFA: field 'fc' is empty"
        """
        if "_message" in self.__dict__:
            return cast(str, self.__dict__["_message"])
        return str(self.args[0]) if len(self.args) == 1 else str(self)

    @message.setter
    def message(self, value: str) -> None:
        # Subclasses written for DNIKit set ``self.message`` in their __init__.
        self.__dict__["_message"] = value


class IntroscopeValueError(IntroscopeError, ValueError):
    """A bad argument value where DNIKit raised ``ValueError``: both ``except`` clauses catch it.

    Examples:
        >>> from introscope.base import Batch
        >>> from introscope.exceptions import IntroscopeValueError
        >>> try:
        ...     Batch({})
        ... except ValueError as error:  # also an IntroscopeValueError
        ...     print(type(error).__name__, "-", error)
        IntroscopeValueError - cannot create a Batch without fields
    """


class IntroscopeKeyError(IntroscopeError, KeyError):
    """An unknown name (response, field, module) where DNIKit raised ``KeyError``: ``except
    KeyError`` and ``except DNIKitException`` both catch it, and a mapping's ``get`` or ``in``
    works as for any mapping. The message lists close matches and the names available.

    Examples:
        >>> from introscope.exceptions import DNIKitException, IntroscopeKeyError
        >>> error = IntroscopeKeyError("unknown response 'rleu' (did you mean 'relu'?)")
        >>> isinstance(error, KeyError) and isinstance(error, DNIKitException)
        True
        >>> print(error)  # not quoted, unlike a plain KeyError
        unknown response 'rleu' (did you mean 'relu'?)
    """

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class StateError(IntroscopeValueError):
    """Bad data found by an introspector's accumulated state (shape, dtype, units, a saved
    state that does not fit); the message names the introspector, the response and the batch.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> from introscope.exceptions import StateError
        >>> from introscope.introspectors import PFA
        >>> try:
        ...     PFA.introspect(lambda bs: iter([Batch({"a": np.zeros((4, 2, 3, 3))})]))
        ... except StateError as error:
        ...     print(str(error)[:47])
        PFA: response 'a' (batch 0) has shape (4, 2, 3,
    """


#: DNIKit's name for the package error; ``except DNIKitException`` catches every introscope error.
DNIKitException = IntroscopeError


class MissingDependencyError(IntroscopeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install.

    Examples:
        >>> from introscope.exceptions import MissingDependencyError
        >>> error = MissingDependencyError("onnxruntime", "onnx", "ONNX models")
        >>> print(error)  # doctest: +NORMALIZE_WHITESPACE
        'onnxruntime' is required for ONNX models but is not installed.
        Install it with: pip install 'introscope[onnx]'
        >>> isinstance(error, ImportError), error.extra
        (True, 'onnx')
    """

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package!r} is required{what} but is not installed. "
            f"Install it with: pip install 'introscope[{extra}]'"
        )
        self.package = package
        self.extra = extra

    @classmethod
    def for_all(cls, missing: Sequence[tuple[str, str, str]]) -> MissingDependencyError:
        """One error naming every ``(package, extra, purpose)`` in ``missing`` and the one pip
        command that installs them all."""
        if len(missing) == 1:
            return cls(*missing[0])
        extras = ",".join(dict.fromkeys(extra for _, extra, _ in missing))
        error = cls(", ".join(package for package, _, _ in missing), extras)
        listed = ", ".join(f"{package!r} ({purpose})" for package, _, purpose in missing)
        error.args = (
            f"{listed} are required but not installed. Install them with: "
            f"pip install 'introscope[{extras}]'",
        )
        return error


class DNIKitDeprecationWarning(DeprecationWarning):
    """Warns about an API that will be removed.

    Examples:
        >>> import warnings
        >>> from introscope.exceptions import DNIKitDeprecationWarning, DNIKitException
        >>> issubclass(DNIKitDeprecationWarning, DeprecationWarning)
        True
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warnings.warn("old_name is deprecated; use new_name", DNIKitDeprecationWarning)
        >>> caught[0].category.__name__
        'DNIKitDeprecationWarning'
    """


def enable_deprecation_warnings(*, error: bool = False) -> None:
    """Show deprecation warnings from introscope (or turn them into errors with ``error=True``).

    Examples:
        >>> import warnings
        >>> from introscope.exceptions import DNIKitDeprecationWarning, enable_deprecation_warnings
        >>> with warnings.catch_warnings():
        ...     enable_deprecation_warnings(error=True)
        ...     try:
        ...         warnings.warn("old_name is deprecated", DNIKitDeprecationWarning)
        ...     except DNIKitDeprecationWarning as warning:
        ...         print("raised:", warning)
        raised: old_name is deprecated
    """
    warnings.simplefilter("error" if error else "default", DNIKitDeprecationWarning)


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency or raise ``MissingDependencyError`` naming its extra.

    Examples:
        >>> from introscope.exceptions import MissingDependencyError, require
        >>> require("json", "core").__name__
        'json'
        >>> try:
        ...     require("no_such_module_xyz", "extra")
        ... except MissingDependencyError as error:
        ...     print(error.package, error.extra)
        no_such_module_xyz extra
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc


def require_all(needs: Sequence[tuple[str, str, str]]) -> None:
    """Check that every ``(module, extra, purpose)`` imports; else one ``MissingDependencyError``
    naming all those that do not (so that a user installs them in one go).

    Examples:
        >>> from introscope.exceptions import MissingDependencyError, require_all
        >>> require_all([("json", "core", "parsing")])
        >>> try:
        ...     require_all([("no_such_a", "x", "this"), ("json", "core", ""), ("no_such_b", "y", "that")])
        ... except MissingDependencyError as error:
        ...     print(error.extra)
        x,y
    """
    import importlib.util

    # Found, not imported (torch or umap take seconds): the call that uses one imports it.
    missing = [
        (module.split(".")[0], extra, purpose)
        for module, extra, purpose in needs
        if importlib.util.find_spec(module.split(".")[0]) is None
    ]
    if missing:
        raise MissingDependencyError.for_all(missing)
