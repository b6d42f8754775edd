"""The objects a monitor registers as torch hooks, and what they need to know about a pass."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from introscope._validation import user_stacklevel

__all__ = [
    "_Hook",
    "_Pass",
    "_batch_rows",
    "_compiling",
    "_in_trace_check",
    "_inert",
    "_orphaned",
    "disable_under_dynamo",
    "disable_when_dynamo_loads",
]


class _Pass:
    """One thread's forward pass of the model in progress."""

    __slots__ = ("depth", "calls", "batch", "fed", "outer_exc", "checking")

    def __init__(self) -> None:
        self.depth = 0  # nesting of the model's own forward (0: outside a pass)
        self.calls: dict[str, int] = {}  # calls of each watched module in this pass
        self.batch: int | None = None  # dimension 0 of the pass's first input tensor
        self.fed = 0  # watched outputs folded in during this pass
        self.outer_exc: BaseException | None = None
        self.checking = False  # this pass is torch.jit.trace's check of its trace


def _compiling(torch: Any) -> bool:
    """Whether torch.compile (Dynamo) is tracing the model now."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _in_trace_check() -> bool:
    """Whether ``torch.jit.trace`` is running the model to check its trace (check_trace)."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_check_trace" and code.co_filename.endswith(_TRACE_FILE):
            return True
        frame = frame.f_back
    return False


_TRACE_FILE = os.path.join("jit", "_trace.py")


class _Hook:
    """A forward (pre-)hook calling ``monitor.<method>(module, *args)``, holding both weakly.

    A deep copy of the model shares it (``__deepcopy__``): called on the copy's module, which is
    not its own, it does nothing. Pickled (``torch.save(model)``), it becomes ``_inert_hook``.
    """

    __slots__ = ("_monitor", "_module", "_method")

    def __init__(self, monitor: Any, module: Any, method: str) -> None:
        self._monitor = weakref.ref(monitor)
        self._module = weakref.ref(module)
        self._method = method

    def __call__(self, module: Any, *args: Any) -> None:
        if module is not self._module():
            if getattr(module, "_is_replica", False):  # nn.DataParallel's copy for a device
                monitor = self._monitor()
                if monitor is not None:
                    monitor._replica_ran()
            return None
        monitor = self._monitor()
        if monitor is None:
            return None
        getattr(monitor, self._method)(module, *args)
        return None

    @property
    def __name__(self) -> str:
        # torch.jit.script compiles a module's hooks and reads their names first; an object
        # without one fails as "'_Hook' object has no attribute '__name__'". Still an
        # AttributeError (getattr(hook, "__name__", default) works), with the way out.
        raise AttributeError(
            "an introscope monitor's hooks cannot be compiled by torch.jit.script: detach the "
            "monitor (monitor.detach()) while scripting, then attach it again; the scripted "
            "copy is not watched (monitors watch Python modules)"
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> _Hook:
        return self

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_inert, ())


_dynamo_disabled = False


def disable_under_dynamo(torch: Any) -> None:
    """Make Dynamo (``torch.compile``) run the monitor's hooks as they are instead of tracing
    them: a traced hook recompiles once per watched module shape (its "recompile_limit"
    warnings name this file) and traces into numba, whose compiler then fails. Done once per
    process, when Dynamo is loaded (the wrapper costs a little on every call)."""
    global _dynamo_disabled
    if _dynamo_disabled:
        return
    _dynamo_disabled = True
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    if disable is None:
        return
    try:
        setattr(_Hook, "__call__", disable(_Hook.__call__))  # noqa: B010 - a method, patched
    except Exception:  # noqa: BLE001 - a torch without it: hooks stay traceable, as before
        return


class _WhenDynamoLoads(importlib.abc.MetaPathFinder):
    """A one-shot import hook: once ``torch._dynamo`` has been executed (``torch.compile``
    imports it on its first call), run ``disable_under_dynamo`` before anything is traced.

    It finds nothing itself: it asks the other finders for ``torch._dynamo``'s spec and wraps
    that loader's ``exec_module``, so the import is the normal one with a step after it."""

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self._busy = threading.local()

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch._dynamo" or getattr(self._busy, "on", False):
            return None
        self._busy.on = True  # the search below goes through sys.meta_path, this one included
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
            for finder in sys.meta_path:
                if spec is not None:
                    break
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(fullname, path, target)
        finally:
            self._busy.on = False
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or exec_module is None:
            return spec
        torch, finder = self._torch, self

        def exec_then_disable(module: Any) -> None:
            # Removed when the module is executed, not when found: importlib.util.find_spec
            # alone (a check for Dynamo) imports nothing, and the import after it is caught.
            _remove_finder(finder)
            exec_module(module)
            disable_under_dynamo(torch)

        try:
            loader.exec_module = exec_then_disable  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a read-only loader: patched at the next pass instead
            pass
        return spec


_finder: _WhenDynamoLoads | None = None


def _remove_finder(finder: _WhenDynamoLoads) -> None:
    global _finder
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass
    if _finder is finder:
        _finder = None


def disable_when_dynamo_loads(torch: Any) -> None:
    """``disable_under_dynamo`` now when Dynamo is loaded, else as soon as it is imported.

    Attaching a monitor does not import Dynamo (2-3 s); a ``torch.compile`` after the attach
    imports it, and its first trace would otherwise trace the hooks (recompiling once per
    watched module and tracing into numba). Installed at most once per process."""
    global _finder
    if _dynamo_disabled:
        return
    if "torch._dynamo" in sys.modules:
        disable_under_dynamo(torch)
    elif _finder is None:
        _finder = _WhenDynamoLoads(torch)
        sys.meta_path.insert(0, _finder)


def _inert_hook(*_: Any) -> None:
    """What a monitor's hook is in a saved model: nothing."""
    return None


def _inert() -> Callable[..., None]:
    return _inert_hook


def _batch_rows(tensor_type: type[Any], args: tuple[Any, ...]) -> int | None:
    """Dimension 0 of the first tensor among a forward's positional arguments (or the values
    of a mapping among them), None when there is none."""
    for arg in args:
        values = arg.values() if isinstance(arg, Mapping) else (arg,)
        for value in values:
            if isinstance(value, tensor_type) and value.dim() >= 1:
                return int(value.shape[0])
    return None


def _orphaned(handles: list[Any], owner: str, model: Any) -> None:
    for handle in handles:
        handle.remove()
    if model() is None:
        return  # the model went too: nothing is left to watch (e.g. both were local)
    warnings.warn(
        f"{owner}: a monitor still attached was garbage-collected, so its hooks were removed "
        f"and what it counted is lost; keep a reference to it (``with {owner}(model) as "
        f"monitor:`` or ``monitor = {owner}(model).attach()``) and read monitor.result",
        RuntimeWarning,
        # At the user's line that dropped the last reference (the finalizer runs there).
        stacklevel=user_stacklevel("weakref"),
    )
