"""IUA on a live PyTorch model: forward hooks fold each batch into counters on the model's device."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

from .._torch_hooks import HookedMonitor, rename_key
from ._iua import IUA, NonFinite
from ._state import FieldState

__all__ = ["IUAMonitor"]

_log = logging.getLogger("introscope.introspectors.iua")

_DEFAULT_TYPES = ("ReLU", "ReLU6")


class _DeviceState:
    """Counters of one module's output, kept on the output's device."""

    def __init__(self, torch: Any, unit_shape: tuple[int, ...], channel_axis: int | None, device):
        self.unit_shape = unit_shape
        self.channel_axis = channel_axis
        size = math.prod(unit_shape)
        self.counts = torch.zeros(size, dtype=torch.int64, device=device)
        self.per_sample = torch.empty(256, dtype=torch.int64, device=device)
        self.n = 0
        self.split: tuple[int, int, int] | None = None
        if channel_axis is not None:
            self.split = (
                math.prod(unit_shape[:channel_axis]),
                unit_shape[channel_axis],
                math.prod(unit_shape[channel_axis + 1 :]),
            )
            self.ch_counts = torch.zeros(self.split[1], dtype=torch.int64, device=device)
            self.ch_per_sample = torch.empty(256, dtype=torch.int64, device=device)
        # A device scalar, so CUDA never synchronises per batch.
        self.nonfinite = torch.zeros((), dtype=torch.int64, device=device)

    @staticmethod
    def _append(torch: Any, buf: Any, n: int, values: Any) -> Any:
        need = n + values.shape[0]
        if need > buf.shape[0]:
            grown = torch.empty(max(need, 2 * buf.shape[0]), dtype=buf.dtype, device=buf.device)
            grown[:n] = buf[:n]
            buf = grown
        buf[n:need] = values
        return buf


class IUAMonitor(HookedMonitor):
    """Forward hooks that run IUA on chosen modules of a ``torch.nn.Module``; a context manager.

    ``with IUA.monitor(model, ["layer1.relu"]) as m: ...`` attaches on entry and detaches on
    exit; ``m.result`` is an :class:`IUA` of every output seen (also after exit) and ``m.reset()``
    starts afresh, e.g. once per epoch. Responses never leave the device; only the counters are
    copied to the host when ``result`` is read. A module called several times in one forward pass
    of ``model`` (a shared ``ReLU``) gives one response per call, ``relu#0``, ``relu#1``, as
    :mod:`introscope.torch` names them; called outside ``model``'s forward, every call counts as
    the first. A module must return a single tensor. Non-finite values: on CPU they raise (or
    warn) in the forward pass; on other devices they are counted on the device and ``result``
    raises (or warns).
    """

    def __init__(
        self,
        model: Any,
        layers: str | Iterable[Any] | None = None,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: int | None = 1,
        nonfinite: NonFinite = "raise",
    ) -> None:
        super().__init__(model, layers, owner="IUA.monitor", default_types=_DEFAULT_TYPES)
        # Validates the tolerances and the policy once, with IUA's messages.
        self._template = IUA(rtol=rtol, atol=atol, nonfinite=nonfinite)
        if channel_axis is not None and (
            isinstance(channel_axis, bool) or not isinstance(channel_axis, int)
        ):
            raise IntroscopeError(f"channel_axis must be an int or None, got {channel_axis!r}")
        self._channel_axis = channel_axis
        self._states: dict[str, _DeviceState] = {}
        self._host = self._new_host()
        self._force_device_path = False  # tests run the accelerator path on CPU tensors
        self._warned: set[str] = set()  # device-side responses already warned about

    def _new_host(self) -> IUA:
        t = self._template
        return IUA(
            rtol=t.rtol, atol=t.atol, channel_axis=self._channel_axis, nonfinite=t.nonfinite_policy
        )

    def reset(self) -> None:
        """Forget everything seen so far (hooks stay attached)."""
        self._states.clear()
        self._host = self._new_host()
        self._warned.clear()

    def _rename(self, old: str, new: str) -> None:
        rename_key(self._states, old, new)
        host = self._host
        rename_key(host._fields, old, new)
        if new in host._fields:
            host._fields[new].name = new
            host._cache.clear()
        if old in self._warned:
            self._warned.discard(old)
            self._warned.add(new)

    def _fold(self, name: str, x: Any) -> None:
        torch = self._torch
        if x.device.type == "cpu" and not self._force_device_path:
            # Already in host memory: a zero-copy numpy view through IUA's own kernel, which is
            # faster than torch's bool reductions and gives identical numbers by construction.
            try:
                arr = x.numpy()
            except TypeError:  # bfloat16 and other dtypes numpy lacks
                arr = x.to(torch.float32).numpy()
            self._host.update(name, arr, _where="module output")
            return
        with torch.no_grad():
            self._fold_on_device(name, x)

    def _fold_on_device(self, name: str, x: Any) -> None:
        torch = self._torch
        batch = x.shape[0]
        unit_shape = tuple(int(d) for d in x.shape[1:])
        st = self._states.get(name)
        if st is None:
            st = _DeviceState(torch, unit_shape, self._unit_channel_axis(x), x.device)
            self._states[name] = st
        elif st.unit_shape != unit_shape:
            raise IntroscopeError(
                f"IUA.monitor: module {name!r} output has units of shape {unit_shape}, "
                f"earlier outputs had {st.unit_shape}"
            )
        flat = x.reshape(batch, -1)
        if not (flat.is_floating_point() or flat.is_complex()):
            flat = flat.to(torch.float64)
        a = flat.abs()
        # Counted on the device, never synchronised per batch; checked when the result is read.
        st.nonfinite += (~torch.isfinite(a)).sum()
        mask = a <= self._template.atol
        st.counts += mask.sum(0)
        st.per_sample = st._append(torch, st.per_sample, st.n, mask.sum(1))
        if st.split is not None:
            pre, nch, post = st.split
            dead = mask.view(batch, pre, nch, post).all(dim=3).all(dim=1)
            st.ch_counts += dead.sum(0)
            st.ch_per_sample = st._append(torch, st.ch_per_sample, st.n, dead.sum(1))
        st.n += batch

    def _unit_channel_axis(self, x: Any) -> int | None:
        if self._channel_axis is None or x.dim() < 3:
            return None
        ndim = x.dim()
        if not -ndim <= self._channel_axis < ndim or self._channel_axis % ndim == 0:
            raise IntroscopeError(
                f"IUA.monitor: channel_axis {self._channel_axis} is not a non-batch axis of an "
                f"output of shape {tuple(x.shape)}"
            )
        return self._channel_axis % ndim - 1

    # ------------------------------------------------------------------ result
    @property
    def result(self) -> IUA:
        """An :class:`IUA` of every output seen since creation or the last :meth:`reset`."""
        t = self._template
        iua = IUA(rtol=t.rtol, atol=t.atol, nonfinite=t.nonfinite_policy)
        bad = {}
        for name, st in self._states.items():
            fs = FieldState(name, st.unit_shape, "f", st.channel_axis)
            fs.units.counts = st.counts.cpu().numpy().astype(np.int64)
            fs.units.per_sample.extend(st.per_sample[: st.n].cpu().numpy())
            if fs.channels is not None:
                fs.channels.counts = st.ch_counts.cpu().numpy().astype(np.int64)
                fs.channels.per_sample.extend(st.ch_per_sample[: st.n].cpu().numpy())
            fs.nonfinite = int(st.nonfinite)
            if fs.nonfinite and name not in self._warned:
                bad[name] = fs.nonfinite
            iua._fields[name] = fs
        if bad:
            detail = ", ".join(f"{n!r}: {c}" for n, c in bad.items())
            if t.nonfinite_policy == "raise":
                raise IntroscopeError(
                    f"IUA.monitor: NaN or Inf values in module outputs: {detail}; "
                    f'pass nonfinite="warn" to count them as active and report how many'
                )
            self._warned.update(bad)
            warnings.warn(
                f"IUA.monitor: NaN or Inf values counted as active: {detail}",
                RuntimeWarning,
                stacklevel=2,
            )
        merged = self._host.merge(iua)
        _log.debug("IUA.monitor result: %r", merged)
        return merged
