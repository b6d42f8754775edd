"""The files of an image folder for ``introscope analyze``: labels from the first-level
folders, hidden files, the output folder and symbolic links left out (each with a note)."""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass

from ._tables import NO_LABEL

__all__ = ["IMAGE_SUFFIXES", "image_folder", "folder_summary"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


def _hidden(path: pathlib.Path, root: pathlib.Path) -> bool:
    """Whether a file or folder below ``root`` is hidden: a dot name anywhere on its way
    (macOS ``._x.png`` AppleDouble files, ``.ipynb_checkpoints``) or a ``__MACOSX`` folder."""
    return any(p.startswith(".") or p == "__MACOSX" for p in path.relative_to(root).parts)


def _walk(
    folder: pathlib.Path, root: pathlib.Path, walk: _Walk, recursive: bool
) -> list[pathlib.Path]:
    """The images in ``folder`` (and below it when ``recursive``), in no particular order."""
    found: list[pathlib.Path] = []
    for p in folder.iterdir():
        if _hidden(p, root):
            continue
        if p.is_symlink() and not p.exists() and p.suffix.lower() not in IMAGE_SUFFIXES:
            # A broken link without an image's name (a folder that moved, an unmounted disk):
            # not read, but said, as a missing label folder must not go unnoticed.
            walk.notes.append(
                f"{p.relative_to(root).as_posix()} skipped: a broken symbolic link "
                f"(to {str(p.readlink())!r})"
            )
            continue
        if p.is_dir():
            if recursive and walk.enter(p, root):
                found += _walk(p, root, walk, recursive)
        elif p.suffix.lower() in IMAGE_SUFFIXES and walk.keep_file(p, root):
            found.append(p)
    return found


@dataclass
class _Walk:
    """What the walk of an image folder leaves out, and why (one note each): the output
    folder, its report files when it is the data folder itself, and symbolic links to folders
    inside the data folder (which would read its images twice) or to folders already read."""

    real_root: pathlib.Path
    out: pathlib.Path | None = None
    seen: set[pathlib.Path] = dataclasses.field(default_factory=set)
    notes: list[str] = dataclasses.field(default_factory=list)

    def enter(self, d: pathlib.Path, root: pathlib.Path) -> bool:
        real = d.resolve()
        rel = d.relative_to(root).as_posix()
        # Only an output folder strictly inside --data is left out (one that holds --data
        # holds every folder below it).
        inside = self.out is not None and self.real_root in self.out.parents
        if inside and self.out is not None and (real == self.out or self.out in real.parents):
            self.notes.append(f"the output folder {rel}/ left out")
            return False
        if d.is_symlink() and (
            real == self.real_root or self.real_root in real.parents or real in self.seen
        ):
            self.notes.append(
                f"{rel}/ skipped: a symbolic link to {str(real)!r}, a folder inside --data "
                f"(or already read), whose images would be read twice"
            )
            return False
        if real in self.seen:  # a loop of links
            return False
        self.seen.add(real)
        return True

    def keep_file(self, p: pathlib.Path, root: pathlib.Path) -> bool:
        if p.is_symlink() and not p.exists():
            return True  # a broken link: named by the image check, never dropped silently
        if not p.is_file():
            return False
        if self.out == self.real_root and p.parent == root and _is_report_image(p.name):
            self.notes.append(f"{p.name} left out: a result of an earlier run (--out is --data)")
            return False
        return True


def _is_report_image(name: str) -> bool:
    """One of the report's own images (iua_<tag>.png)."""
    return name.startswith("iua_") and name.endswith(".png")


def image_folder(
    root: pathlib.Path, out: pathlib.Path | None = None
) -> tuple[list[pathlib.Path], list[str], list[str], list[str]]:
    """(files, labels, ids, notes) of an image folder; ``out``, the output folder, is left out
    when it is inside ``root`` (or is ``root``: then only the report's own images)."""
    walk = _Walk(root.resolve(), out.resolve() if out is not None else None)
    walk.seen.add(walk.real_root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p, root))
    files: list[pathlib.Path] = []
    labels: list[str] = []
    nested: list[str] = []
    for d in subdirs:
        if not walk.enter(d, root):
            continue
        found = sorted(_walk(d, root, walk, recursive=True))
        files += found
        labels += [d.name] * len(found)
        inner = sorted({f.relative_to(d).parts[0] for f in found if f.parent != d})
        if found and len(inner) > 1 and all(f.parent != d for f in found):
            nested.append(f"{d.name}/ ({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''})")
    loose = sorted(_walk(root, root, walk, recursive=False))
    files += loose
    labels += [NO_LABEL] * len(loose)
    ids = [p.relative_to(root).as_posix() for p in files]
    if nested:
        walk.notes.append(
            f"labels are the first-level folders: {', '.join(nested[:3])}"
            f"{' ...' if len(nested) > 3 else ''} hold their images in sub-folders, merged under "
            f"that label (point --data at one of them to label by its sub-folders)"
        )
    return files, labels, ids, list(dict.fromkeys(walk.notes))


def folder_summary(ids: list[str], labels: list[str]) -> str:
    """``41 images in 2 label folders and 1 loose image``: the loose images directly in
    ``--data`` (labelled ``(no label)``) are not counted as a label folder."""
    loose = sum(1 for i in ids if "/" not in i)
    folders = len({label for i, label in zip(ids, labels) if "/" in i})
    images = f"{len(ids)} image{'s' if len(ids) != 1 else ''}"
    if not folders:
        return f"{images}, all loose (no label folders)"
    where = f"{images} in {folders} label folder{'s' if folders != 1 else ''}"
    return where + (f" and {loose} loose image{'s' if loose != 1 else ''}" if loose else "")
