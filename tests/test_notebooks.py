"""Every example notebook runs from a clean kernel, and prints the numbers it is about."""

import importlib.util
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")

sys.path.insert(0, str(ROOT / "docs"))
from execute_notebooks import TARGET, execute  # noqa: E402


def _run(name: str) -> str:
    """Execute examples/<name>.ipynb (the copy the docs site shows) and return its text output."""
    import nbformat

    target = TARGET / f"{name}.ipynb"
    execute(ROOT / "examples" / f"{name}.ipynb", target)
    notebook = nbformat.read(target, as_version=4)
    text = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise AssertionError(f"{name}: {out['ename']}: {out['evalue']}")
            text.append(out.get("text", ""))
            text.append(out.get("data", {}).get("text/plain", ""))
            if "image/png" in out.get("data", {}):
                text.append("<image/png>")  # a chart drawn inline, as the docs site shows it
    return "\n".join(text)


def test_iua_dying_relu_has_more_inactive_units():
    out = _run("01_iua")
    healthy = float(re.search(r"healthy \{.*'relu2': ([\d.]+)", out).group(1))
    dying = float(re.search(r"dying ReLU \{.*'relu2': ([\d.]+)", out).group(1))
    assert dying > 1.5 * healthy
    assert "<image/png>" in out  # the heatmaps


def test_pfa_prunes_and_keeps_accuracy():
    out = _run("02_pfa_pruning")
    params = re.search(r"params ([\d,]+) -> ([\d,]+)", out)
    before, after = (int(g.replace(",", "")) for g in params.groups())
    assert after < before
    acc = re.search(r"accuracy ([\d.]+) -> ([\d.]+)", out)
    assert float(acc.group(1)) > 0.9 and float(acc.group(2)) > 0.5


def test_familiarity_scores_every_test_digit():
    out = _run("03_familiarity")
    assert "450 test digits" in out
    rare = int(re.search(r"(\d+) test digits are at or below", out).group(1))
    assert 0 <= rare < 45


def test_duplicates_finds_the_planted_copies():
    out = _run("04_duplicates")
    assert "5 of the 5 planted copies found" in out


def test_dimension_reduction_gives_two_columns():
    out = _run("05_dimension_reduction")
    assert "(450, 2)" in out and "<image/png>" in out


def test_dataset_report_has_dnikit_columns():
    out = _run("06_dataset_report")
    assert "450 rows" in out and "'familiarity_fc1'" in out and "'duplicates_fc1'" in out


def test_training_monitor_sees_units_die():
    out = _run("07_training_monitor")
    last = re.findall(r"dead units \{'relu1': (\d+), 'relu2': (\d+)", out)[-1]
    assert int(last[1]) > 100


def test_every_notebook_has_a_test():
    names = {p.stem for p in (ROOT / "examples").glob("*.ipynb")}
    tested = {
        m.group(1) for m in re.finditer(r'_run\("(\w+)"\)', pathlib.Path(__file__).read_text())
    }
    assert names == tested
    assert importlib.util.find_spec("mkdocs_jupyter") is not None  # the site renders them
