"""Writing files atomically, with the permissions the user's umask gives any new file.

Every file introscope writes (charts, plans, caches, saved results, reports) goes through here:
the data goes to a temporary name in the target's folder, is flushed to disk, gets mode
``0o666 & ~umask`` (``tempfile.mkstemp`` alone would leave it owner-only, 0600), or the mode of
the file it replaces, and is renamed into place, so a reader sees either the old file or the
whole new one, never a part. A symbolic link is written through (the link stays).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from typing import IO, Any

from introscope.exceptions import IntroscopeValueError

__all__ = [
    "atomic_open",
    "atomic_path",
    "new_file_mode",
    "write_bytes",
    "write_text",
    "TEMP_NAME",
]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (the lock keeps our own threads consistent)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a new regular file gets under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def _temp_name(target: pathlib.Path) -> pathlib.Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


#: The names :func:`atomic_path` gives its temporary files (``.report.html.1eabb11905d2.tmp``);
#: group 1 is the target's name. A process killed outright (SIGKILL) leaves one behind.
TEMP_NAME = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; write it (by name), and on success it replaces
    ``path`` with umask-normal permissions. On an exception the temporary file is removed."""
    target = pathlib.Path(path)
    if target.is_symlink():
        target = target.resolve()  # write through the link, as open() would; keep the link
    if not target.parent.is_dir():
        # Named by the user's path, not by the temporary file's name.
        raise FileNotFoundError(f"no folder {str(target.parent)!r} to write {str(path)!r} in")
    try:
        # Overwriting keeps the file's own permissions (never widens a private file).
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = new_file_mode()
    tmp = _temp_name(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {target}")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, atomically: the file appears whole when the block ends.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise).
    """
    if mode not in ("wb", "w"):
        raise IntroscopeValueError(
            f"atomic_open writes new files: mode must be 'wb' or 'w', got {mode!r}"
        )
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if mode == "w":
            handle: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8")
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle


def write_bytes(path: str | os.PathLike[str], data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return pathlib.Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> pathlib.Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return pathlib.Path(path)
