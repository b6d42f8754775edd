"""Error text shared by the model adapters: a framework's failure on one batch, in one line.

The ONNX and Keras adapters (``introscope.onnx``, ``introscope.tensorflow``) use them, so that
a batch that a framework cannot run is reported the same way whichever adapter ran it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = ["MAX_ERROR", "batch_failure", "one_line"]

#: The most characters of a framework's own message kept in an introscope error.
MAX_ERROR = 300
# ANSI escape sequences (Keras colours and bolds parts of its messages for terminals).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def one_line(exc: BaseException, limit: int = MAX_ERROR) -> str:
    """The text of ``exc`` in one line: ANSI escape codes removed, runs of whitespace one space,
    cut to ``limit`` characters (``...`` marks a cut).

    Examples:
        >>> from introscope.base._adapter_text import one_line
        >>> one_line(IndexError("Exception in Embedding.call().\\n\\n\\x1b[1mindex out of range\\x1b[0m"))
        'Exception in Embedding.call(). index out of range'
        >>> one_line(ValueError("x" * 10), limit=4)
        'xxxx...'
    """
    text = " ".join(_ANSI.sub("", str(exc)).split())
    return text if len(text) <= limit else text[:limit] + "..."


def batch_failure(runner: str, feeds: Mapping[str, np.ndarray], message: str) -> str:
    """The start of the error for a batch that ``runner`` failed to run: its size, each input's
    name, dtype and shape, and the runner's ``message`` (already in one line).

    Examples:
        >>> import numpy as np
        >>> from introscope.base._adapter_text import batch_failure
        >>> batch_failure("Keras", {"ids": np.zeros((1, 4), np.int64)}, "index out of range")
        "Keras failed on a batch of 1 sample (inputs 'ids' int64[1, 4]): index out of range"
    """
    n = next(iter(feeds.values())).shape[0] if feeds else 0
    given = ", ".join(f"{k!r} {v.dtype}{list(v.shape)}" for k, v in feeds.items())
    return (
        f"{runner} failed on a batch of {n} sample{'s' if n != 1 else ''} (inputs {given}): "
        f"{message}"
    )
