"""Pytest plugin: run DNIKit 2.0's own test suite against introscope.

Loaded by ``run.py`` with ``-p dnikit_alias``. It does two things:

* an import hook maps DNIKit's public modules onto introscope's (``dnikit`` -> ``introscope``,
  ``dnikit_torch`` -> ``introscope.torch``, ...). A *private* DNIKit module (a name part starting
  with ``_``) imports as a stand-in whose members raise :class:`DNIKitPrivateAPI` when used, so the
  public tests of a file that also imports private helpers still run. Two private modules are
  test support rather than API and get small shims: ``dnikit.typing._types`` (a re-export of the
  standard ``typing`` module) and ``dnikit._availability`` (optional-package checks).
* the exception list (``exceptions.txt``) marks the tests that are expected to fail, strictly:
  a listed test that passes fails the run, and so does an entry that matches nothing when the
  whole suite runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pathlib
import sys
import types
from dataclasses import dataclass, field

import pytest

ALIASES = {
    "dnikit": "introscope",
    "dnikit_tensorflow": "introscope.tensorflow",
    "dnikit_torch": "introscope.torch",
    "dnikit_onnx": "introscope.onnx",
}
SHIMS = {
    "dnikit.typing._types": "typing",
    "dnikit._availability": "_dnikit_availability",
}
EXCEPTIONS_FILE = pathlib.Path(__file__).with_name("exceptions.txt")
CATEGORIES = {
    "private": "(a) uses a private DNIKit module",
    "difference": "(b) checks a documented, deliberate difference from DNIKit",
    "not-built": "introspector not built yet",
}


class DNIKitPrivateAPI(Exception):
    """Raised when a DNIKit test uses a member of a private DNIKit module."""


class _PrivateMember:
    """Stand-in for a name imported from a private DNIKit module; any use raises."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _fail(self, *args: object, **kwargs: object) -> None:
        raise DNIKitPrivateAPI(
            f"{self._name} belongs to a private DNIKit module; introscope keeps DNIKit's public "
            "API only, so this test is out of scope (list it as 'private' in exceptions.txt)"
        )

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    __call__ = _fail
    __instancecheck__ = _fail  # isinstance(x, _PrivateClass)
    __subclasscheck__ = _fail
    __getitem__ = _fail
    __iter__ = _fail
    __bool__ = _fail
    __len__ = _fail

    def __repr__(self) -> str:
        return f"<private DNIKit member {self._name}>"


def _private_module(fullname: str) -> types.ModuleType:
    module = types.ModuleType(fullname, f"stand-in for the private DNIKit module {fullname}")
    module.__path__ = []  # a package, so deeper private imports resolve too

    def __getattr__(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _PrivateMember(f"{fullname}.{name}")

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return module


def _proxy_module(fullname: str, real: types.ModuleType) -> types.ModuleType:
    """A module named ``fullname`` whose attributes are ``real``'s (the same objects).

    A proxy rather than ``real`` itself, so the import system's bookkeeping on the DNIKit name
    (binding submodules as attributes) never touches introscope's own modules.
    """
    module = types.ModuleType(fullname, real.__doc__)
    module.__path__ = []  # every DNIKit name may have children (dnikit.typing._types)
    if hasattr(real, "__all__"):
        module.__all__ = list(real.__all__)
    module.__file__ = getattr(real, "__file__", None)

    def __getattr__(name: str) -> object:
        return getattr(real, name)

    def __dir__() -> list[str]:
        return sorted(set(dir(real)) | set(module.__dict__))

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__dir__ = __dir__  # type: ignore[attr-defined]
    return module


class _ReadyLoader(importlib.abc.Loader):
    def __init__(self, module: types.ModuleType) -> None:
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self._module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class DNIKitAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``dnikit*`` imports to introscope modules, private stand-ins or shims."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        parts = fullname.split(".")
        if parts[0] not in ALIASES:
            return None
        if fullname in SHIMS:
            module = _proxy_module(fullname, importlib.import_module(SHIMS[fullname]))
        elif any(part.startswith("_") for part in parts[1:]):
            module = _private_module(fullname)
        else:
            target_name = ".".join([ALIASES[parts[0]], *parts[1:]])
            try:
                real = importlib.import_module(target_name)
            except ModuleNotFoundError as error:
                if error.name is not None and target_name.startswith(error.name):
                    raise ModuleNotFoundError(
                        f"No module named {fullname!r}: introscope has no {target_name!r}",
                        name=fullname,
                    ) from None
                raise
            module = _proxy_module(fullname, real)
        return importlib.util.spec_from_loader(
            fullname, _ReadyLoader(module), is_package=hasattr(module, "__path__")
        )


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, DNIKitAliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, DNIKitAliasFinder())


