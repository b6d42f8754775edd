"""introscope's error hierarchy (DNIKit-compatible names)."""

from __future__ import annotations

import warnings

__all__ = [
    "IntroscopeError",
    "IntroscopeValueError",
    "DNIKitException",
    "DNIKitDeprecationWarning",
    "MissingDependencyError",
    "enable_deprecation_warnings",
]


class IntroscopeError(RuntimeError):
    """Base class of every error introscope raises on purpose.

    Subclasses ``RuntimeError`` like DNIKit's ``DNIKitException`` so existing ``except`` clauses
    keep working.
    """

    @property
    def message(self) -> str:
        """The error message (DNIKit's ``DNIKitException.message``)."""
        if "_message" in self.__dict__:
            return self.__dict__["_message"]
        return str(self.args[0]) if len(self.args) == 1 else str(self)

    @message.setter
    def message(self, value: str) -> None:
        # Subclasses written for DNIKit set ``self.message`` in their __init__.
        self.__dict__["_message"] = value


class IntroscopeValueError(IntroscopeError, ValueError):
    """A bad argument value where DNIKit raised ``ValueError``: both ``except`` clauses catch it."""


#: DNIKit's name for the package error; ``except DNIKitException`` catches every introscope error.
DNIKitException = IntroscopeError


class MissingDependencyError(IntroscopeError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"{package!r} is required{what} but is not installed. "
            f"Install it with: pip install 'introscope[{extra}]'"
        )
        self.package = package
        self.extra = extra


class DNIKitDeprecationWarning(DeprecationWarning):
    """Warns about an API that will be removed."""


def enable_deprecation_warnings(*, error: bool = False) -> None:
    """Show deprecation warnings from introscope (or turn them into errors with ``error=True``)."""
    warnings.simplefilter("error" if error else "default", DNIKitDeprecationWarning)


def require(module: str, extra: str, purpose: str = ""):  # noqa: ANN201
    """Import an optional dependency or raise :class:`MissingDependencyError` naming its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
