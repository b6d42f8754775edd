"""The mergeable state of IUA for one response: O(units) counters plus one integer per sample.

numpy batches (and torch tensors on the CPU, through a zero-copy view) are counted by
``_kernel.count_batch``; torch tensors on an accelerator are counted with torch ops into
counters on their own device, never synchronised per batch, and brought to the host when the
state is read (``IUAState.sync``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._state_contract import Capabilities, NonFiniteValues, State, StateError, is_torch_tensor
from ._kernel import BatchCounts, count_batch, work_dtype

__all__ = ["Tally", "IUAState"]


class _Growable:
    """An append-only 1-d integer array with amortised doubling (never a Python list)."""

    __slots__ = ("_buf", "_n")

    def __init__(self, dtype: np.dtype, capacity: int = 256) -> None:
        self._buf = np.empty(max(1, capacity), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return self._buf.nbytes

    def extend(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=self._buf.dtype)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = values
        self._n = need

    def view(self) -> np.ndarray:
        out = self._buf[: self._n]
        out.flags.writeable = False
        return out


class Tally:
    """Inactive counts over a set of units: per unit (int64) and per sample (smallest uint).

    Batches of at most 255 samples arrive as uint8 per-unit counts; they are summed into a
    uint16 array first and added to the int64 ``counts`` every 257 such batches (or when read):
    adding a uint8 array to an int64 one moves 17 bytes per unit, a uint16 sum 5. On ResNet-18's
    layout (584,000 units over 17 ReLUs) that was ~1 ms of each monitored forward.
    """

    __slots__ = ("shape", "_counts", "_pending", "_pending_rows", "per_sample")

    # uint16 sums of uint8 counts stay exact up to this many samples.
    _PENDING_MAX = 65535

    def __init__(self, shape: tuple[int, ...], capacity: int = 256) -> None:
        self.shape = shape
        size = math.prod(shape)
        self._counts = np.zeros(size, dtype=np.int64)
        self._pending: np.ndarray | None = None
        self._pending_rows = 0
        # A per-sample count never exceeds the number of units: store it in the smallest uint.
        self.per_sample = _Growable(np.min_scalar_type(size), capacity)

    @property
    def counts(self) -> np.ndarray:
        """Per-unit inactive counts (int64), everything added so far."""
        self._flush()
        return self._counts

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        self._pending = None
        self._pending_rows = 0
        self._counts = value

    def _flush(self) -> None:
        if self._pending_rows:
            assert self._pending is not None
            self._counts += self._pending
            self._pending[...] = 0
            self._pending_rows = 0

    @property
    def n_samples(self) -> int:
        return len(self.per_sample)

    def add(self, counts: np.ndarray, per_sample: np.ndarray) -> None:
        rows = len(per_sample)
        if counts.dtype == np.uint8 and rows <= 255:
            if self._pending_rows + rows > self._PENDING_MAX:
                self._flush()
            if self._pending is None:
                self._pending = np.zeros(self._counts.shape, dtype=np.uint16)
            np.add(self._pending, counts, out=self._pending)
            self._pending_rows += rows
        else:
            self._counts += counts
        self.per_sample.extend(per_sample)

    def merged(self, other: Tally) -> Tally:
        out = Tally(self.shape, len(self) + len(other))
        out.counts = self.counts + other.counts
        out.per_sample.extend(self.per_sample.view())
        out.per_sample.extend(other.per_sample.view())
        return out

    @classmethod
    def of(cls, shape: tuple[int, ...], counts: np.ndarray, per_sample: np.ndarray) -> Tally:
        out = cls(shape, len(per_sample))
        out.add(np.asarray(counts, dtype=np.int64).reshape(-1), np.asarray(per_sample))
        return out

    def __len__(self) -> int:
        return self.n_samples

    @property
    def nbytes(self) -> int:
        pending = 0 if self._pending is None else self._pending.nbytes
        return self._counts.nbytes + pending + self.per_sample.nbytes


class _DeviceTally:
    """Counters of one response on a torch device (CUDA, MPS, ...)."""

    def __init__(self, torch: Any, size: int, nch: int | None, device: Any) -> None:
        self.counts = torch.zeros(size, dtype=torch.int64, device=device)
        self.per_sample = torch.empty(256, dtype=torch.int64, device=device)
        self.ch_counts = None if nch is None else torch.zeros(nch, dtype=torch.int64, device=device)
        self.ch_per_sample = None if nch is None else torch.empty_like(self.per_sample)
        self.n = 0
        # A device scalar, so the device never synchronises per batch.
        self.nonfinite = torch.zeros((), dtype=torch.int64, device=device)

    @staticmethod
    def append(torch: Any, buf: Any, n: int, values: Any) -> Any:
        need = n + values.shape[0]
        if need > buf.shape[0]:
            grown = torch.empty(max(need, 2 * buf.shape[0]), dtype=buf.dtype, device=buf.device)
            grown[:n] = buf[:n]
            buf = grown
        buf[n:need] = values
        return buf


class IUAState(State):
    """IUA counters of one response: a unit tally, an optional channel tally, non-finite count.

    A channel (along ``channel_axis`` of the unit shape) is inactive for a sample when all its
    positions are. Grows by one small unsigned integer per sample (two with a channel view).
    """

    capabilities = Capabilities(
        mergeable=True, exact=True, passes=1, grows_with=("units", "samples")
    )
    checks_finite = True

    def __init__(
        self,
        unit_shape: tuple[int, ...],
        channel_axis: int | None,
        atol: float,
        *,
        force_device_path: bool = False,
    ) -> None:
        self.unit_shape = unit_shape
        self.channel_axis = channel_axis  # an axis of unit_shape (batch axis excluded), or None
        self.atol = atol
        self.units = Tally(unit_shape)
        self.channels = Tally((unit_shape[channel_axis],)) if channel_axis is not None else None
        self.nonfinite = 0
        self.force_device_path = force_device_path  # tests run the accelerator path on CPU
        self._device: _DeviceTally | None = None

    # ------------------------------------------------------------------ shape
    @property
    def n_samples(self) -> int:
        return self.units.n_samples + (self._device.n if self._device is not None else 0)

    def channel_split(self) -> tuple[int, int, int] | None:
        """(units before, channels, units after) the channel axis, for reshaping a flat row."""
        if self.channel_axis is None:
            return None
        ax = self.channel_axis
        return (
            math.prod(self.unit_shape[:ax]),
            self.unit_shape[ax],
            math.prod(self.unit_shape[ax + 1 :]),
        )

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 1:
            raise StateError("has no batch dimension")
        unit_shape = tuple(int(d) for d in shape[1:])
        if unit_shape != self.unit_shape:
            raise StateError(
                f"has units of shape {unit_shape}, but earlier batches had {self.unit_shape}; "
                f"every batch must have the same shape after dim 0"
            )

    # ------------------------------------------------------------------ update
    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        if is_torch_tensor(array):
            x = array.detach()
            if x.device.type != "cpu" or self.force_device_path:
                self._check_shape(tuple(x.shape))
                if x.shape[0]:
                    self._update_device(x)
                return 0
            try:
                array = x.numpy()
            except TypeError:  # bfloat16 and other dtypes numpy lacks
                import torch

                array = x.to(torch.float32).numpy()
        arr = np.asarray(array)
        if work_dtype(arr.dtype) is None:
            raise StateError(
                f"has dtype {arr.dtype}; IUA needs numeric responses (float, complex, int or bool)"
            )
        self._check_shape(arr.shape)
        if arr.shape[0] == 0:
            return 0  # an empty batch holds no sample (as PFA's sums skip it)
        flat = arr.reshape(arr.shape[0], -1)
        counts = count_batch(flat, self.atol, self.channel_split())
        if counts.nonfinite and not allow_nonfinite:
            raise NonFiniteValues(counts.nonfinite, flat.size)
        if self._device is not None:
            self._flush_device()  # keep the samples in the order they were seen
        self._add(counts)
        return counts.nonfinite

    def _add(self, counts: BatchCounts) -> None:
        self.units.add(counts.unit_counts, counts.per_sample)
        if self.channels is not None:
            assert counts.channel_counts is not None and counts.channel_per_sample is not None
            self.channels.add(counts.channel_counts, counts.channel_per_sample)
        self.nonfinite += counts.nonfinite

    def _update_device(self, x: Any) -> None:
        import torch

        with torch.no_grad():
            split = self.channel_split()
            dev = self._device
            if dev is None:
                nch = None if split is None else split[1]
                dev = self._device = _DeviceTally(torch, math.prod(self.unit_shape), nch, x.device)
            batch = x.shape[0]
            flat = x.reshape(batch, -1)
            if not (flat.is_floating_point() or flat.is_complex()):
                flat = flat.to(torch.float64)
            a = flat.abs()
            # Counted on the device; the policy is applied when the state is read (sync).
            dev.nonfinite += (~torch.isfinite(a)).sum()
            mask = a <= self.atol
            dev.counts += mask.sum(0)
            dev.per_sample = dev.append(torch, dev.per_sample, dev.n, mask.sum(1))
            if split is not None:
                pre, nch, post = split
                dead = mask.view(batch, pre, nch, post).all(dim=3).all(dim=1)
                dev.ch_counts += dead.sum(0)
                dev.ch_per_sample = dev.append(torch, dev.ch_per_sample, dev.n, dead.sum(1))
            dev.n += batch

    def _flush_device(self) -> int:
        """Move the device counters into the host tallies; return their non-finite count."""
        dev = self._device
        if dev is None:
            return 0
        self._device = None
        self.units.add(dev.counts.cpu().numpy(), dev.per_sample[: dev.n].cpu().numpy())
        if self.channels is not None:
            # the device tally has channel counters whenever this state has channels
            assert dev.ch_counts is not None and dev.ch_per_sample is not None
            self.channels.add(dev.ch_counts.cpu().numpy(), dev.ch_per_sample[: dev.n].cpu().numpy())
        found = int(dev.nonfinite)
        self.nonfinite += found
        return found

    def sync(self) -> int:
        return self._flush_device()

    # ------------------------------------------------------------------ combining
    def merged(self, other: IUAState) -> IUAState:
        if other.unit_shape != self.unit_shape:
            raise StateError(
                f"has units of shape {self.unit_shape} in one and {other.unit_shape} in the other"
            )
        if other.channel_axis != self.channel_axis:
            raise StateError(
                f"has channel axis {self.channel_axis} in one and {other.channel_axis} in the other"
            )
        self.sync()
        other.sync()
        out = IUAState(self.unit_shape, self.channel_axis, self.atol)
        out.units = self.units.merged(other.units)
        if self.channels is not None and other.channels is not None:
            out.channels = self.channels.merged(other.channels)
        out.nonfinite = self.nonfinite + other.nonfinite
        return out

    def copy(self) -> IUAState:
        self.sync()
        empty = IUAState(self.unit_shape, self.channel_axis, self.atol)
        return empty.merged(self)

    # ------------------------------------------------------------------ reading
    def result(self, *, view: str = "units") -> Any:
        """``IUA.Result`` over the units (``view="units"``) or channels (``"channels"``)."""
        from ._result import IUAResult

        self.sync()
        tally = self.units if view == "units" else self.channels
        if tally is None:
            return None
        return IUAResult.from_counts(
            tally.per_sample.view(), tally.counts, tally.shape, self.nonfinite
        )

    def state_dict(self) -> dict[str, Any]:
        self.sync()
        out: dict[str, Any] = {
            "unit_shape": list(self.unit_shape),
            "channel_axis": self.channel_axis,
            "atol": self.atol,
            "nonfinite": self.nonfinite,
            "unit_counts": self.units.counts,
            "per_sample": self.units.per_sample.view(),
        }
        if self.channels is not None:
            out["channel_counts"] = self.channels.counts
            out["channel_per_sample"] = self.channels.per_sample.view()
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> IUAState:
        axis = state["channel_axis"]
        out = cls(
            tuple(int(d) for d in state["unit_shape"]),
            None if axis is None else int(axis),
            float(state["atol"]),
        )
        out.units = Tally.of(out.unit_shape, state["unit_counts"], state["per_sample"])
        if out.channels is not None:
            out.channels = Tally.of(
                out.channels.shape, state["channel_counts"], state["channel_per_sample"]
            )
        out.nonfinite = int(state["nonfinite"])
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by this state (what grows with the data is the per-sample arrays)."""
        total = self.units.nbytes
        if self.channels is not None:
            total += self.channels.nbytes
        return total
