"""Module structure: no introspector imports another's private module; no import cycles.

Read from the source (``ast``), so function-level (lazy) imports count too.
"""

from __future__ import annotations

import ast
import pathlib

import introscope

ROOT = pathlib.Path(introscope.__file__).resolve().parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every introscope module ``path`` imports (absolute names, lazy imports included)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("introscope"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("introscope"):
                continue
            submodules = {
                f"{target}.{a.name}"
                for a in node.names
                if (ROOT.parent / f"{target}.{a.name}".replace(".", "/"))
                .with_suffix(".py")
                .exists()
            }
            found.update(submodules)  # ``from . import _strategies`` imports a module ...
            if len(submodules) < len(node.names):
                found.add(target)  # ... ``from . import name`` reads the package too
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _introspector(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "introspectors" and not parts[2].startswith("_"):
        return parts[2]
    return None


def test_no_introspector_imports_another_introspectors_private_module() -> None:
    bad = []
    for module, deps in _graph().items():
        if not module.startswith("introscope.introspectors"):
            continue
        mine = _introspector(module)
        for dep in deps:
            theirs = _introspector(dep)
            private = any(p.startswith("_") for p in dep.split(".")[3:])
            if theirs is not None and theirs != mine and private:
                bad.append(f"{module} -> {dep}")
    assert not bad, bad


def test_contract_modules_have_no_import_cycles() -> None:
    graph = _graph()
    watched = [
        m
        for m in graph
        if m.startswith(("introscope.introspectors.iua", "introscope.introspectors.pfa"))
        or m
        in (
            "introscope.introspectors._accumulator",
            "introscope.introspectors._npz",
            "introscope._validation",
            "introscope.torch._monitor",
            "introscope.base._multi_introspect",
        )
    ]
    assert "introscope.introspectors._accumulator" in watched
    cycles = []
    for start in watched:
        # Explicit imports only: importing a submodule also runs its parent packages'
        # __init__, but that is Python's package mechanics, not a dependency of the module.
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            node = stack.pop()
            if node == start:
                cycles.append(start)
                break
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
    assert not cycles, cycles


def test_the_graph_sees_lazy_imports() -> None:
    deps = _graph()["introscope.introspectors.iua._iua"]
    assert "introscope.torch._monitor" in deps  # imported inside IUA.monitor
    assert "introscope.introspectors._accumulator" in deps
