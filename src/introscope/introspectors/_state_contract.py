"""The per-response ``State`` of the accumulator contract (see ``_accumulator``), its errors.

A state (e.g. a buffer of samples, streaming PCA sums) looks like this::

    class MySums(State):
        capabilities = Capabilities(mergeable=True, exact=False, passes=1, grows_with=("units",))

        def __init__(self, units: int) -> None:
            self.n, self.total = 0, np.zeros(units)

        def update(self, array, *, allow_nonfinite=False):
            x = np.asarray(array)
            if x.ndim != 2 or x.shape[1] != self.total.shape[0]:
                # No field or batch in the message: the accumulator adds them.
                raise StateError(f"has shape {x.shape}; expected (samples, {self.total.size})")
            self.total += x.sum(axis=0, dtype=np.float64)
            self.n += len(x)
            return 0  # non-finite values seen and kept (only when checks_finite is True)

        def merged(self, other):
            out = MySums(self.total.size)
            out.n, out.total = self.n + other.n, self.total + other.total
            return out

        def result(self):
            return self.total / self.n

        def state_dict(self):
            return {"n": self.n, "total": self.total}  # arrays and JSON scalars only

        @classmethod
        def from_state_dict(cls, state):
            out = cls(len(state["total"]))
            out.n, out.total = int(state["n"]), np.array(state["total"], dtype=np.float64)
            return out

        @property
        def nbytes(self):
            return self.total.nbytes

Rules a state follows:

- ``update`` leaves the state unchanged when it raises (a rejected batch counts nothing).
- ``update`` raises ``StateError`` for bad input, with a message that reads after
  ``"Owner: response 'name' (batch 3) "`` (e.g. ``"has shape (2, 3); expected ..."``).
- NaN/Inf: with ``checks_finite = False`` (the default) the accumulator checks numpy batches
  before ``update`` and applies the policy itself. A state that finds non-finite values more
  cheaply on its own sets ``checks_finite = True``; its ``update(array, allow_nonfinite=False)``
  then raises ``NonFiniteValues`` (before changing anything) or, when ``allow_nonfinite``
  is True, folds them in as its algorithm defines and returns how many it saw. Counts found on
  an accelerator without synchronising are returned later by ``State.sync``.
- ``merged`` never changes either input; ``merged`` of states of disjoint data equals the state
  of their union (exactly for counts, up to float64 rounding for sums: ``Capabilities.exact``).
- A state whose size is O(samples x units) (a fit buffer) says so with
  ``grows_with=("samples", "units")`` and in its docstring, and streams into one preallocated or
  memory-mapped array, never a list of batches.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

import numpy as np

from introscope.exceptions import StateError

__all__ = ["Capabilities", "NonFiniteValues", "State", "StateError", "json_scalar"]

_S = TypeVar("_S", bound="State")


@dataclass(frozen=True)
class Capabilities:
    """What a state is: how it merges, how many passes it needs, what its size grows with."""

    mergeable: bool = True
    """``merged`` combines states of disjoint data (for Ray workers, shards, epochs)."""
    exact: bool = True
    """A merge equals one pass exactly (integer counts); False: up to float64 rounding."""
    passes: int = 1
    """Passes over the data the introspector needs (only one-pass ones use ``accumulate``)."""
    grows_with: tuple[str, ...] = ("units",)
    """What the state's size is proportional to: ``"units"`` and/or ``"samples"``."""


class NonFiniteValues(StateError):
    """A state met NaN or Inf values while they were not allowed (raised before any change)."""

    def __init__(self, count: int | None = None, size: int | None = None) -> None:
        self.count = count
        self.size = size
        if count is None:
            what = "contains NaN or Inf"
        else:
            what = f"has {count} NaN or Inf values" + (f" out of {size}" if size else "")
        super().__init__(what)


class State(abc.ABC):
    """The mergeable state of one response; see the module docstring for the rules."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    checks_finite: ClassVar[bool] = False

    @abc.abstractmethod
    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        """Fold in one batch (shape (samples, ...)); return the non-finite values kept."""

    @abc.abstractmethod
    def merged(self: _S, other: _S) -> _S:
        """A new state: this one's data followed by ``other``'s (inputs unchanged)."""

    @abc.abstractmethod
    def result(self, *args: Any, **options: Any) -> Any:
        """The answer for this response (each state chooses its own options)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """numpy arrays and JSON-able scalars (int, float, str, bool, None, lists of them)."""

    @classmethod
    @abc.abstractmethod
    def from_state_dict(cls: type[_S], state: Mapping[str, Any]) -> _S:
        """Rebuild a state written by ``state_dict``."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes held."""

    def copy(self: _S) -> _S:
        """An independent copy (by default through ``state_dict``)."""
        return type(self).from_state_dict(self.state_dict())

    def sync(self) -> int:
        """Bring device-side counters to the host; return non-finite values found since last."""
        return 0


def json_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(json_scalar(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_scalar(v) for k, v in value.items())
    return False


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def host_array(array: Any) -> np.ndarray:
    """``array`` as a numpy array; a torch tensor is detached and brought to the CPU (dtypes
    numpy lacks, such as bfloat16, as float32)."""
    if is_torch_tensor(array):
        x = array.detach().cpu()
        try:
            return cast(np.ndarray, x.numpy())
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            import torch

            return cast(np.ndarray, x.to(torch.float32).numpy())
    return np.asarray(array)
