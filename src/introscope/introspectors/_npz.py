"""Save and load analysis state as one ``.npz`` file: numpy arrays plus a JSON header, no pickle.

Files are written through ``introscope._atomic`` (a temporary name beside the target, renamed
into place; the umask's permissions for a new file, the old file's for a replaced one; a link is
written through), so an interrupted write leaves no file that a later load reads as complete.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from introscope._atomic import atomic_open
from introscope.exceptions import IntroscopeError, IntroscopeValueError

__all__ = ["HEADER_KEY", "load_npz", "save_npz"]

#: The entry of the archive that holds the JSON header (a 0-d unicode array).
HEADER_KEY = "__introscope__"


def save_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], header: dict[str, Any]
) -> None:
    """Write ``arrays`` and the JSON-able ``header`` to ``path`` atomically (no pickle)."""
    target = pathlib.Path(path)
    if HEADER_KEY in arrays:
        raise IntroscopeValueError(f"save: {HEADER_KEY!r} is reserved for the header")
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in payload.items():
        if value.dtype.hasobject:
            raise IntroscopeValueError(
                f"save: array {key!r} has dtype object, which cannot be stored without pickle"
            )
    payload[HEADER_KEY] = np.array(json.dumps(header, allow_nan=False))
    with atomic_open(target, "wb") as handle:
        np.savez(handle, **cast("dict[str, Any]", payload))  # every entry is an array


def load_npz(
    path: str | os.PathLike[str], *, expect: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by ``save_npz``; ``expect`` is the header's ``"type"``."""
    target = pathlib.Path(path)
    if not target.exists():
        raise FileNotFoundError(f"{expect}.load: no file at {str(target)!r}")
    if target.is_dir():
        raise IsADirectoryError(f"{expect}.load: {str(target)!r} is a folder, not a saved file")
    not_ours = f"{expect}.load: {str(target)!r} is not an introscope .npz file"
    damaged = (
        f"{expect}.load: {str(target)!r} is damaged (truncated or changed after it was "
        f"written); save it again from the analysis, or copy it again"
    )
    try:
        data = np.load(target, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if zipfile.is_zipfile(target):
            raise IntroscopeError(f"{damaged} ({type(exc).__name__}: {exc})") from exc
        # Not a zip archive (truncated, a failed download, another format). numpy's message
        # would advise allow_pickle=True, which introscope never does.
        if target.suffix == ".npz":
            raise IntroscopeError(
                f"{expect}.load: {str(target)!r} is damaged or not an .npz archive (truncated, "
                f"or another kind of file under that name); save it again from the analysis, or "
                f"copy it again"
            ) from None
        raise IntroscopeError(f"{not_ours} (it is not a zip archive)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise IntroscopeError(f"{not_ours} (it holds a single array)")
    try:
        with data:  # each member is read, and its CRC checked, here
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise IntroscopeError(f"{damaged} ({type(exc).__name__}: {exc})") from exc
    raw = arrays.pop(HEADER_KEY, None)
    if raw is None:
        raise IntroscopeError(f"{expect}.load: {str(target)!r} has no introscope header")
    try:
        header: dict[str, Any] = json.loads(str(raw))
    except ValueError as exc:
        raise IntroscopeError(f"{damaged} (its header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise IntroscopeError(f"{damaged} (its header is not a JSON object)")
    if header.get("type") != expect:
        raise IntroscopeError(
            f"{expect}.load: {str(target)!r} holds a {header.get('type')!r}, not a {expect!r}; "
            f"load it with {header.get('type')}.load"
        )
    return arrays, header
