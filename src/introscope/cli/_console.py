"""What the command prints on stderr besides progress: log lines, Python warnings as one
``warning: <message>`` line each, and errors as one line without internal class names."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from typing import Any, TextIO

__all__ = ["configure_logging", "error_text", "one_line"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The longest error or warning line; the rest is behind ``--debug``.
_MAX_CHARS = 600


def one_line(text: str, max_chars: int = _MAX_CHARS) -> str:
    """``text`` without terminal escape codes, its lines joined, cut at ``max_chars``."""
    text = _ANSI.sub("", text)
    parts = [line.strip() for line in text.strip().splitlines() if line.strip()]
    joined = " ".join(parts)
    if len(joined) > max_chars:
        joined = joined[: max_chars - 40].rstrip() + " ... (the rest with --debug)"
    return joined


def _internal_names() -> list[str]:
    """Names of introscope's exception classes (``StateError``, ``IntroscopeValueError``...):
    implementation details a user should not have to read."""
    from introscope.exceptions import IntroscopeError

    names, todo = set(), [IntroscopeError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return sorted(names, key=len, reverse=True)


def error_text(exc: BaseException) -> str:
    """The error's message for the one ``error:`` line: lines joined, escape codes and
    introscope's exception class names (``StateError: ...`` inside a message) removed; other
    exceptions keep their type, e.g. ``TypeError: ...``."""
    from introscope.exceptions import IntroscopeError

    text = one_line(str(exc))
    names = "|".join(re.escape(n) for n in _internal_names())
    text = re.sub(rf"\b(?:{names}):\s*", "", text)
    if not text:
        return type(exc).__name__
    if not isinstance(exc, IntroscopeError) and not type(exc).__name__.startswith("_"):
        text = f"{type(exc).__name__}: {text}"
    return text


class _Formatter(logging.Formatter):
    """``warning: message`` for warnings and errors (with the logger's name when it is not
    introscope's); ``LEVEL name: message`` for -v/--debug lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            text = f"{record.levelname} {record.name}: {message}"
        else:
            ours = record.name == "py.warnings" or record.name.split(".")[0] == "introscope"
            where = "" if ours else f"{record.name}: "
            text = f"{record.levelname.lower()}: {where}{one_line(message)}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_WARNINGS = logging.getLogger("py.warnings")


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command: the message alone, as a log line (the file
    and line of the console script that ``warnings`` would print say nothing)."""
    text = str(message)
    if not issubclass(category, UserWarning):  # e.g. numpy's RuntimeWarning: say which
        text = f"{text} ({category.__name__})"
    _WARNINGS.warning("%s", text)


def configure_logging(verbose: bool, debug: bool, stream: Any = None) -> None:
    """Log levels for -v/--debug and the stderr format; Python warnings become log lines."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    # only introscope's own loggers get chattier: numba, matplotlib etc. stay at warnings
    logging.basicConfig(level=logging.WARNING, handlers=[handler])  # no-op if configured
    logging.getLogger("introscope").setLevel(level)
    # Python warnings (e.g. PFA's "fewer samples than units") as one line each, rather than
    # warnings' two lines "file:line: UserWarning ..." pointing at the console script.
    logging.captureWarnings(True)  # saves warnings' own showwarning for captureWarnings(False)
    warnings.showwarning = _show_warning
