"""Run DNIKit 2.0's own test suite (from its sdist) against introscope.

    .venv/bin/python tests/dnikit_suite/run.py                 # the whole suite, strict
    .venv/bin/python tests/dnikit_suite/run.py -k familiarity  # extra arguments go to pytest
    .venv/bin/python tests/dnikit_suite/run.py test_batch.py   # one DNIKit test file

The sdist is fetched once with ``pip download`` into ``.dnikit-sdist/`` (gitignored); set
``DNIKIT_SDIST`` to an unpacked ``dnikit-2.0.0`` folder or a ``.tar.gz`` to use a local copy.
Exit status: pytest's; a full run (no arguments) also fails on exception-list entries that match
no test. ``--skip-if-unavailable`` turns "the sdist cannot be fetched" into a warning and exit 0.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
SDIST_DIR = REPO / ".dnikit-sdist"
VERSION = "2.0.0"
UNPACKED = f"dnikit-{VERSION}"


def _unpack(archive: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / UNPACKED


def sdist_root() -> pathlib.Path:
    """The unpacked DNIKit sdist (fetching it when missing); raises RuntimeError if impossible."""
    override = os.environ.get("DNIKIT_SDIST")
    if override:
        path = pathlib.Path(override)
        if path.is_dir():
            return path
        if path.is_file():
            return _unpack(path, SDIST_DIR)
        raise RuntimeError(f"DNIKIT_SDIST={override!r} is neither a folder nor an archive")
    unpacked = SDIST_DIR / UNPACKED
    if (unpacked / "tests").is_dir():
        return unpacked
    archive = SDIST_DIR / f"{UNPACKED}.tar.gz"
    if not archive.is_file():
        SDIST_DIR.mkdir(exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--no-binary", ":all:", f"dnikit=={VERSION}", "-d", str(SDIST_DIR),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not archive.is_file():
            raise RuntimeError(
                f"could not download DNIKit's sdist ({' '.join(command)}):\n{done.stderr.strip()}"
            )
    return _unpack(archive, SDIST_DIR)


def main(argv: list[str]) -> int:
    skip_if_unavailable = "--skip-if-unavailable" in argv
    args = [a for a in argv if a != "--skip-if-unavailable"]
    try:
        root = sdist_root()
    except RuntimeError as error:
        print(f"dnikit-suite: {error}", file=sys.stderr)
        if skip_if_unavailable:
            print(
                "dnikit-suite: WARNING: skipped, DNIKit's test suite is unavailable",
                file=sys.stderr,
            )
            return 0
        return 2
    tests = root / "tests"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["DNIKIT_SUITE_FULL"] = "1" if not args else "0"
    env.setdefault("MPLBACKEND", "Agg")
    # test files named alone ("test_batch.py") are DNIKit's
    args = [str(tests / a) if (tests / a.split("::")[0]).is_file() else a for a in args]
    command = [
        sys.executable, "-m", "pytest", "-p", "dnikit_alias", "-p", "no:cacheprovider",
        "-c", str(HERE / "pytest.ini"), "--rootdir", str(tests), "-q",
        *(args if any(not a.startswith("-") for a in args) else [*args, str(tests)]),
    ]  # fmt: skip
    return subprocess.run(command, cwd=tests, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
