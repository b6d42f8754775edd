"""The saved form of an accumulator: flat numpy arrays and one JSON header, read back exactly.

``export_state`` writes what ``Accumulator.state_dict`` and ``save`` hold: each field's state
arrays under ``"i.<key>"`` (the i-th field), and a header with the owner, the layout version
(``FORMAT``), the settings, the field names, the counts and each state's JSON scalars.
``import_state`` checks the header and rebuilds the accumulator through its class's
``from_config`` and ``state_type.from_state_dict``; a file that does not fit says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from ._state_contract import State, StateError, json_scalar

if TYPE_CHECKING:
    from typing import Self

__all__ = ["FORMAT", "Saved", "export_state", "import_state"]

#: Version of the layout written by ``Accumulator.state_dict``.
FORMAT = 1


class Saved(Protocol):
    """What saving and loading read and write of an ``Accumulator`` (``_accumulator``)."""

    owner: ClassVar[str]
    field_kind: ClassVar[str]
    state_type: ClassVar[type[State]]
    _states: dict[str, State]
    _field_set: tuple[str, ...] | None
    _batches: int
    _nonfinite: dict[str, int]
    _warned: set[str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self: ...

    def config(self) -> dict[str, Any]: ...

    def sync(self) -> None: ...

    def _changed(self) -> None: ...


_S = TypeVar("_S", bound=Saved)


def export_state(acc: Saved) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays (under ``"i.<key>"`` for the i-th field's state) and the JSON header of
    ``acc`` (settings, field names, counts and each state's scalars)."""
    acc.sync()
    arrays: dict[str, np.ndarray] = {}
    scalars: list[dict[str, Any]] = []
    for i, state in enumerate(acc._states.values()):
        plain: dict[str, Any] = {}
        for key, value in state.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"{i}.{key}"] = value
            elif isinstance(value, np.generic):
                plain[key] = value.item()
            elif json_scalar(value):
                plain[key] = value
            else:
                raise IntroscopeError(
                    f"{acc.owner}: state_dict entry {key!r} is a {type(value).__name__}; "
                    f"states hold numpy arrays and JSON scalars only"
                )
        scalars.append(plain)
    header = {
        "type": acc.owner,
        "kind": "state",
        "format": FORMAT,
        "config": acc.config(),
        "fields": list(acc._states),
        "field_set": None if acc._field_set is None else list(acc._field_set),
        "batches": acc._batches,
        "nonfinite": acc._nonfinite,
        "states": scalars,
    }
    return arrays, header


def import_state(cls: type[_S], arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> _S:
    """An accumulator of class ``cls`` rebuilt from :func:`export_state`'s arrays and header."""
    if header.get("type") != cls.owner:
        raise IntroscopeValueError(
            f"{cls.owner}: the state is a {header.get('type')!r} state, not {cls.owner!r}"
        )
    if header.get("kind", "state") != "state":
        raise IntroscopeValueError(
            f"{cls.owner}: the file holds a {cls.owner} {header.get('kind')}, not a state; "
            f"load it with {cls.owner}.load"
        )
    if header.get("format") != FORMAT:
        raise IntroscopeValueError(
            f"{cls.owner}: state format {header.get('format')!r} is not supported "
            f"(this version reads format {FORMAT})"
        )
    try:
        acc = cls.from_config(header["config"])
        for i, (name, plain) in enumerate(zip(header["fields"], header["states"], strict=True)):
            prefix = f"{i}."
            parts = dict(plain)
            parts.update({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
            try:
                acc._states[name] = cls.state_type.from_state_dict(parts)
            except StateError as exc:
                raise type(exc)(f"{cls.owner}: the saved {cls.field_kind} {name!r} {exc}") from None
        acc._field_set = None if header["field_set"] is None else tuple(header["field_set"])
        acc._batches = int(header["batches"])
        acc._nonfinite = {str(k): int(v) for k, v in header["nonfinite"].items()}
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise IntroscopeValueError(
            f"{cls.owner}: the saved state is incomplete or inconsistent ({what}); save it "
            f"again from the accumulator"
        ) from exc
    acc._warned = set(acc._nonfinite)
    acc._changed()
    return acc
