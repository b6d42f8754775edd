"""PFA on a live PyTorch model: forward hooks fold pooled outputs into covariance sums on device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from introscope.exceptions import IntroscopeError

from .._torch_hooks import HookedMonitor, rename_key
from ._covariance import PFACovarianceState

__all__ = ["PFAMonitor"]

_POOLS = ("max", "mean", None)


class PFAMonitor(HookedMonitor):
    """Forward hooks feeding a :class:`PFACovarianceState`; a context manager.

    Outputs of shape (N, C, ...) are pooled over every axis after the channel axis 1 (``pool``
    "max", as DNIKit users do with ``Pooler(method=MAX)``, or "mean"); (N, C) outputs are used
    as they are. Sums stay on the model's device in float64; ``result()`` finishes them. A
    module called several times in one forward pass of ``model`` gives one response per call,
    ``name#0``, ``name#1``, as :mod:`introscope.torch` names them; a module must return a single
    tensor.
    """

    def __init__(
        self, model: Any, layers: str | Iterable[Any], *, pool: str | None = "max"
    ) -> None:
        if pool not in _POOLS:
            raise IntroscopeError(f"pool must be one of {_POOLS}, got {pool!r}")
        super().__init__(model, layers, owner="PFA.monitor")
        self._pool = pool
        self.state = PFACovarianceState()

    def reset(self) -> None:
        """Forget every sample seen so far (hooks stay attached)."""
        self.state = PFACovarianceState()

    def _rename(self, old: str, new: str) -> None:
        rename_key(self.state._fields, old, new)

    def _fold(self, name: str, x: Any) -> None:
        if x.dim() > 2:
            if self._pool is None:
                raise IntroscopeError(
                    f"PFA.monitor: module {name!r} output has shape {tuple(x.shape)}; "
                    f"pass pool='max' or 'mean' to reduce it to (samples, channels)"
                )
            flat = x.flatten(2)
            x = flat.amax(dim=2) if self._pool == "max" else flat.mean(dim=2)
        self.state.update(name, x, where=f"module {name!r}")

    def result(self, *, epsilon_inactive: float = 1e-8) -> Any:
        """A :class:`PFA` of everything seen so far."""
        from ._pfa import PFA

        return PFA.from_state(self.state, epsilon_inactive=epsilon_inactive)
