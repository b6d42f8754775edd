"""IUA on a live PyTorch model: forward hooks fold each batch into counters on the model's device."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from introscope.base._model import unknown_name_error
from introscope.exceptions import IntroscopeError, require

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


class IUAMonitor:
    """Forward hooks that run IUA on chosen modules of a ``torch.nn.Module``; a context manager.

    ``with IUA.monitor(model, ["layer1.relu"]) as m: ...`` attaches on entry and detaches on
    exit; ``m.result`` is an :class:`IUA` of every output seen (also after exit) and ``m.reset()``
    starts afresh, e.g. once per epoch. Responses never leave the device; only the counters are
    copied to the host when ``result`` is read. A module called several times in one forward pass
    of ``model`` (a shared ``ReLU``) gives one response per call, ``relu#0``, ``relu#1``, as
    :mod:`introscope.torch` names them; called outside ``model``'s forward, every call counts as
    the first. Non-finite values: on CPU they raise (or warn) in the
    forward pass; on other devices they are counted on the device and ``result`` raises (or warns).
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
        self._torch = torch = require("torch", "torch", "IUA.monitor")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"IUA.monitor needs a torch.nn.Module, got {type(model).__name__}")
        # Validates the tolerances and the policy once, with IUA's messages.
        self._template = IUA(rtol=rtol, atol=atol, nonfinite=nonfinite)
        if channel_axis is not None and (
            isinstance(channel_axis, bool) or not isinstance(channel_axis, int)
        ):
            raise IntroscopeError(f"channel_axis must be an int or None, got {channel_axis!r}")
        self._channel_axis = channel_axis
        self._model = model
        self._modules = self._resolve(model, layers)
        # Calls of each watched module within the current forward pass of the model.
        self._calls: dict[str, int] = {}
        self._depth = 0
        self._multi: set[str] = set()  # modules seen called more than once in one pass
        self._states: dict[str, _DeviceState] = {}
        self._host = self._new_host()
        self._force_device_path = False  # tests run the accelerator path on CPU tensors
        self._handles: list[Any] = []
        self._warned: set[str] = set()  # device-side responses already warned about

    @staticmethod
    def _resolve(model: Any, layers: str | Iterable[Any] | None) -> dict[str, Any]:
        named = dict(model.named_modules())
        if layers is None:
            chosen = {n: m for n, m in named.items() if type(m).__name__ in _DEFAULT_TYPES}
            if not chosen:
                raise IntroscopeError(
                    "IUA.monitor: the model has no ReLU/ReLU6 module to watch; pass layers= "
                    f"(module names such as {list(named)[1:4]}) to choose modules"
                )
            return chosen
        items = [layers] if isinstance(layers, str) else list(layers)
        if not items:
            raise IntroscopeError("IUA.monitor: layers is empty; name at least one module")
        by_id = {id(m): n for n, m in named.items()}
        chosen = {}
        unknown = []
        for item in items:
            if isinstance(item, str):
                if item in named:
                    chosen[item] = named[item]
                else:
                    unknown.append(item)
            elif id(item) in by_id:
                chosen[by_id[id(item)] or type(item).__name__] = item
            else:
                raise IntroscopeError(
                    f"IUA.monitor: {type(item).__name__} module is not part of the model"
                )
        if unknown:
            raise unknown_name_error("module", unknown, [n for n in named if n])
        return chosen

    # ------------------------------------------------------------------ hooks
    def attach(self) -> IUAMonitor:
        """Register the forward hooks (idempotent)."""
        if not self._handles:
            self._handles.append(self._model.register_forward_pre_hook(self._begin_pass))
            # always_call: a forward pass that raises still ends (the next one starts afresh).
            self._handles.append(
                self._model.register_forward_hook(self._end_pass, always_call=True)
            )
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def _begin_pass(self, *_: Any) -> None:
        if self._depth == 0:
            self._calls.clear()
        self._depth += 1

    def _end_pass(self, *_: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def detach(self) -> None:
        """Remove every hook this monitor registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> IUAMonitor:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

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
        self._multi.clear()

    def _make_hook(self, name: str):  # noqa: ANN202
        def hook(module: Any, inputs: Any, output: Any) -> None:
            call = self._calls.get(name, 0) if self._depth else 0
            if self._depth:
                self._calls[name] = call + 1
            if call:
                self._multi.add(name)
            self._fold(f"{name}#{call}" if call else name, output)

        return hook

    def _fold(self, name: str, output: Any) -> None:
        torch = self._torch
        x = output
        if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
            x = x[0]
        if not isinstance(x, torch.Tensor):
            raise IntroscopeError(
                f"IUA.monitor: module {name!r} returned {type(output).__name__}, not a tensor"
            )
        if x.dim() < 1:
            raise IntroscopeError(f"IUA.monitor: module {name!r} returned a 0-d tensor")
        x = x.detach()
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
        if self._multi:
            # The first call's state was filed under the plain name before a second call showed.
            merged._fields = {
                (f"{n}#0" if n in self._multi else n): s for n, s in merged._fields.items()
            }
            for s_name, s in merged._fields.items():
                s.name = s_name
        _log.debug("IUA.monitor result: %r", merged)
        return merged
