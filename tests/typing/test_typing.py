"""Documented usage type-checks under ``mypy --strict`` as a user's code; misuse is rejected."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from introscope.base import Batch

HERE = pathlib.Path(__file__).parent
USER_FILES = sorted(HERE.glob("user_*.py"))
MISUSE = HERE / "misuse.py"
_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e '.[dev]')",
)


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[int, str]]]:
    """One ``mypy --strict`` run over every file here (a fresh cache, no project config)."""
    tmp = tmp_path_factory.mktemp("mypy")
    config = tmp / "mypy.ini"
    config.write_text("[mypy]\n")
    files = [*USER_FILES, MISUSE]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp / "cache"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            "--no-pretty",
            *map(str, files),
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=540,
    )
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (bad arguments, crash)
        pytest.fail(f"mypy failed to run:\n{proc.stdout}\n{proc.stderr}")
    errors: dict[str, list[tuple[int, str]]] = {}
    for line in proc.stdout.splitlines():
        match = _LINE.match(line)
        if match:
            name = pathlib.Path(match["file"]).name
            errors.setdefault(name, []).append((int(match["line"]), match["code"]))
        elif ": error:" in line:
            pytest.fail(f"unparsed mypy error: {line}")
    return errors


@pytest.mark.parametrize("path", USER_FILES, ids=lambda p: p.name)
def test_documented_usage_type_checks(
    path: pathlib.Path, mypy_errors: dict[str, list[tuple[int, str]]]
) -> None:
    lines = path.read_text().splitlines()
    found = [f"{n}: [{code}] {lines[n - 1].strip()}" for n, code in mypy_errors.get(path.name, [])]
    assert not found, f"mypy --strict rejects documented usage in {path.name}:\n" + "\n".join(found)


def test_misuse_is_rejected(mypy_errors: dict[str, list[tuple[int, str]]]) -> None:
    expected = {
        (n, m.group(1))
        for n, text in enumerate(MISUSE.read_text().splitlines(), start=1)
        if (m := re.search(r"# E: ([a-z-]+)$", text))
    }
    assert len(expected) >= 20
    got = set(mypy_errors.get(MISUSE.name, []))
    missing = sorted(expected - got)
    assert not missing, f"misuse that mypy no longer rejects (line, code): {missing}"
    unexpected = sorted({n for n, _ in got} - {n for n, _ in expected})
    assert not unexpected, f"mypy errors on lines of misuse.py not marked E: {unexpected}"


def _load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"_typing_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metadata_snippets_run() -> None:
    """The type-checked builder and reader idioms also do what they say at runtime."""
    user = _load("user_metadata")
    batch = user.builder_idioms()  # type: ignore[attr-defined]
    scores, tags, one, path = user.read_metadata(batch)  # type: ignore[attr-defined]
    assert scores == [0.5, 0.25] and one == 0.5
    assert tags == {"color": ["red", "blue"]}
    assert path == "A.PNG"
    assert user.ids_of(batch) == ["a", "b"]  # type: ignore[attr-defined]
    assert user.first_id(batch) == "a"  # type: ignore[attr-defined]
    assert batch.metadata[Batch.StdKeys.LABELS] == {"cls": [0, 1]}
    made = list(user.my_producer(8))  # type: ignore[attr-defined]
    assert [b.batch_size for b in made] == [8, 8, 4]
    assert made[2].metadata[user.TAGS] == {"c": ["a"] * 4}  # type: ignore[attr-defined]
    assert np.array_equal(batch.fields["x"], np.zeros((2, 1)))
