"""The accumulator contract behind every one-pass introspector: states, accumulators, one driver.

Three pieces (the pattern of torchmetrics' ``Metric`` and scikit-learn's ``partial_fit``):

- a ``State`` holds what one response (field) contributes: ``update(array)`` folds in one
  batch, ``merged(other)`` combines two states of disjoint data (pure, associative),
  ``result(...)`` computes the answer, ``state_dict()`` / ``from_state_dict()`` hold numpy
  arrays and JSON-able scalars (never pickle), ``nbytes`` is its size; the class declares its
  ``Capabilities``;
- an ``Accumulator`` owns one state per field and does, once for everybody: the same field
  set from batch to batch, errors that start with the introspector and name field and batch, the
  NaN/Inf policy, ``reset()``, ``merge``, ``state_dict`` / ``save`` / ``load`` and
  ``finalize() -> result``;
- ``accumulate`` is the one driver: ``accumulate(producer, *accumulators, batch_size=...)``
  pulls the producer once and feeds every batch to every accumulator. ``introspect`` methods are
  thin calls of it; ``multi_introspect`` uses it when all participants are accumulators; the
  PyTorch monitor (``introscope.torch._monitor``) and Ray workers feed the same accumulators.

Writing a state is described in ``_state_contract``; its accumulator is a few lines::

    class MyAccumulator(Accumulator):
        owner = "MyIntrospector"      # starts every error message
        state_type = MySums

        def new_state(self, field, array):   # called with the field's first batch
            return MySums(np.shape(array)[-1])  # update() checks the shape

        def config(self):                    # JSON-able __init__ keywords (saved, compared)
            return {}

        def finalize(self):
            return {name: s.result() for name, s in self.states.items()}
"""

from __future__ import annotations

import abc
import json
import os
import types
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from introscope._progress import producer_size, progress
from introscope._validation import check_batch_size, check_choice, count_nonfinite, user_stacklevel
from introscope.base._producer import Producer, checked_batches
from introscope.exceptions import IntroscopeValueError

from ._npz import HEADER_KEY, load_npz, save_npz
from ._saved_state import FORMAT, export_state, import_state  # noqa: F401 - FORMAT re-exported
from ._state_contract import Capabilities, NonFiniteValues, State, StateError, host_array

__all__ = [
    "Accumulator",
    "Capabilities",
    "NonFiniteValues",
    "State",
    "StateError",
    "accumulate",
    "is_accumulator",
    "repeat_renames",
]

_A = TypeVar("_A", bound="Accumulator")
_V = TypeVar("_V")


