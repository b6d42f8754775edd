"""Forward hooks on chosen submodules of a live ``torch.nn.Module``, shared by the IUA and PFA
monitors: module resolution, attach/detach, pass delimiting and per-call response names.

Response names are those of :mod:`introscope.torch`: a module's dotted path, or ``path#k`` for
the k-th call (from 0) of a module that runs several times in one forward pass of the model.
torch is imported only when a monitor is made.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, TypeVar

from introscope.base._model import unknown_name_error
from introscope.exceptions import IntroscopeError, require

__all__ = ["HookedMonitor", "rename_key", "resolve_modules"]

_M = TypeVar("_M", bound="HookedMonitor")
_V = TypeVar("_V")


def resolve_modules(
    model: Any,
    layers: str | Iterable[Any] | None,
    *,
    owner: str,
    default_types: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``{dotted name: module}`` of the modules of ``model`` that ``layers`` names.

    ``layers``: names as in ``model.named_modules()`` and/or the modules themselves; None picks
    every module whose class name is in ``default_types`` (an error when there are none).
    Unknown names raise an error listing close matches; ``owner`` (e.g. "IUA.monitor") starts
    every message.
    """
    torch = require("torch", "torch", owner)
    named = dict(model.named_modules())
    if layers is None:
        chosen = {n: m for n, m in named.items() if type(m).__name__ in default_types}
        if not chosen:
            what = "/".join(default_types) + " module" if default_types else "default module"
            raise IntroscopeError(
                f"{owner}: the model has no {what} to watch; pass layers= (module names such "
                f"as {list(named)[1:4]}) to choose modules"
            )
    else:
        items = [layers] if isinstance(layers, str) else list(layers)
        if not items:
            raise IntroscopeError(f"{owner}: layers is empty; name at least one module")
        by_id = {id(m): n for n, m in named.items()}
        chosen = {}
        unknown = []
        for item in items:
            if isinstance(item, str):
                if item in named:
                    chosen[item] = named[item]
                else:
                    unknown.append(item)
            elif not isinstance(item, torch.nn.Module):
                raise IntroscopeError(
                    f"{owner}: layers must hold module names (str) or torch modules, got "
                    f"{type(item).__name__}"
                )
            elif id(item) in by_id:
                chosen[by_id[id(item)] or type(item).__name__] = item
            else:
                raise IntroscopeError(
                    f"{owner}: {type(item).__name__} module is not part of the model"
                )
        if unknown:
            raise unknown_name_error("module", unknown, [n for n in named if n])
    _check_not_scripted(torch, named, chosen, owner)
    return chosen


def _check_not_scripted(
    torch: Any, named: dict[str, Any], chosen: dict[str, Any], owner: str
) -> None:
    # TorchScript runs compiled code: the root refuses hooks, and hooks registered on the
    # submodules of a scripted module are accepted but never called (a silent empty result).
    script = torch.jit.ScriptModule
    if isinstance(named[""], script):
        raise IntroscopeError(
            f"{owner}: the model is a TorchScript module, which runs no Python hooks; "
            f"monitor the original (unscripted) module"
        )
    scripted = [n for n, m in named.items() if n and isinstance(m, script)]
    for name in chosen:
        outer = [s for s in scripted if name == s or name.startswith(s + ".")]
        if outer:
            raise IntroscopeError(
                f"{owner}: module {name!r} is (inside) the TorchScript module {outer[0]!r}, "
                f"which runs no Python hooks; watch a module outside it"
            )


def rename_key(mapping: MutableMapping[str, _V], old: str, new: str) -> None:
    """Rename ``old`` to ``new`` in ``mapping`` in place, keeping the order (no-op if absent)."""
    if old not in mapping:
        return
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)


class HookedMonitor:
    """Forward hooks on chosen modules of a ``torch.nn.Module``, each output passed to
    :meth:`_fold` under its response name; a context manager (attach on entry, detach on
    exit).

    A forward pre-hook and an (always called) forward hook on the model delimit its forward
    passes. Within one pass, the k-th call of a watched module is named ``name#k``; once a
    module is seen to run twice, :meth:`_rename` moves what was filed under the plain name to
    ``name#0``, as :mod:`introscope.torch` (which learns the call counts from a dry run) names
    it from the start. A call outside a forward pass of the model counts as the first call.
    Subclasses implement :meth:`_fold` and :meth:`_rename`.
    """

    def __init__(
        self,
        model: Any,
        layers: str | Iterable[Any] | None,
        *,
        owner: str,
        default_types: tuple[str, ...] = (),
    ) -> None:
        self._torch = torch = require("torch", "torch", owner)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{owner} needs a torch.nn.Module, got {type(model).__name__}")
        self._owner = owner
        self._model = model
        self._modules = resolve_modules(model, layers, owner=owner, default_types=default_types)
        self._calls: dict[str, int] = {}  # calls of each watched module in the current pass
        self._depth = 0  # nesting of the model's own forward (0: outside a pass)
        self._repeated: set[str] = set()  # modules seen running several times in one pass
        self._handles: list[Any] = []

    def _fold(self, name: str, output: Any) -> None:
        """Fold one output tensor (with a batch dimension) of response ``name``."""
        raise NotImplementedError

    def _rename(self, old: str, new: str) -> None:
        """Refile everything kept under response ``old`` as ``new``."""
        raise NotImplementedError

    def attach(self: _M) -> _M:
        """Register the forward hooks (idempotent)."""
        if not self._handles:
            model = self._model
            self._handles.append(model.register_forward_pre_hook(self._begin_pass))
            # always_call: a forward pass that raises still ends (the next one starts afresh).
            self._handles.append(model.register_forward_hook(self._end_pass, always_call=True))
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def detach(self) -> None:
        """Remove every hook this monitor registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def __enter__(self: _M) -> _M:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _begin_pass(self, *_: Any) -> None:
        if self._depth == 0:
            self._calls.clear()
        self._depth += 1

    def _end_pass(self, *_: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def _make_hook(self, name: str):  # noqa: ANN202
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            call = 0
            if self._depth:
                call = self._calls.get(name, 0)
                self._calls[name] = call + 1
            if call and name not in self._repeated:
                self._repeated.add(name)
                self._rename(name, f"{name}#0")
            response = f"{name}#{call}" if name in self._repeated else name
            self._fold(response, self._single_tensor(response, output))

        return hook

    def _single_tensor(self, name: str, output: Any) -> Any:
        if not isinstance(output, self._torch.Tensor):
            raise IntroscopeError(
                f"{self._owner}: module {name!r} returned a {type(output).__name__}, not a "
                f"single tensor; watch a submodule that returns one tensor (for several "
                f"outputs, run the model through introscope.torch, which names each tensor "
                f"'{name}[0]', '{name}[1]', ...)"
            )
        if output.dim() < 1:
            raise IntroscopeError(
                f"{self._owner}: module {name!r} returned a 0-d tensor; its outputs need a "
                f"batch dimension"
            )
        return output.detach()
