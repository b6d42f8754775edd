"""Writing the report's files atomically (``introscope._atomic``: temporary name, fsync, rename,
permissions from the user's umask)."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

from introscope._atomic import atomic_open, write_bytes, write_text

__all__ = [
    "check_output_folder",
    "check_output_names",
    "write_bytes",
    "write_text",
    "write_json",
    "write_parquet",
]


def check_output_folder(out: str | os.PathLike[str], option: str = "--out") -> pathlib.Path:
    """Check, before any work, that the results can be written to the folder ``out``.

    ``out`` must be a folder or not exist yet; a probe file is created (and removed) in it, or
    in its nearest existing parent, so a read-only folder or file system is found now and not
    after the analysis. Nothing is left behind. Raises ``IntroscopeValueError`` naming
    ``option``.
    """
    from introscope.exceptions import IntroscopeValueError

    path = pathlib.Path(out)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is" if probe == path else f"is inside {str(probe)!r}, which is"
        raise IntroscopeValueError(
            f"{option} {str(path)!r} {what} a file, not a folder; name a folder for the report"
        )
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".introscope-probe-"):
            pass
    except OSError as exc:
        raise IntroscopeValueError(
            f"{option} {str(path)!r}: cannot write in {str(probe)!r} ({exc.strerror or exc}); "
            f"name a folder you can write to"
        ) from None
    return path


def check_output_names(
    out: str | os.PathLike[str], names: Sequence[str], option: str = "--out"
) -> None:
    """Check, before any work, that none of the files ``names`` to write in the folder ``out``
    is there as something a file cannot replace (a folder named ``report.html``)."""
    from introscope.exceptions import IntroscopeValueError

    folder = pathlib.Path(out)
    for name in names:
        path = folder / name
        if path.exists() and not path.is_file():
            what = "a folder" if path.is_dir() else "something other than a file"
            raise IntroscopeValueError(
                f"{option} {str(folder)!r} holds {what} named {name!r}, where the report "
                f"writes a file; remove or rename it, or name another {option}"
            )


def write_json(path: pathlib.Path, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_parquet(path: pathlib.Path, frame: Any) -> pathlib.Path:
    """Write a pandas DataFrame as Parquet (pyarrow) atomically; ``frame.attrs["introscope"]``
    goes to the schema metadata key ``introscope`` as JSON."""
    from introscope.exceptions import require

    pa = require("pyarrow", "report", "the report's Parquet table")
    pq = require("pyarrow.parquet", "report", "the report's Parquet table")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    entry = frame.attrs.get("introscope")
    if entry is not None:  # what the columns hold, as introscope.cli._columns describes
        from ._columns import schema_metadata

        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **schema_metadata(entry)}
        )
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f)
    return pathlib.Path(path)
