"""Run code under DNIKit 2.0 in its own virtual environment, for differential tests.

The reference interpreter is ``$INTROSCOPE_DNIKIT_PYTHON`` or ``.venv-dnikit/bin/python`` (made by
``make dnikit-venv``, which ``make test`` runs). Tests that need it call :func:`run_dnikit` and are
skipped when it is absent.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def dnikit_python() -> pathlib.Path | None:
    env = os.environ.get("INTROSCOPE_DNIKIT_PYTHON")
    path = pathlib.Path(env) if env else ROOT / ".venv-dnikit" / "bin" / "python"
    if not path.exists():
        return None
    ok = subprocess.run([str(path), "-c", "import dnikit"], capture_output=True)
    return path if ok.returncode == 0 else None


def require_dnikit() -> pathlib.Path:
    path = dnikit_python()
    if path is None:
        pytest.skip("DNIKit 2.0 reference venv not found (make dnikit-venv)")
    return path


def run_dnikit(script: str, arrays: dict[str, np.ndarray], workdir: pathlib.Path) -> dict:
    """Run ``script`` under DNIKit with ``arrays`` loaded into a dict named ``arrays``.

    The script must assign a JSON-serialisable object to ``result``; it is returned.
    """
    python = require_dnikit()
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "inputs.npz", **arrays)
    prelude = textwrap.dedent(
        f"""
        import json, numpy as np
        _npz = np.load({str(workdir / "inputs.npz")!r}, allow_pickle=False)
        arrays = {{k: _npz[k] for k in _npz.files}}
        """
    )
    epilogue = textwrap.dedent(
        f"""
        with open({str(workdir / "result.json")!r}, "w") as _f:
            json.dump(result, _f)
        """
    )
    code = prelude + textwrap.dedent(script) + epilogue
    # DNIKit's own temporary files (e.g. its Cacher's pickles) go to the test's folder, which
    # pytest removes, not to the system's temporary folder.
    env = {**os.environ, "TMPDIR": str(workdir)}
    proc = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, cwd=workdir, env=env
    )
    if proc.returncode != 0:
        raise AssertionError(f"DNIKit reference run failed:\n{proc.stderr[-4000:]}")
    return json.loads((workdir / "result.json").read_text())
