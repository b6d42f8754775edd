"""Check, before the model loads, that every image of an ``--data`` folder can be decoded."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from introscope.exceptions import require

from ._models import InputFileError

__all__ = ["check_images", "image_problem"]

#: Files named in the error (the rest are counted).
_NAMED = 10


def image_problem(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot be decoded, or None when it can.

    A PNG is checked by Pillow's ``verify`` (chunk structure and checksums, no decompression),
    which finds truncated and damaged files; when that fails (a PNG lacking only its IEND chunk
    does), the file is decoded as the reader decodes it and named only if that fails too. Other
    formats are decoded (JPEG at reduced size).
    """
    pil = require("PIL.Image", "image", "reading an image folder")
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link to {os.readlink(path)!r}"
    try:
        with pil.open(path) as img:
            if img.format == "PNG":
                try:
                    img.verify()
                    return None
                except Exception:  # noqa: BLE001 - decoded below, as the reader would
                    pass
            else:
                img.draft("RGB", (64, 64))  # JPEG: decode at 1/8 size, every byte still read
                img.load()
                return None
        with pil.open(path) as img:  # verify() leaves the image unusable: open it again
            img.convert("RGB").load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError...
        return str(exc) or type(exc).__name__
    return None


def check_images(files: Sequence[pathlib.Path], root: pathlib.Path) -> None:
    """Raise :class:`InputFileError` naming every image under ``root`` that cannot be decoded."""
    from introscope._progress import progress

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(progress(pool.map(image_problem, files), "checking images", total=len(files)))
    bad = [(f, why) for f, why in zip(files, found) if why is not None]
    if not bad:
        return
    named = "; ".join(f"{f.relative_to(root).as_posix()!r} ({why})" for f, why in bad[:_NAMED])
    more = f"; and {len(bad) - _NAMED} more" if len(bad) > _NAMED else ""
    raise InputFileError(
        f"--data {str(root)!r}: {len(bad)} of {len(files)} images cannot be decoded: "
        f"{named}{more}. Remove or replace them (or move them out of the folder) and run again; "
        f"nothing was analysed, and no image is skipped silently"
    )
