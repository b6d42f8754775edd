"""PFA on a live PyTorch model: forward hooks fold pooled outputs into covariance sums on device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from introscope.exceptions import IntroscopeError, require

from ._covariance import PFACovarianceState

__all__ = ["PFAMonitor"]

_POOLS = ("max", "mean", None)


class PFAMonitor:
    """Forward hooks feeding a :class:`PFACovarianceState`; a context manager.

    Outputs of shape (N, C, ...) are pooled over every axis after the channel axis 1 (``pool``
    "max", as DNIKit users do with ``Pooler(method=MAX)``, or "mean"); (N, C) outputs are used
    as they are. Sums stay on the model's device in float64; ``result()`` finishes them.
    """

    def __init__(
        self, model: Any, layers: str | Iterable[str], *, pool: str | None = "max"
    ) -> None:
        torch = require("torch", "torch", "PFA.monitor")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"PFA.monitor needs a torch.nn.Module, got {type(model).__name__}")
        if pool not in _POOLS:
            raise IntroscopeError(f"pool must be one of {_POOLS}, got {pool!r}")
        names = [layers] if isinstance(layers, str) else list(layers)
        named = dict(model.named_modules())
        unknown = [n for n in names if n not in named]
        if unknown or not names:
            raise IntroscopeError(
                f"PFA.monitor: unknown or no module names {unknown}; known: {[n for n in named if n]}"
            )
        self._modules = {n: named[n] for n in names}
        self._pool = pool
        self.state = PFACovarianceState()
        self._handles: list[Any] = []

    def attach(self) -> PFAMonitor:
        if not self._handles:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> PFAMonitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def reset(self) -> None:
        """Forget every sample seen so far (hooks stay attached)."""
        self.state = PFACovarianceState()

    def _hook(self, name: str):  # noqa: ANN202
        def hook(module: Any, inputs: Any, output: Any) -> None:
            x = output.detach()
            if x.dim() > 2:
                if self._pool is None:
                    raise IntroscopeError(
                        f"PFA.monitor: module {name!r} output has shape {tuple(x.shape)}; "
                        f"pass pool='max' or 'mean' to reduce it to (samples, channels)"
                    )
                flat = x.flatten(2)
                x = flat.amax(dim=2) if self._pool == "max" else flat.mean(dim=2)
            self.state.update(name, x, where=f"module {name!r}")

        return hook

    def result(self, *, epsilon_inactive: float = 1e-8) -> Any:
        """A :class:`PFA` of everything seen so far."""
        from ._pfa import PFA

        return PFA.from_state(self.state, epsilon_inactive=epsilon_inactive)
