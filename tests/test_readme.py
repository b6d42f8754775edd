"""The README's Quick start runs as written (a user copies it first)."""

from __future__ import annotations

import pathlib

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_quick_start_runs_as_written(tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("INTROSCOPE_PROGRESS", "0")
    monkeypatch.chdir(tmp_path)  # it saves iua.png in the current folder
    scope: dict = {}
    exec(compile(_quick_start(), "README.md (Quick start)", "exec"), scope)  # noqa: S102
    assert (tmp_path / "iua.png").stat().st_size > 0
    details = scope["IUA"].show(scope["iua"], details=True)
    assert "channels" in details.columns  # as the comment on that line says
    assert list(scope["IUA"].show(scope["iua"]).columns) == [
        "response",
        "mean inactive",
        "std inactive",
    ]
    assert len(scope["PFA"].show(scope["pfa"].get_recipe())) == len(scope["conv"]) > 0
