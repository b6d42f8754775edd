"""Writing the report's files: temporary name, then rename; permissions from the user's umask."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import IO, Any

from introscope._atomic import atomic_open

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_parquet"]


def atomic_write(path: pathlib.Path, write: Callable[[IO[bytes]], Any]) -> pathlib.Path:
    """Call ``write(file)`` on a temporary file beside ``path`` and rename it into place.

    Through :mod:`introscope._atomic`: the file gets ``0o666 & ~umask`` like any file the user
    creates, and an interrupted write leaves no file under the final name.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        write(f)
    return path


def write_bytes(path: pathlib.Path, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_parquet(path: pathlib.Path, frame: Any) -> pathlib.Path:
    """Write a pandas DataFrame as Parquet (pyarrow) atomically."""
    from introscope.exceptions import require

    pa = require("pyarrow", "report", "the report's Parquet table")
    pq = require("pyarrow.parquet", "report", "the report's Parquet table")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return atomic_write(path, lambda f: pq.write_table(table, f))
