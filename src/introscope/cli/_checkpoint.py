"""``--model weights.pt --constructor module:Class``: build the module and load its state dict.

The file is read with ``torch.load(weights_only=True)`` (pickled modules are refused: loading
them runs arbitrary code). Common checkpoint layouts work as they are: a dict holding the state
dict under one key (``{"model": sd, "epoch": 3}``, ``{"state_dict": sd}``,
``{"model_state_dict": sd}``), and keys with a uniform prefix that the module does not have
(``module.`` from DataParallel, ``model.`` from Lightning, ``_orig_mod.`` from torch.compile).
Every error is one line naming the file and what to do.
"""

from __future__ import annotations

import inspect
import logging
import pathlib
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeValueError, require

from ._console import one_line
from ._models import InputFileError

__all__ = ["build_module", "read_state_dict", "fit_state_dict", "load_state_dict_module"]

_LOG = logging.getLogger("introscope.cli")

#: Keys under which training scripts commonly save the state dict inside a checkpoint dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")
#: At most this many key names are shown in an error.
_SHOWN = 3


def build_module(ctor: Any, spec: str) -> Any:
    """``ctor()`` (the ``--constructor``), which must take no arguments and give a module."""
    torch = require("torch", "torch", "loading a PyTorch state dict")
    try:
        signature = inspect.signature(ctor)
    except (TypeError, ValueError):  # no signature to read (some builtins): just call it
        signature = None
    if signature is not None:
        try:
            signature.bind()
        except TypeError:
            raise IntroscopeValueError(
                f"--constructor {spec!r} must be callable without arguments, but it takes "
                f"{signature}; write a function that builds the module (def make(): return "
                f"Net(...)) and pass --constructor module:make"
            ) from None
    try:
        module = ctor()
    except Exception as exc:
        raise IntroscopeValueError(
            f"--constructor {spec!r} failed when called without arguments "
            f"({type(exc).__name__}: {one_line(str(exc), 200)})"
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise IntroscopeValueError(
            f"--constructor {spec!r} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def _is_state_dict(obj: Any, torch: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(
            isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
            for k, v in obj.items()
        )
    )


def _is_torchscript(path: pathlib.Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names)


def read_state_dict(path: pathlib.Path) -> dict[str, Any]:
    """The state dict in ``path`` (``.npz`` of arrays, or a ``torch.save`` file), unwrapped from
    a checkpoint dict that holds it under one key."""
    torch = require("torch", "torch", "loading a PyTorch state dict")
    where = f"--model {str(path)!r}"
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(data[k].copy()) for k in data.files}
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"{where} is not a readable .npz of parameter arrays: {exc}"
            ) from None
    if _is_torchscript(path):
        raise InputFileError(
            f"{where} is a TorchScript file, not a state dict: leave out --constructor"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputFileError(
            f"{where} holds pickled Python objects (such as a whole module saved with "
            f"torch.save(model)), which are not loaded because unpickling runs arbitrary code; "
            f"save the weights with torch.save(model.state_dict(), path) and pass that file"
        ) from None
    except Exception as exc:  # torch raises several types for files that are not its own
        raise InputFileError(
            f"{where} is not a readable PyTorch file ({type(exc).__name__}: "
            f"{one_line(str(exc), 160)}); save it with torch.save(model.state_dict(), path)"
        ) from None
    if _is_state_dict(obj, torch):
        return dict(obj)
    if isinstance(obj, Mapping):
        found = [k for k in WRAPPER_KEYS if _is_state_dict(obj.get(k), torch)]
        if not found:  # any one entry that is a state dict, e.g. {"weights_ema": sd, ...}
            found = [k for k, v in obj.items() if isinstance(k, str) and _is_state_dict(v, torch)]
        if len(found) == 1:
            _LOG.info("%s: the state dict is the checkpoint's %r entry", where, found[0])
            return dict(obj[found[0]])
        keys = [str(k) for k in obj][:8]
        if found:
            raise InputFileError(
                f"{where} holds several state dicts {found}; save the one to analyse on its "
                f"own: torch.save(checkpoint[{found[0]!r}], 'weights.pt')"
            )
        raise InputFileError(
            f"{where} holds a dict with keys {keys}{' ...' if len(obj) > 8 else ''} but no state "
            f"dict (parameter names to tensors) under any of them; save the weights with "
            f"torch.save(model.state_dict(), path)"
        )
    raise InputFileError(
        f"{where} holds a {type(obj).__name__}, not a state dict (parameter names to tensors); "
        f"save the weights with torch.save(model.state_dict(), path)"
    )


def _strip_prefix(state: dict[str, Any], expected: set[str]) -> tuple[dict[str, Any], str]:
    """``state`` without a prefix shared by all its keys when that makes them ``expected``."""
    prefix = ""
    for _ in range(3):  # e.g. "model.module." from Lightning around DataParallel
        if set(state) == expected:
            break
        heads = {k.split(".", 1)[0] for k in state}
        if len(heads) != 1 or not all("." in k for k in state):
            break
        head = f"{heads.pop()}."
        state = {k[len(head) :]: v for k, v in state.items()}
        prefix += head
    return state, prefix


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return f"{shown}, ..." if len(keys) > _SHOWN else shown


def fit_state_dict(module: Any, state: dict[str, Any], path: pathlib.Path) -> None:
    """Load ``state`` into ``module`` (strictly), or one line saying what does not fit."""
    where = f"--model {str(path)!r}"
    name = type(module).__name__
    own = module.state_dict()
    expected = set(own)
    stripped, prefix = _strip_prefix(state, expected)
    if prefix and set(stripped) == expected:
        _LOG.warning(
            "%s: every key of the state dict starts with %r (%s), which %s does not have; "
            "loaded with that prefix removed",
            where,
            prefix,
            "DataParallel" if prefix == "module." else "a wrapper module",
            name,
        )
        state = stripped
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    shapes = [
        f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in {name}"
        for k, v in state.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of {name}'s {len(expected)} keys missing ({_names(missing)})"
        )
    if unexpected:
        s = "s" if len(unexpected) != 1 else ""
        problems.append(f"{len(unexpected)} unexpected key{s} ({_names(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape ({'; '.join(shapes[:2])})")
    if not problems:
        try:
            module.load_state_dict(state, strict=True)
            return
        except (RuntimeError, ValueError, TypeError) as exc:
            problems.append(one_line(str(exc), 240))
    raise InputFileError(
        f"{where}: the state dict does not fit {name}: {'; '.join(problems)}; check that "
        f"--constructor builds the model the weights were saved from"
    )


def load_state_dict_module(path: pathlib.Path, ctor: Any, spec: str) -> Any:
    """The module ``ctor()`` with the weights of ``path`` loaded."""
    state = read_state_dict(path)  # the file first: a pickled module is found before ctor()
    module = build_module(ctor, spec)
    fit_state_dict(module, state, path)
    return module