# ----------------------------------------------------------------------------- exception list


@dataclass
class Entry:
    target: str  # "test_file.py", "test_file.py::TestClass", "...::test_name" or a full id
    category: str
    reason: str
    line: int
    used: bool = field(default=False)

    def matches(self, nodeid: str) -> bool:
        if "::" not in self.target:
            return nodeid.split("::", 1)[0] == self.target
        return nodeid == self.target or nodeid.startswith((self.target + "[", self.target + "::"))


def parse_exceptions(text: str) -> list[Entry]:
    """Parse ``exceptions.txt``: ``<test id or file> | <category> | <reason>`` per line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"exceptions.txt line {number}: expected '<test id or file> | <category> | "
                f"<reason>', got {raw!r}"
            )
        target, category, reason = parts
        if category not in CATEGORIES:
            raise ValueError(
                f"exceptions.txt line {number}: category {category!r} is not one of "
                f"{sorted(CATEGORIES)}"
            )
        entries.append(Entry(target, category, reason, number))
    return entries


def _find(entries: list[Entry], nodeid: str) -> Entry | None:
    # the most specific entry wins: a test id over its file
    hits = [e for e in entries if e.matches(nodeid)]
    return max(hits, key=lambda e: len(e.target)) if hits else None


_ENTRIES: list[Entry] = []


def pytest_load_initial_conftests() -> None:
    # before DNIKit's conftest.py, which imports dnikit.base
    install()


def uninstall() -> None:
    """Remove the alias finder and the ``dnikit*`` modules it made."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, DNIKitAliasFinder)]
    for name in [n for n in sys.modules if n.split(".")[0] in ALIASES]:
        del sys.modules[name]


def pytest_configure(config: pytest.Config) -> None:
    path = pathlib.Path(os.environ.get("DNIKIT_SUITE_EXCEPTIONS", EXCEPTIONS_FILE))
    _ENTRIES[:] = parse_exceptions(path.read_text(encoding="utf-8"))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    if report.failed and isinstance(collector, pytest.Module):
        entry = _find(_ENTRIES, collector.nodeid)
        if entry is not None and "::" not in entry.target:
            entry.used = True
            report.outcome = "skipped"
            report.longrepr = (
                str(collector.path),
                0,
                f"Skipped: exceptions.txt line {entry.line} [{entry.category}]: {entry.reason}",
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        entry = _find(_ENTRIES, item.nodeid)
        if entry is None:
            continue
        entry.used = True
        # a 'private' test must fail *because* it reaches into DNIKit's private code: a stand-in
        # member, or a private attribute of a public object; any other error is a real failure
        raises = (DNIKitPrivateAPI, AttributeError) if entry.category == "private" else None
        item.add_marker(
            pytest.mark.xfail(
                strict=True,
                raises=raises,
                reason=f"exceptions.txt line {entry.line} [{entry.category}]: {entry.reason}",
            )
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DNIKIT_SUITE_FULL") != "1":
        return
    stale = [e for e in _ENTRIES if not e.used]
    if stale:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  line {e.line}: {e.target}" for e in stale]
        message = "exceptions.txt entries that match no test (remove or fix them):\n" + "\n".join(
            lines
        )
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
