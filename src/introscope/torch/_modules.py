"""Which modules of a model a monitor watches: names and modules resolved, TorchScript refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from introscope._validation import unknown_name_error
from introscope.exceptions import IntroscopeError, IntroscopeKeyError, require

from ._capture import naming_root

__all__ = ["resolve_modules"]


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
    every message. The model itself is ``"output"`` (``"output_"`` when a submodule is called
    ``output``), as the adapter names what ``forward`` returns; ``""`` is accepted for it too.
    """
    torch = require("torch", "torch", owner)
    named = dict(naming_root(model).named_modules())
    _check_not_scripted(torch, named, {}, owner)  # a scripted root, before "no such module"
    root = root_name(named)
    if layers is None:
        chosen = {n or root: m for n, m in named.items() if type(m).__name__ in default_types}
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
                if item in ("", root):
                    chosen[root] = named[""]
                elif item in named:
                    chosen[item] = named[item]
                else:
                    unknown.append(item)
            elif not isinstance(item, torch.nn.Module):
                raise IntroscopeError(
                    f"{owner}: layers must hold module names (str) or torch modules, got "
                    f"{type(item).__name__}"
                )
            elif id(item) in by_id:
                chosen[by_id[id(item)] or root] = item
            else:
                raise IntroscopeError(
                    f"{owner}: {type(item).__name__} module is not part of the model"
                )
        if unknown:
            err = unknown_name_error("module", unknown, [n for n in named if n] + [root])
            raise IntroscopeKeyError(f"{owner}: {err}")
    _check_not_scripted(torch, named, chosen, owner)
    return chosen


def root_name(named: dict[str, Any]) -> str:
    """The response name of the model's own output: ``"output"``, with ``_`` added while a
    submodule has that name (the adapter's rule)."""
    name = "output"
    while name in named:
        name += "_"
    return name


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
