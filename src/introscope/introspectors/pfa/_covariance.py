"""Streaming, mergeable covariance of 2-D responses, and its eigen-decomposition.

The state per field is the sample count ``n``, a per-unit shift ``s`` and two float64 sums about
it, ``T = sum(x - s)`` and ``S = sum((x - s)(x - s)^T)``. The covariance
``(S - T T^T / n) / (n - 1)`` does not depend on ``s``. The shift is the first batch's column
mean rounded to a short float32 (few significant bits) within half its standard deviation
(see ``_field_sums.choose_shift``), so ``S`` stays at the scale of the variance and nothing
cancels when the mean is large compared with the spread. ``merge`` re-expresses the other
state's sums about this state's shift (``T + n d`` and ``S + T d^T + d T^T + n d d^T`` with
``d = s_other - s``), so shards and workers merge to the one-pass covariance (up to float64
rounding).

Precision. With ``precision="auto"`` (the default) batches that float32 holds exactly (float32,
float16, bool, 8/16-bit integers) are staged as float32 ``x - s`` in blocks of about 4 MiB
(``b`` rows, 2048 for 512 units); each block's Gram matrix is one float32 BLAS ``ssyrk`` (upper
triangle) added to the float64 ``S``. DNIKit also multiplies float32 responses in float32 (per
batch, about zero). An entry of the covariance is then within ``(b + 4) u sqrt(Q_ii Q_jj)`` of
the exact one (``u = 2**-24``, ``Q_ii`` unit ``i``'s mean square about its shift: about
``var + std**2 / 4`` at most for a stationary stream); measured errors are near ``1e-7``
relative. Without a shift the bound is
``b u (var + mean**2)``: for mean 1e3 and standard deviation 1, more than the variance. A block
whose float32 products could underflow to subnormals or overflow (a Gram diagonal entry outside
[2**-100, 2**100] other than an exact 0 of a constant unit) is redone in float64, and so is a
batch whose ``x - s`` overflows float32. float64 and 32/64-bit integer batches, torch state, and
every batch with ``precision="float64"`` are multiplied in float64.

Constant units: a unit whose response never changes has zero variance. When at least one other
unit varies, it is *inactive* (variance below ``epsilon_inactive`` times the largest variance)
and PFA removes it first. When every unit is constant, no unit is inactive, every eigenvalue is
zero and the strategies keep the whole layer.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

from ._field_sums import (
    PRECISIONS,
    FieldSums,
    choose_shift,
    is_torch_tensor,
    product_dtype,
    reexpress,
    to_like,
)

__all__ = ["PFACovariancesResult", "PFACovarianceState"]

_logger = logging.getLogger("introscope.introspectors.pfa")


@dataclass(frozen=True)
class PFACovariancesResult:
    """A layer's response covariance, its spectrum and its inactive units."""

    covariances: np.ndarray
    """The (units, units) covariance matrix (normalised by ``count - 1``)."""

    eigenvalues: np.ndarray
    """Eigenvalues of ``covariances``, descending, clipped at zero."""

    eigenvectors: np.ndarray
    """Eigenvectors as columns, in the order of ``eigenvalues`` (DNIKit 2.0 reverses the rows of
    ``eigh``'s matrix instead, so its columns are neither in that order nor eigenvectors)."""

    original_output_count: int
    """Number of units (features) in the response."""

    inactive_units: np.ndarray
    """Indices (ascending) of units whose variance is below ``epsilon_inactive * max variance``."""

    @staticmethod
    def make_covariance_result(
        *, covariances: np.ndarray, epsilon_inactive: float = 1e-8
    ) -> PFACovariancesResult:
        """Decompose a covariance matrix (``eigh``: it is symmetric) and find the inactive units."""
        cov = np.asarray(covariances, dtype=np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
            raise IntroscopeError(
                f"covariances must be a non-empty square matrix, got shape {cov.shape}"
            )
        if not np.all(np.isfinite(cov)):
            raise IntroscopeError("covariances contain NaN or Inf")
        # eigh reads one triangle only; eigenvalues of a PSD matrix that come out slightly
        # negative are rounding noise, hence the clip.
        values, vectors = np.linalg.eigh(cov)
        values = np.maximum(values, 0.0)[::-1]
        vectors = vectors[:, ::-1]
        var = np.abs(np.diag(cov))
        inactive = np.flatnonzero(var < epsilon_inactive * np.max(var)).astype(int)
        return PFACovariancesResult(
            covariances=cov,
            eigenvalues=values,
            eigenvectors=vectors,
            original_output_count=int(cov.shape[0]),
            inactive_units=inactive,
        )


class PFACovarianceState:
    """Accumulator of per-field response covariances: ``update``, ``merge``, ``finalize``.

    Feed it numpy arrays or torch tensors of shape (samples, units); torch tensors are summed on
    their own device in float64 (for example from a forward hook) and moved to the host only at
    ``finalize``.

    Args:
        precision: ``"auto"`` (default) forms the products of float32, float16, bool and
            8/16-bit integer batches in float32 about a per-unit shift and accumulates them in
            float64; ``"float64"`` forms every product in float64 (twice the arithmetic).
            float64 and 32/64-bit integer batches, and torch state, always use float64.
    """

    def __init__(self, *, precision: str = "auto") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self._fields: dict[str, FieldSums] = {}

    @property
    def fields(self) -> list[str]:
        """Names of the fields seen so far, in first-seen order."""
        return list(self._fields)

    def count(self, field: str) -> int:
        """Number of samples accumulated for ``field``."""
        return self._fields[field].count

    def update(self, field: str, array: Any, *, where: str = "") -> None:
        """Fold a (samples, units) batch of ``field`` into the state.

        ``where`` (e.g. "batch 3") is added to error messages.
        """
        at = f" ({where})" if where else ""
        torch_input = is_torch_tensor(array)
        shape = tuple(array.shape)
        if len(shape) != 2:
            raise IntroscopeError(
                f"PFA needs 2-D responses (samples, units) but field {field!r} has shape "
                f"{shape}{at}; pool or flatten it first, e.g. Pooler(dim=(1, 2), "
                f"method=Pooler.Method.MAX) for NHWC convolution responses"
            )
        sums = self._fields.get(field)
        if sums is None:
            sums = FieldSums(shape[1], like=array if torch_input else None)
            self._fields[field] = sums
        elif sums.units != shape[1]:
            raise IntroscopeError(
                f"field {field!r} had {sums.units} units but now has {shape[1]}{at}"
            )
        if shape[0] == 0:
            return
        if torch_input:
            self._update_torch(field, sums, array, at)
        else:
            self._update_numpy(field, sums, array, at)
        sums.count += shape[0]

    def _update_numpy(self, field: str, sums: FieldSums, array: Any, at: str) -> None:
        x = np.asarray(array)
        if x.dtype.kind not in "biuf":
            raise IntroscopeError(f"field {field!r} has non-numeric dtype {x.dtype}{at}")
        if sums.shift is None:
            means = x.mean(axis=0, dtype=np.float64)
            if not np.all(np.isfinite(means)):
                raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
            sums.set_shift(choose_shift(means, x.std(axis=0, dtype=np.float64)))
        if sums.upper_only:
            column_sums = sums.add_numpy(x, product_dtype(x.dtype, self.precision))
            if not np.all(np.isfinite(column_sums)):
                raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
            sums.total += column_sums
            return
        # numpy batch into a torch state: float64 on the state's device.
        import torch

        t = torch.from_numpy(np.asarray(x, dtype=np.float64)).to(sums.outer.device)
        self._add_torch(field, sums, t, at)

    def _update_torch(self, field: str, sums: FieldSums, tensor: Any, at: str) -> None:
        import torch

        x = tensor.detach()
        if x.is_complex() or not (x.is_floating_point() or x.dtype in _torch_int_types()):
            raise IntroscopeError(f"field {field!r} has non-numeric dtype {x.dtype}{at}")
        if sums.upper_only:
            # The state lives on the host already: bring the batch there.
            self._update_numpy(field, sums, x.cpu().numpy(), at)
            return
        x = x.to(device=sums.outer.device, dtype=torch.float64)
        if sums.shift is None:
            means = x.mean(dim=0)
            if not bool(torch.isfinite(means).all()):
                raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
            stds = x.std(dim=0, correction=0)
            sums.set_shift(choose_shift(means.cpu().numpy(), stds.cpu().numpy()))
        self._add_torch(field, sums, x, at)

    @staticmethod
    def _add_torch(field: str, sums: FieldSums, x: Any, at: str) -> None:
        import torch

        x = x - sums.shift
        column_sums = x.sum(dim=0)
        if not bool(torch.isfinite(column_sums).all()):
            raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
        sums.outer.addmm_(x.T, x)
        sums.total += column_sums

    def merge(self, other: PFACovarianceState) -> PFACovarianceState:
        """Add ``other``'s sums (computed on disjoint data) into this state; returns ``self``.

        ``other``'s sums are re-expressed about this state's shift first (exact up to float64
        rounding), so states started on different data merge to the one-pass covariance.
        """
        if not isinstance(other, PFACovarianceState):
            raise TypeError(f"can only merge a PFACovarianceState, got {type(other).__name__}")
        for field, theirs in other._fields.items():
            mine = self._fields.get(field)
            if mine is not None and mine.units != theirs.units:
                raise IntroscopeError(
                    f"cannot merge field {field!r}: {mine.units} units here, {theirs.units} there"
                )
            count, shift, total, outer = theirs.numpy()
            if mine is None:
                mine = FieldSums(theirs.units)
                self._fields[field] = mine
            if count == 0:
                continue
            if mine.count == 0:
                mine.set_shift(shift)
            else:
                d = shift - mine.shift_numpy()
                if np.any(d):
                    total, outer = reexpress(count, total, outer, d)
            if mine.upper_only:
                mine.outer += np.triu(outer)
                mine.total += total
            else:
                mine.outer += to_like(outer, mine.outer)
                mine.total += to_like(total, mine.total)
            mine.count += count
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as flat arrays (for ``np.savez``; no pickle needed).

        Per field ``i``: ``count_i``, ``shift_i`` and the sums about the shift ``sum_i`` and
        ``outer_i`` (float64).
        """
        out: dict[str, np.ndarray] = {
            "fields": np.array(self.fields, dtype=np.str_),
            "precision": np.array(self.precision, dtype=np.str_),
        }
        for i, sums in enumerate(self._fields.values()):
            count, shift, total, outer = sums.numpy()
            out[f"count_{i}"] = np.array(count, dtype=np.int64)
            out[f"shift_{i}"] = shift
            out[f"sum_{i}"] = total
            out[f"outer_{i}"] = outer
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> PFACovarianceState:
        """Rebuild a state written by :meth:`state_dict` (no ``shift_i``: sums about zero)."""
        precision = str(state["precision"]) if "precision" in state else "auto"
        new = cls(precision=precision)
        for i, name in enumerate(np.asarray(state["fields"]).tolist()):
            total = np.asarray(state[f"sum_{i}"], dtype=np.float64)
            sums = FieldSums(total.shape[0])
            count = int(state[f"count_{i}"])
            if count:
                shift = state.get(f"shift_{i}")
                sums.set_shift(np.zeros_like(total) if shift is None else np.asarray(shift, float))
            sums.count = count
            sums.total = total.copy()
            sums.outer = np.asfortranarray(np.triu(np.asarray(state[f"outer_{i}"], np.float64)))
            new._fields[str(name)] = sums
        return new

    def covariance(self, field: str) -> np.ndarray:
        """The (units, units) covariance of ``field``, normalised by ``count - 1``."""
        # The shift cancels: (S - T T^T / n) / (n - 1) with T, S the sums about it.
        count, _, total, outer = self._fields[field].numpy()
        if count == 0:
            raise IntroscopeError(f"field {field!r} has no samples")
        mean = total / count
        # In place: outer is a fresh array, and these matrices are the memory peak of a pass.
        if count <= 1:
            outer /= count
            outer -= np.outer(mean, mean)
        else:
            outer /= count - 1
            outer -= np.outer(mean, total / (count - 1))
        return outer

    def finalize(
        self, *, epsilon_inactive: float = 1e-8, fields: Iterable[str] | None = None
    ) -> tuple[dict[str, PFACovariancesResult], list[str]]:
        """Covariance results per field, and the fields with fewer samples than units.

        A failed field is reported with a warning (not an exception), as DNIKit does.
        """
        results: dict[str, PFACovariancesResult] = {}
        failed: list[str] = []
        for field in self.fields if fields is None else fields:
            sums = self._fields[field]
            if sums.count < sums.units:
                warnings.warn(
                    f"PFA: field {field!r} has fewer samples than units (samples, units) = "
                    f"({sums.count}, {sums.units}); its covariance is not computed and it is "
                    f"listed in failed_responses",
                    stacklevel=3,
                )
                failed.append(field)
                continue
            results[field] = PFACovariancesResult.make_covariance_result(
                covariances=self.covariance(field), epsilon_inactive=epsilon_inactive
            )
            _logger.debug(
                "PFA field %r: %d units, %d inactive",
                field,
                sums.units,
                results[field].inactive_units.size,
            )
        return results, failed


def _torch_int_types() -> tuple[Any, ...]:
    import torch

    return (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)
