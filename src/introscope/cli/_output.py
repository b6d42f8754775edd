"""Writing the report's files atomically (``introscope._atomic``: temporary name, fsync, rename,
permissions from the user's umask)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from introscope._atomic import atomic_open, write_bytes, write_text

__all__ = ["write_bytes", "write_text", "write_json", "write_parquet"]


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_parquet(path: pathlib.Path, frame: Any) -> pathlib.Path:
    """Write a pandas DataFrame as Parquet (pyarrow) atomically."""
    from introscope.exceptions import require

    pa = require("pyarrow", "report", "the report's Parquet table")
    pq = require("pyarrow.parquet", "report", "the report's Parquet table")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f)
    return pathlib.Path(path)
