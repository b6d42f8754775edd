"""Shim for ``dnikit._availability``: which optional packages the suite can use.

DNIKit's own helpers report a package as available only once something imported it; here a
package counts when it can be imported, and is imported so the tests that need it find it.
"""

from __future__ import annotations

import importlib
import importlib.util


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _opencv_available() -> bool:
    return _importable("cv2")


def _PIL_available() -> bool:  # noqa: N802 (DNIKit's name)
    return _importable("PIL")


def _tensorflow_available() -> bool:
    return _importable("tensorflow")


def _matplotlib_available() -> bool:
    return _importable("matplotlib")


def _umap_available() -> bool:
    return _importable("umap")


def _pandas_available() -> bool:
    return _importable("pandas")