class Accumulator(abc.ABC):
    """Per-field states of one introspector, with the checks every introspector shares.

    Subclasses set ``owner`` and ``state_type`` and implement ``new_state``,
    ``config`` and ``finalize``. ``nonfinite``: ``"raise"`` (default) or one of the
    other ``nonfinite_policies`` the subclass allows (``"warn"``: keep the values as the
    state defines, warn once per field, and report counts in ``nonfinite_counts``).
    """

    owner: ClassVar[str] = "accumulator"
    """Starts every error message (``"IUA"``, ``"PFA"``)."""
    field_kind: ClassVar[str] = "response"
    state_type: ClassVar[type[State]]
    nonfinite_policies: ClassVar[tuple[str, ...]] = ("raise",)
    nonfinite_note: ClassVar[str] = "kept"
    """How a kept non-finite value is treated, for warnings (``"counted as active"``)."""
    nonfinite_report: ClassVar[str] = ""
    """Where the counts are reported (``"IUA.Result.nonfinite"``), for warnings."""

    def __init__(self, *, nonfinite: str = "raise") -> None:
        check_choice(nonfinite, "nonfinite", self.nonfinite_policies, owner=self.owner)
        self.nonfinite_policy = nonfinite
        self._states: dict[str, State] = {}
        self._field_set: tuple[str, ...] | None = None
        self._batches = 0
        self._nonfinite: dict[str, int] = {}
        self._defer_warnings = False
        self._warned: set[str] = set()
        # (batch, fields already folded in, field that failed) of a batch rejected part-way.
        self._partial: tuple[Any, tuple[str, ...], str] | None = None

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def new_state(self, field: str, array: Any) -> State:
        """An empty state for ``field``, given its first batch (read its shape, not its data)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON-able keyword arguments of ``__init__`` (saved with the state, compared by
        ``merge``)."""

    @abc.abstractmethod
    def finalize(self, *args: Any, **options: Any) -> Any:
        """The result object ``introspect`` returns.

        (``*args, **options``: each subclass chooses its own options, e.g. ``finalize(self)``.)
        """

    def _changed(self) -> None:  # noqa: B027 - an optional hook
        """Called after every change of the states (subclasses drop cached results here)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls: type[_A], config: Mapping[str, Any]) -> _A:
        """A new, empty accumulator with these settings."""
        return cls(**config)

    def spawn(self: _A) -> _A:
        """A new, empty accumulator with this one's settings (for a worker or a shard)."""
        return self.from_config(self.config())

    # ------------------------------------------------------------------ inspection
    @property
    def states(self) -> Mapping[str, State]:
        """Read-only view of the per-field states, in first-seen order."""
        self._check_whole()
        return types.MappingProxyType(self._states)

    def _check_whole(self) -> None:
        """Refuse to go on from a batch that was rejected after some of its fields counted."""
        if self._partial is None:
            return
        index, done, failed = self._partial
        raise IntroscopeValueError(
            f"{self.owner}: batch {index} was rejected at {self.field_kind} {failed!r} after "
            f"{', '.join(map(repr, done))} had taken it in, so the {self.field_kind}s now "
            f"cover different samples; reset() and start again, or go on from a state saved "
            f"before (load)"
        )

    @property
    def fields(self) -> list[str]:
        """Names of the fields seen so far, in first-seen order."""
        return list(self._states)

    @property
    def batches_seen(self) -> int:
        """Batches folded in through ``update_batch`` (and merged in)."""
        return self._batches

    @property
    def nonfinite_counts(self) -> Mapping[str, int]:
        """NaN/Inf values kept per field (``nonfinite="warn"``)."""
        self.sync()
        return dict(self._nonfinite)

    @property
    def nbytes(self) -> int:
        """Bytes held by every state."""
        return sum(s.nbytes for s in self._states.values())

    # ------------------------------------------------------------------ feeding
    def _where(self, field: str, where: str | int) -> str:
        # An int is a batch index (formatted only when a message needs it).
        where = f"batch {where}" if isinstance(where, int) else where
        return f"{self.owner}: {self.field_kind} {field!r} ({where})"

    def _kept(self) -> str:
        see = f" (see {self.nonfinite_report})" if self.nonfinite_report else ""
        return f"{self.nonfinite_note}{see}"

    def _keep_hint(self) -> str:
        if len(self.nonfinite_policies) < 2:
            return "; fix the model or data"
        return (
            f'; fix the model or data, or pass nonfinite="{self.nonfinite_policies[1]}" to keep '
            f"them ({self.nonfinite_note}) and report how many"
        )

    def update(self, field: str, array: Any, *, where: str | int = "update()") -> None:
        """Fold one batch of ``field`` (shape (samples, ...)) into its state.

        ``where`` (e.g. ``"batch 3"``, or the batch index as an int) names the batch in error
        messages.
        """
        state = self._states.get(field)
        fresh = state is None
        allow = self.nonfinite_policy != "raise"
        try:
            if state is None:
                state = self.new_state(field, array)
            if not state.checks_finite and isinstance(array, np.ndarray):
                bad = count_nonfinite(array)
                if bad and not allow:
                    raise NonFiniteValues(bad, array.size)
                kept = state.update(array, allow_nonfinite=allow) + bad
            else:
                kept = state.update(array, allow_nonfinite=allow)
        except NonFiniteValues as exc:
            raise IntroscopeValueError(
                f"{self._where(field, where)} {exc}{self._keep_hint()}"
            ) from None
        except StateError as exc:
            raise type(exc)(f"{self._where(field, where)} {exc}") from None
        if fresh:
            self._states[field] = state
        if kept:
            self._note_nonfinite(field, kept, where, _element_count(array))
        self._changed()

    def _note_nonfinite(self, field: str, count: int, where: str | int, size: int | None) -> None:
        first = field not in self._nonfinite
        self._nonfinite[field] = self._nonfinite.get(field, 0) + count
        if first and not self._defer_warnings and field not in self._warned:
            self._warned.add(field)
            out_of = f" out of {size}" if size else ""
            warnings.warn(
                f"{self._where(field, where)} has {count} NaN or Inf values{out_of}; "
                f"{self._kept()}",
                RuntimeWarning,
                # At the user's line: a pipeline's introspect call, or the forward pass of a
                # monitored model (through torch's hook machinery).
                stacklevel=user_stacklevel("torch"),
            )

    def update_batch(self, batch: Any, index: int | None = None) -> None:
        """Fold in every field of a ``introscope.base.Batch`` (the same fields each time)."""
        index = self._batches if index is None else index
        fields = batch.fields
        names = tuple(fields)
        if names != self._field_set:  # the same fields in the same order: nothing to check
            if not names:
                raise IntroscopeValueError(
                    f"{self.owner}: batch {index} has no fields; {self.owner} needs model "
                    f"responses (pipeline the producer through a model first)"
                )
            if self._field_set is None:
                self._field_set = names
            elif set(names) != set(self._field_set):
                raise IntroscopeValueError(
                    f"{self.owner}: batch {index} has fields {sorted(names)}, earlier batches "
                    f"had {sorted(self._field_set)}; every batch must carry the same responses"
                )
        self._check_whole()
        done: list[str] = []
        for name, array in fields.items():
            try:
                self.update(name, array, where=index)
            except Exception:
                if done:  # earlier fields took the batch in: the state is no longer whole
                    self._partial = (index, tuple(done), name)
                raise
            done.append(name)
        self._batches += 1

    def sync(self) -> None:
        """Collect non-finite counts found on a device and apply the policy to them."""
        self._check_whole()
        found = {}
        for name, state in self._states.items():
            count = state.sync()
            if count:
                found[name] = count
        if not found:
            return
        detail = ", ".join(f"{n!r}: {c}" for n, c in found.items())
        if self.nonfinite_policy == "raise":
            raise IntroscopeValueError(
                f"{self.owner}: NaN or Inf values in {self.field_kind}s {detail}{self._keep_hint()}"
            )
        for name, count in found.items():
            self._nonfinite[name] = self._nonfinite.get(name, 0) + count
        new = [n for n in found if n not in self._warned]
        self._warned.update(found)
        if new:
            warnings.warn(
                f"{self.owner}: NaN or Inf values {self._kept()}: {detail}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _warn_summary(self, stacklevel: int = 3) -> None:
        """One warning for every field with non-finite values not warned about yet."""
        new = {n: c for n, c in self._nonfinite.items() if n not in self._warned}
        if new:
            self._warned.update(new)
            detail = ", ".join(f"{n!r}: {c}" for n, c in new.items())
            warnings.warn(
                f"{self.owner}: NaN or Inf values {self._kept()}: {detail}",
                RuntimeWarning,
                stacklevel=stacklevel,
            )

    # ------------------------------------------------------------------ combining
    def reset(self) -> None:
        """Forget every batch seen (settings stay)."""
        self._states.clear()
        self._field_set = None
        self._batches = 0
        self._nonfinite.clear()
        self._warned.clear()
        self._partial = None
        self._changed()

    def rename_field(self, old: str, new: str) -> None:
        """File the state of ``old`` under ``new``, keeping the order (no-op if ``old`` is absent)."""
        if old not in self._states:
            return
        if new in self._states:
            raise IntroscopeValueError(f"{self.owner}: cannot rename {old!r}: {new!r} exists")

        def renamed(mapping: dict[str, _V]) -> dict[str, _V]:
            return {(new if k == old else k): v for k, v in mapping.items()}

        self._states = renamed(self._states)
        self._nonfinite = renamed(self._nonfinite)
        if old in self._warned:
            self._warned.discard(old)
            self._warned.add(new)
        if self._field_set is not None:
            self._field_set = tuple(new if n == old else n for n in self._field_set)
        self._changed()

    def _merge_key(self) -> dict[str, Any]:
        """Settings two accumulators must share to be merged (by default ``config``)."""
        return self.config()

    def merge(self: _A, other: _A) -> _A:
        """A new accumulator equal to this one's data followed by ``other``'s (inputs unchanged).

        Pure and associative; fields present in only one side are copied. A field ``name`` on
        one side is the first call of the ``name#0``, ``name#1``, ... of the other side (a
        module that a PyTorch monitor saw run once per pass there and several times here): it
        is merged into ``name#0``, as the monitor itself renames it (``repeat_renames``).
        """
        if type(other) is not type(self):
            raise TypeError(
                f"{self.owner}: can only merge with another {type(self).__name__}, "
                f"got {type(other).__name__}"
            )
        mine, theirs = self._merge_key(), other._merge_key()
        if mine != theirs:
            diff = {k: (mine.get(k), theirs.get(k)) for k in {*mine, *theirs}}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise IntroscopeValueError(
                f"{self.owner}: cannot merge analyses with different settings {diff}; "
                f"merge only analyses made with the same arguments"
            )
        self.sync()
        other.sync()
        out = self.spawn()
        mine_as, theirs_as = repeat_renames(self._states, other._states)
        my_states = _renamed(self._states, mine_as)
        their_states = _renamed(other._states, theirs_as)
        for name in dict.fromkeys([*my_states, *their_states]):
            a, b = my_states.get(name), their_states.get(name)
            try:
                if a is not None and b is not None:
                    out._states[name] = a.merged(b)
                else:
                    out._states[name] = (a if a is not None else b).copy()  # type: ignore[union-attr]
            except StateError as exc:
                raise type(exc)(
                    f"{self.owner}: cannot merge {self.field_kind} {name!r}: {exc}"
                ) from None
        my_bad = _renamed(self._nonfinite, mine_as)
        their_bad = _renamed(other._nonfinite, theirs_as)
        for name in dict.fromkeys([*my_bad, *their_bad]):
            out._nonfinite[name] = my_bad.get(name, 0) + their_bad.get(name, 0)
        out._warned = {mine_as.get(n, n) for n in self._warned} | {
            theirs_as.get(n, n) for n in other._warned
        }
        my_set = _renamed_names(self._field_set, mine_as)
        their_set = _renamed_names(other._field_set, theirs_as)
        if my_set is None or my_set == their_set:
            out._field_set = their_set
        elif their_set is None:
            out._field_set = my_set
        out._batches = self._batches + other._batches
        out._changed()
        return out

    merged = merge

    # ------------------------------------------------------------------ persistence
    def _export(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return export_state(self)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything as flat numpy arrays (``np.savez(path, **acc.state_dict())``, no pickle).

        ``"__introscope__"`` holds a JSON header (settings, field names, scalars); the arrays
        of the i-th field's state are under ``"i.<name>"``.

        Beside a PyTorch checkpoint, keep the state in its own file: ``acc.save(path)``, then
        ``type(acc).load(path)`` (``IUA.load``). Inside one, ``torch.load``'s default
        (``weights_only=True``, torch >= 2.6) refuses numpy arrays: store tensors and strings
        instead, which ``from_state_dict`` takes back::

            state = {k: v.tolist() if v.dtype.kind == "U" else torch.tensor(v)
                     for k, v in acc.state_dict().items()}
            torch.save({"model": model.state_dict(), "iua": state}, path)
            acc = IUA.from_state_dict(torch.load(path)["iua"])
        """
        arrays, header = self._export()
        return {HEADER_KEY: np.array(json.dumps(header, allow_nan=False)), **arrays}

    @classmethod
    def _import(cls: type[_A], arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> _A:
        return import_state(cls, arrays, header)

    @classmethod
    def from_state_dict(cls: type[_A], state: Mapping[str, Any]) -> _A:
        """Rebuild an accumulator from ``state_dict`` (or ``np.load`` of a saved one).

        The values may also be torch tensors (on any device) and the strings Python ``str``
        (or lists of them), as a ``state_dict`` kept in a torch checkpoint comes back from
        ``torch.load`` (see ``state_dict``).
        """
        if HEADER_KEY not in state:
            raise IntroscopeValueError(
                f"{cls.owner}: not an accumulator state_dict (no {HEADER_KEY!r} entry)"
            )
        header = json.loads(str(np.asarray(state[HEADER_KEY])))
        arrays = {k: host_array(v) for k, v in state.items() if k != HEADER_KEY}
        return cls._import(arrays, header)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state to ``path`` (one ``.npz``: arrays + JSON header; atomic, no pickle)."""
        arrays, header = self._export()
        save_npz(path, arrays, header)

    @classmethod
    def load(cls: type[_A], path: str | os.PathLike[str]) -> _A:
        """Read a state written by ``save``."""
        arrays, header = load_npz(path, expect=cls.owner)
        return cls._import(arrays, header)


def repeat_renames(
    mine: Iterable[str], theirs: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The fields of each side of a merge to file under ``name#0`` first: ``{name: name#0}``.

    A PyTorch monitor names a module's output by its plain path until it sees the module run
    twice in one pass, then renames what it has ``path#0`` and numbers later calls
    (``path#1``, ...). Two monitors (two ranks) of the same model may disagree: one saw ``act``
    only, the other ``act#0`` and ``act#1``. The plain ``name`` of one side is renamed when the
    other side has ``name#0`` and no ``name``, and this side has no ``name#0`` of its own, so
    the first calls merge; what merges with what then does not depend on the order of merges
    (a merged result keeps the numbered names).

    >>> repeat_renames(["fc", "act"], ["fc", "act#0", "act#1"])
    ({'act': 'act#0'}, {})
    """
    mine, theirs = set(mine), set(theirs)

    def plain(side: set[str], other: set[str]) -> dict[str, str]:
        return {
            n: f"{n}#0"
            for n in side
            if f"{n}#0" in other and n not in other and f"{n}#0" not in side
        }

    return plain(mine, theirs), plain(theirs, mine)


def _renamed(mapping: Mapping[str, _V], renames: Mapping[str, str]) -> dict[str, _V]:
    """``mapping`` with its keys renamed (order kept); a new dict, the values shared."""
    return {renames.get(k, k): v for k, v in mapping.items()}


def _renamed_names(
    names: tuple[str, ...] | None, renames: Mapping[str, str]
) -> tuple[str, ...] | None:
    return None if names is None else tuple(renames.get(n, n) for n in names)


def is_accumulator(obj: object) -> bool:
    """Whether ``obj`` is an ``Accumulator`` instance."""
    return isinstance(obj, Accumulator)


def accumulate(
    producer: Producer,
    *accumulators: Accumulator,
    batch_size: int,
    desc: str | None = None,
    finalize: bool = True,
) -> tuple[Any, ...]:
    """Pull ``producer(batch_size)`` once and feed every batch to every accumulator.

    Returns each accumulator's ``Accumulator.finalize`` result, in order (the
    accumulators themselves with ``finalize=False``). Non-finite values kept under
    ``nonfinite="warn"`` give one warning per accumulator at the end.
    """
    if not accumulators:
        raise IntroscopeValueError("accumulate needs at least one accumulator")
    for i, acc in enumerate(accumulators):
        if not isinstance(acc, Accumulator):
            raise IntroscopeValueError(
                f"accumulate: argument {i} is a {type(acc).__name__}, not an Accumulator"
            )
    check_batch_size(batch_size)
    owners = "+".join(dict.fromkeys(a.owner for a in accumulators))
    for acc in accumulators:
        acc._defer_warnings = True
    try:
        batches = checked_batches(producer, batch_size, what=f"{owners} producer")
        bar = progress(batches, desc or owners, total=producer_size(producer))
        for index, batch in enumerate(bar):
            for acc in accumulators:
                acc.update_batch(batch, index)
    finally:
        for acc in accumulators:
            acc._defer_warnings = False
    for acc in accumulators:
        acc._warn_summary(stacklevel=4)
    if not finalize:
        return accumulators
    return tuple(acc.finalize() for acc in accumulators)


def merge_all(accumulators: Iterable[_A]) -> _A:
    """Merge many accumulators in a balanced tree (fewer large intermediate copies)."""
    level = list(accumulators)
    if not level:
        raise IntroscopeValueError("merge_all needs at least one accumulator")
    while len(level) > 1:
        nxt = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


__all__ += ["merge_all"]


def _element_count(array: Any) -> int | None:
    """How many values ``array`` holds: ``size`` of a numpy array, ``numel()`` of a tensor
    (whose ``size`` is a method)."""
    numel = getattr(array, "numel", None)
    if callable(numel):
        return int(numel())
    size = getattr(array, "size", None)
    return int(size) if isinstance(size, (int, np.integer)) else None
