"""Shifted sums of one field for :class:`PFACovarianceState`: staging, BLAS syrk, float32 blocks.

The sums of a field are taken about a per-unit shift ``s`` (from the first batch's column means
and spreads, see :func:`choose_shift`; float32-representable, so float32 arithmetic subtracts
exactly the stored value): the count
``n``, ``T = sum(x - s)`` and ``S = sum((x - s)(x - s)^T)``, all float64. The covariance is
``(S - T T^T / n) / (n - 1)`` whatever ``s`` is; with ``s`` near the mean, ``S`` only carries
the variance scale, so each staged block's Gram matrix can be formed in float32 (numpy's
``block.T @ block``, a BLAS syrk) without the cancellation of ``E[xx^T] - mu mu^T``, then
added to the float64 ``S``. A float32 block whose mean drifted from the shift (rows sorted by
class) is re-centred on its own mean first (:mod:`._recentre`). The host arithmetic (staging,
Gram products, their guards) is :class:`._host_sums.HostSums`; this module chooses the shift and
the product paths, and keeps the ``State`` contract (update, merge, save).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from introscope._validation import pooling_hint

from .._state_contract import Capabilities, NonFiniteValues, State, StateError, is_torch_tensor
from ._host_sums import (  # noqa: F401 - re-exported: the thresholds at their old path
    _DIRECT_ROWS,
    _DOT_DTYPES,
    _F32,
    _F32_DIAG_MAX,
    _F32_DIAG_MIN,
    _F64,
    _MAX,
    _MIN,
    _RAW_ROWS,
    HostSums,
)
from ._recentre import Drift, Offsets, recentre  # noqa: F401 - recentre: its old path
from ._sums_math import (
    MOMENT_ROWS,
    choose_shift,
    covariance_of,
    first_batch_moments,
    product_dtype,
    reexpress,
    to_like,
    torch_int_types,
)

PRECISIONS = ("auto", "float64")

# float32 batches of at least _DIRECT_ROWS rows (see _host_sums) and at most _DIRECT_MAX_UNITS
# units whose units all lie within a standard deviation of zero are multiplied as they are
# (FieldSums._direct_ok).
# The shift is chosen from at least this many rows: host batches before that are held (copied)
# until there are enough. The moments of one row (batch_size=1) have no spread, and a shift at
# a full-precision data value made float32 products 40x less accurate (8.5e-6 relative).
_SHIFT_ROWS = 32
_DIRECT_MAX_UNITS = 256


class FieldSums(HostSums, State):
    """Count, shift, shifted sum and shifted outer-product sum of one field (a PFA state).

    numpy state: the full symmetric ``outer``, fed by staged blocks (float32 or float64
    products, see :func:`product_dtype`). torch state (``like`` given): full float64 tensors on
    ``like``'s device, updated with ``addmm_``. O(units**2) float64, whatever the samples.
    """

    capabilities = Capabilities(mergeable=True, exact=False, passes=1, grows_with=("units",))
    checks_finite = True

    # the sums and staging buffers are slots of HostSums
    __slots__ = ("count", "on_host", "precision", "_pending")

    def __init__(self, units: int, like: Any = None, precision: str = "auto") -> None:
        self.precision = precision
        self.count = 0
        self.shift: Any = None  # set from the first non-empty batch (or by a merge)
        self._stage: np.ndarray | None = None
        self._staged = 0
        self._gram_buf: np.ndarray | None = None
        self._shift_cast: np.ndarray | None = None  # the shift in the staging dtype
        # Batches within +-_bound cannot overflow x - shift in the staging dtype.
        self._bound = self._bound2 = np.float64(0.0)
        # float64 products of large batches may be summed about zero (see _add_raw).
        self._raw_ok = False
        # float32 batches of _DIRECT_ROWS or more multiplied as they are (see _direct_ok).
        self._direct = False
        self._raw: list[Any] | None = None  # [count, sum, upper triangle of outer] about zero
        # float64 blocks' Gram matrices about the shift (upper triangle, Fortran order).
        self._upper: np.ndarray | None = None
        # Host batches held (counted, checked finite) until _SHIFT_ROWS rows choose the shift.
        self._pending: list[np.ndarray] = []
        # Per-unit drift tolerances for re-centring float32 blocks (see _recentred); None: not
        # known yet. Offset terms of re-centred blocks, and their scratch block (direct path).
        self._drift: Drift | None = None
        self._offsets = Offsets()
        self._scratch: np.ndarray | None = None
        if like is not None and like.device.type != "mps":
            # Sums on the tensors' own device, in float64 (MPS has no float64: host sums there).
            import torch

            # total and outer: torch tensors here, numpy arrays on the host (used alike)
            self.total: Any = torch.zeros(units, dtype=torch.float64, device=like.device)
            self.outer: Any = torch.zeros((units, units), dtype=torch.float64, device=like.device)
            self.on_host = False
        else:
            self.total = np.zeros(units)
            self.outer = np.zeros((units, units))
            self.on_host = True

    @property
    def units(self) -> int:
        return int(self.total.shape[0])

    def set_shift(self, shift: np.ndarray) -> None:
        """Set the shift (float64, float32-representable); only before any sample is summed
        (``count`` may already include held batches, which are summed after it is set)."""
        assert self._staged == 0 and (self.count == 0 or self.shift is None)
        self.shift = shift.copy() if self.on_host else to_like(shift, self.total)
        self._stage = self._shift_cast = None

    def _settle(self) -> None:
        """Choose the shift from the held batches and add them (before the sums are read)."""
        if self._pending:
            held = self._pending
            x = held[0] if len(held) == 1 else np.concatenate(held)
            self._add_first(x)
            self._pending = []

    def _add_first(self, x: np.ndarray) -> None:
        """Choose the shift from the first rows ``x`` and sum them (host state); on failure
        nothing changes (no shift, nothing summed) and ``NonFiniteValues`` is raised."""
        self._start(x)
        if not self.add_numpy(x, product_dtype(x.dtype, self.precision)):
            self.shift = None  # as before: the next batch chooses the shift again
            self._stage = self._shift_cast = None
            self._direct = self._raw_ok = False
            raise NonFiniteValues()

    def shift_numpy(self) -> np.ndarray:
        self._settle()
        if self.shift is None:
            return np.zeros(self.units)
        shift = self.shift.cpu().numpy() if is_torch_tensor(self.shift) else self.shift.copy()
        return cast(np.ndarray, shift)

    def numpy(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(count, shift, shifted sum, full symmetric shifted outer sum), float64 numpy arrays."""
        self._settle()
        if not self.on_host:
            # Copies: .cpu().numpy() of a CPU tensor shares the state's memory.
            total, outer = self.total.cpu().numpy().copy(), self.outer.cpu().numpy().copy()
            return self.count, self.shift_numpy(), total, outer
        self.flush()
        self._offsets.fold(self.outer)
        self._fold_raw()
        self._fold_upper()
        # Finishing should not hold the staging buffers; the next update re-creates them.
        self._stage = self._gram_buf = self._scratch = None
        return self.count, self.shift_numpy(), self.total.copy(), self.outer.copy()

    # ------------------------------------------------------------------ the State contract
    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        """Fold a (samples, units) numpy array or torch tensor in; NaN/Inf always raise."""
        if (
            type(array) is np.ndarray
            and self.on_host
            and self.shift is not None
            and array.ndim == 2
            and array.shape[0]
            and array.shape[1] == self.total.shape[0]
            and array.dtype.kind in "biuf"
        ):
            # The common case (a numpy batch after the first one), checked in one go: small
            # batches spend as much time here as in the arithmetic.
            if not self.add_numpy(array, product_dtype(array.dtype, self.precision)):
                raise NonFiniteValues()
            self.count += array.shape[0]
            return 0
        shape = tuple(array.shape)
        if len(shape) != 2:
            raise StateError(
                f"has shape {shape}; PFA needs 2-D responses (samples, units): "
                + pooling_hint(shape)
            )
        if shape[1] != self.units:
            raise StateError(f"has {shape[1]} units, but earlier batches had {self.units}")
        if shape[0] == 0:
            return 0
        if is_torch_tensor(array):
            self._update_torch(array)
        else:
            self._update_numpy(array)
        self.count += shape[0]
        return 0

    def _update_numpy(self, array: Any) -> None:
        x = np.asarray(array)
        if x.dtype.kind not in "biuf":
            raise StateError(
                f"has non-numeric dtype {x.dtype}; it needs real numbers (float, int, bool)"
            )
        if self.shift is None:
            held = sum(len(p) for p in self._pending) + x.shape[0]
            if self.on_host and held < _SHIFT_ROWS:
                if x.dtype.kind == "f" and not np.isfinite(x).all():
                    raise NonFiniteValues()
                self._pending.append(np.array(x))  # a copy: the caller may reuse its array
                return
            if self._pending:
                if x.dtype.kind == "f" and not np.isfinite(x).all():
                    raise NonFiniteValues()  # the held batches stay as they are
                self._add_first(np.concatenate([*self._pending, x]))
                self._pending = []
                return
            if self.on_host:
                self._add_first(x)
                return
            self._start(x)
        if self.on_host:
            if not self.add_numpy(x, product_dtype(x.dtype, self.precision)):
                raise NonFiniteValues()
            return
        # numpy batch into a torch state: float64 on the state's device.
        import torch

        self._add_torch(torch.from_numpy(np.asarray(x, dtype=np.float64)).to(self.outer.device))

    def _start(self, x: np.ndarray) -> None:
        """Choose the shift (and the product paths) from the first rows ``x``."""
        means, stds = first_batch_moments(x[:MOMENT_ROWS])
        if not np.all(np.isfinite(means)):
            raise NonFiniteValues()
        self.set_shift(choose_shift(means, stds))
        # Every unit's shift is 0 (a dead unit included) or within 4 standard deviations of
        # zero: float64 products about zero lose at most a factor 1 + 4**2 of float64
        # precision (a constant unit away from zero keeps its exact zero variance).
        near = (stds > 0) & (np.abs(self.shift) <= 4 * stds)
        self._raw_ok = bool(np.all(near | (self.shift == 0)))
        self._direct = self._direct_ok(x, means, stds)
        if self._direct:
            self.set_shift(np.zeros(self.units))
        self._drift = Drift(stds, means - self.shift) if len(x) >= MOMENT_ROWS else None

    def _direct_ok(self, x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> bool:
        """Whether float32 batches of this field are multiplied as they are, about zero.

        Where it saves time: at most ``_DIRECT_MAX_UNITS`` units (where writing ``x - shift``
        into the staging block costs 10-40 % of the Gram product) and batches of at least
        ``_DIRECT_ROWS`` rows (as fast per row as a staged block). Where it keeps the
        precision bound: every unit's first-batch mean within one standard deviation of zero
        (its mean square about zero is then at most twice its variance, against 1.25 times
        about the short shift, while a block has ~1,024 rows instead of up to 8,192) and every
        constant unit exactly 0 (a constant unit elsewhere needs its shift to stay exact).
        """
        if (
            self.precision != "auto"
            or x.dtype != _F32
            or x.shape[0] < _DIRECT_ROWS
            or x.shape[1] > _DIRECT_MAX_UNITS
        ):
            return False
        varies = stds > 0
        return bool(np.all((varies & (np.abs(means) <= stds)) | (~varies & (means == 0))))

    def _update_torch(self, tensor: Any) -> None:
        import torch

        x = tensor.detach()
        if x.is_complex() or not (x.is_floating_point() or x.dtype in torch_int_types()):
            raise StateError(
                f"has non-numeric dtype {x.dtype}; it needs real numbers (float, int, bool)"
            )
        if self.on_host:
            # The state lives on the host already: bring the batch there (numpy has no
            # bfloat16: float32 holds it exactly).
            if x.dtype == torch.bfloat16:
                x = x.float()
            self._update_numpy(x.cpu().numpy())
            return
        x = x.to(device=self.outer.device, dtype=torch.float64)
        if self.shift is None:
            means = x.mean(dim=0)
            if not bool(torch.isfinite(means).all()):
                raise NonFiniteValues()
            stds = x.std(dim=0, correction=0)
            self.set_shift(choose_shift(means.cpu().numpy(), stds.cpu().numpy()))
        self._add_torch(x)

    def _add_torch(self, x: Any) -> None:
        import torch

        x = x - self.shift
        column_sums = x.sum(dim=0)
        if not bool(torch.isfinite(column_sums).all()):
            raise NonFiniteValues()
        self.outer.addmm_(x.T, x)
        self.total += column_sums

    def absorb(self, other: FieldSums) -> None:
        """Add ``other``'s sums (of disjoint data), re-expressed about this state's shift."""
        if other.units != self.units:
            raise StateError(f"has {self.units} units in one state and {other.units} in the other")
        count, shift, total, outer = other.numpy()
        if count == 0:
            return
        if self.count == 0:
            self.set_shift(shift)
            # A copy: its cached bound per block size must not be shared between states.
            self._drift = copy.copy(other._drift) or Drift.of_sums(count, total, outer)
        else:
            d = shift - self.shift_numpy()
            if np.any(d):
                total, outer = reexpress(count, total, outer, d)
        if self.on_host:
            self.outer += outer
            self.total += total
        else:
            self.outer += to_like(outer, self.outer)
            self.total += to_like(total, self.total)
        self.count += count

    def merged(self, other: FieldSums) -> FieldSums:
        out = self.copy()
        out.absorb(other)
        return out

    def copy(self) -> FieldSums:
        """A host copy (numpy sums)."""
        return FieldSums.from_state_dict(self.state_dict())

    def result(self, **options: Any) -> np.ndarray:
        """The (units, units) covariance, normalised by ``count - 1``."""
        return covariance_of(*self.numpy())

    def state_dict(self) -> dict[str, Any]:
        count, shift, total, outer = self.numpy()
        out: dict[str, Any] = {"count": count, "precision": self.precision, "sum": total}
        out["outer"] = outer
        if self.shift is not None:
            out["shift"] = shift
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> FieldSums:
        """Rebuild sums from :meth:`state_dict` (no ``shift``: sums about zero)."""
        total = np.asarray(state["sum"], dtype=np.float64)
        outer = np.asarray(state["outer"], np.float64)
        shift = state.get("shift")
        units = total.shape[0] if total.ndim == 1 else -1
        if (
            units < 1
            or outer.shape != (units, units)
            or (shift is not None and np.shape(shift) != (units,))
        ):
            raise StateError(
                f"holds inconsistent sums: sum {total.shape}, outer {outer.shape}, shift "
                f"{None if shift is None else np.shape(shift)}; save the state again"
            )
        precision = str(np.asarray(state.get("precision", "auto")))
        sums = cls(total.shape[0], precision=precision)
        count = int(np.asarray(state["count"]))
        if count:
            sums.set_shift(np.zeros_like(total) if shift is None else np.asarray(shift, float))
            sums._drift = Drift.of_sums(count, total, outer)
        sums.count = count
        sums.total = total.copy()
        # The upper triangle is read (as before), mirrored into a symmetric matrix.
        upper = np.triu(outer)
        sums.outer = upper + np.triu(upper, 1).T
        return sums

    @property
    def nbytes(self) -> int:
        """Bytes of the sums and of the staging buffers."""
        total = self.units * (self.units + 2) * 8  # outer, sum and shift, float64
        raw = None if self._raw is None else self._raw[2]
        for buf in (self._stage, self._gram_buf, raw, self._upper, self._scratch):
            total += 0 if buf is None else buf.nbytes
        return total
