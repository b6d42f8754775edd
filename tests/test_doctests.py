"""The usage examples in the docstrings run and show what they say (issue 14).

Every module of the packages below is searched for doctests (``>>>`` blocks, which the API
reference renders from the ``Examples:`` sections); a failing example fails the test. A second
test checks that each public class and function of those packages has an example that runs.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil

import pytest

#: Package -> the optional frameworks its examples need (the test skips without them).
PACKAGES: dict[str, tuple[str, ...]] = {
    "introscope.processors": (),
    "introscope.samples": ("torch", "sklearn"),
    "introscope.torch": ("torch",),
    "introscope.tensorflow": ("keras",),
    "introscope.onnx": ("onnx", "onnxruntime"),
    "introscope.ray": (),
    "introscope.exceptions": (),
    "introscope.typing": (),
    "introscope.base": ("PIL",),
    "introscope.introspectors": ("pandas",),
}

#: Public names without an example of their own, and why.
NO_EXAMPLE: dict[str, str] = {}

#: Public names whose examples are all ``# doctest: +SKIP``, and why (checked by hand).
SKIPPED_EXAMPLE = {
    "introscope.ray.introspect": "needs a running Ray cluster",
    "introscope.ray.score": "needs a running Ray cluster",
    "introscope.ray.init_local": "starts a Ray cluster",
}


def _modules(package: str) -> list:
    root = importlib.import_module(package)
    modules = [root]
    if hasattr(root, "__path__"):
        for info in sorted(pkgutil.walk_packages(root.__path__, package + "."), key=str):
            modules.append(importlib.import_module(info.name))
    return modules


def _doctests(package: str) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for module in _modules(package):
        tests.extend(t for t in finder.find(module) if t.examples)
    return sorted(tests, key=lambda t: t.name)


def _public_objects(package: str) -> dict[str, object]:
    module = importlib.import_module(package)
    out = {}
    for name in module.__all__:
        obj = getattr(module, name)
        # Aliases of outside objects (``StringLike = typing.Any``) document themselves.
        own = getattr(obj, "__module__", "").startswith("introscope")
        if own and (inspect.isclass(obj) or inspect.isfunction(obj)):
            out[f"{package}.{name}"] = obj
    return out


def _runnable_examples(obj: object) -> tuple[int, int]:
    """(examples that run, examples marked +SKIP) in ``obj``'s own docstring."""
    examples = doctest.DocTestParser().get_examples(inspect.getdoc(obj) or "")
    skipped = sum(1 for e in examples if e.options.get(doctest.SKIP))
    return len(examples) - skipped, skipped


@pytest.mark.parametrize("package", list(PACKAGES))
def test_docstring_examples_run(package, monkeypatch, tmp_path):
    for requirement in PACKAGES[package]:
        pytest.importorskip(requirement)
    monkeypatch.chdir(tmp_path)  # an example that writes a relative path writes it here
    tests = _doctests(package)
    assert tests, f"{package} has no docstring examples"
    failed, report = [], io.StringIO()
    attempted = 0
    for test in tests:
        runner = doctest.DocTestRunner(verbose=False)
        result = runner.run(test, out=report.write)
        attempted += result.attempted
        if result.failed:
            failed.append(test.name)
    assert not failed, f"{len(failed)} docstring example(s) failed: {failed}\n{report.getvalue()}"
    assert attempted > 0


@pytest.mark.parametrize("package", list(PACKAGES))
def test_every_public_name_has_an_example(package):
    for requirement in PACKAGES[package]:
        pytest.importorskip(requirement)
    missing, only_skipped = [], []
    for name, obj in _public_objects(package).items():
        if name in NO_EXAMPLE:
            continue
        runs, skipped = _runnable_examples(obj)
        if name in SKIPPED_EXAMPLE:
            if runs or not skipped:
                only_skipped.append(f"{name} ({runs} run, {skipped} skipped)")
        elif not runs:
            missing.append(name)
    assert missing == [], "public names without a docstring example that runs"
    # The exemption lists must stay true: a name that gets a running example leaves them.
    assert only_skipped == [], "SKIPPED_EXAMPLE names whose examples are not all +SKIP"


def test_exemptions_name_public_objects():
    known = {}
    for package in PACKAGES:
        try:
            known.update(_public_objects(package))
        except ImportError:
            continue
    for name in [*NO_EXAMPLE, *SKIPPED_EXAMPLE]:
        assert name in known, f"exemption {name} is not a public class or function"
    for name in NO_EXAMPLE:
        assert _runnable_examples(known[name]) == (0, 0), f"{name} has examples now"
