"""Streaming, mergeable covariance of 2-D responses, and its eigen-decomposition.

The state per field is three float64 quantities: the sample count, the sum of the samples and
the sum of their outer products. Sums add exactly across shards and workers, so
``merge`` gives the same covariance as one pass over all the data.

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
    """Eigenvectors as columns, in the order of ``eigenvalues``."""

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


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


_STAGING_BYTES = 4 << 20


class _FieldSums:
    """Count, sum and outer-product sum of one field (numpy: upper triangle; torch: full).

    numpy batches are cast to float64 into a staging buffer of about 4 MiB and folded in with
    one BLAS ``dsyrk`` per full buffer: fewer, larger calls than one per small batch.
    """

    __slots__ = ("count", "total", "outer", "upper_only", "_stage", "_staged")

    def __init__(self, units: int, like: Any = None) -> None:
        self.count = 0
        self._stage: np.ndarray | None = None
        self._staged = 0
        if like is not None:
            import torch

            self.total = torch.zeros(units, dtype=torch.float64, device=like.device)
            self.outer = torch.zeros((units, units), dtype=torch.float64, device=like.device)
            self.upper_only = False
        else:
            self.total = np.zeros(units)
            # Fortran order lets BLAS dsyrk update it in place.
            self.outer = np.zeros((units, units), order="F")
            self.upper_only = True

    @property
    def units(self) -> int:
        return int(self.total.shape[0])

    def add_numpy(self, x: np.ndarray) -> np.ndarray:
        """Stage a (samples, units) batch (host state only); returns its float64 column sums."""
        n = x.shape[0]
        if self._stage is None:
            rows = min(max(_STAGING_BYTES // (8 * self.units), 256), 8192)
            self._stage = np.empty((rows, self.units))
        if n > self._stage.shape[0]:
            big = np.ascontiguousarray(x, dtype=np.float64)
            column_sums = big.sum(axis=0)
            if np.all(np.isfinite(column_sums)):
                self.flush()
                self._syrk(big)
            return column_sums
        if self._staged + n > self._stage.shape[0]:
            self.flush()
        block = self._stage[self._staged : self._staged + n]
        np.copyto(block, x, casting="unsafe")
        column_sums = block.sum(axis=0)
        # Rows with NaN or Inf are left out (not staged); the caller raises.
        if np.all(np.isfinite(column_sums)):
            self._staged += n
        return column_sums

    def _syrk(self, x: np.ndarray) -> None:
        from scipy.linalg.blas import dsyrk

        # x is C-ordered (samples, units), so x.T is Fortran-ordered and reaches BLAS without a
        # copy; dsyrk computes only the upper triangle of x.T @ x, in place.
        self.outer = dsyrk(1.0, x.T, beta=1.0, c=self.outer, trans=0, overwrite_c=1)

    def flush(self) -> None:
        if self._staged:
            assert self._stage is not None
            self._syrk(self._stage[: self._staged])
            self._staged = 0

    def numpy(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(count, sum, full symmetric outer-product sum) as float64 numpy arrays."""
        if _is_torch_tensor(self.total):
            return self.count, self.total.cpu().numpy(), self.outer.cpu().numpy()
        self.flush()
        outer = np.triu(self.outer) + np.triu(self.outer, 1).T
        return self.count, self.total.copy(), np.ascontiguousarray(outer)


class PFACovarianceState:
    """Accumulator of per-field response covariances: ``update``, ``merge``, ``finalize``.

    Feed it numpy arrays or torch tensors of shape (samples, units); torch tensors are summed on
    their own device in float64 (for example from a forward hook) and moved to the host only at
    ``finalize``.
    """

    def __init__(self) -> None:
        self._fields: dict[str, _FieldSums] = {}

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
        torch_input = _is_torch_tensor(array)
        shape = tuple(array.shape)
        if len(shape) != 2:
            raise IntroscopeError(
                f"PFA needs 2-D responses (samples, units) but field {field!r} has shape "
                f"{shape}{at}; pool or flatten it first, e.g. Pooler(dim=(1, 2), "
                f"method=Pooler.Method.MAX) for NHWC convolution responses"
            )
        sums = self._fields.get(field)
        if sums is None:
            sums = _FieldSums(shape[1], like=array if torch_input else None)
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

    @staticmethod
    def _update_numpy(field: str, sums: _FieldSums, array: Any, at: str) -> None:
        x = np.asarray(array)
        if x.dtype.kind not in "biuf":
            raise IntroscopeError(f"field {field!r} has non-numeric dtype {x.dtype}{at}")
        if sums.upper_only:
            column_sums = sums.add_numpy(x)
        else:
            column_sums = np.asarray(x, dtype=np.float64).sum(axis=0)
        # A NaN or Inf anywhere shows up in the column sums: an O(units) check.
        if not np.all(np.isfinite(column_sums)):
            raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
        if sums.upper_only:
            sums.total += column_sums
        else:
            import torch

            t = torch.from_numpy(np.asarray(x, dtype=np.float64)).to(sums.outer.device)
            sums.outer.addmm_(t.T, t)
            sums.total += _to_like(column_sums, sums.total)

    @staticmethod
    def _update_torch(field: str, sums: _FieldSums, tensor: Any, at: str) -> None:
        import torch

        x = tensor.detach()
        if x.is_complex() or not (x.is_floating_point() or x.dtype in _torch_int_types()):
            raise IntroscopeError(f"field {field!r} has non-numeric dtype {x.dtype}{at}")
        if sums.upper_only:
            # The state lives on the host already: bring the batch there.
            PFACovarianceState._update_numpy(field, sums, x.cpu().numpy(), at)
            return
        x = x.to(device=sums.outer.device, dtype=torch.float64)
        column_sums = x.sum(dim=0)
        if not bool(torch.isfinite(column_sums).all()):
            raise IntroscopeError(f"field {field!r} contains NaN or Inf{at}")
        sums.outer.addmm_(x.T, x)
        sums.total += column_sums

    def merge(self, other: PFACovarianceState) -> PFACovarianceState:
        """Add ``other``'s sums (computed on disjoint data) into this state; returns ``self``."""
        if not isinstance(other, PFACovarianceState):
            raise TypeError(f"can only merge a PFACovarianceState, got {type(other).__name__}")
        for field, theirs in other._fields.items():
            mine = self._fields.get(field)
            if mine is not None and mine.units != theirs.units:
                raise IntroscopeError(
                    f"cannot merge field {field!r}: {mine.units} units here, {theirs.units} there"
                )
            count, total, outer = theirs.numpy()
            if mine is None:
                mine = _FieldSums(theirs.units)
                self._fields[field] = mine
            if mine.upper_only:
                mine.outer += np.triu(outer)
                mine.total += total
            else:
                mine.outer += _to_like(outer, mine.outer)
                mine.total += _to_like(total, mine.total)
            mine.count += count
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as flat float64/int64 arrays (for ``np.savez``; no pickle needed)."""
        out: dict[str, np.ndarray] = {"fields": np.array(self.fields, dtype=np.str_)}
        for i, sums in enumerate(self._fields.values()):
            count, total, outer = sums.numpy()
            out[f"count_{i}"] = np.array(count, dtype=np.int64)
            out[f"sum_{i}"] = total
            out[f"outer_{i}"] = outer
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, np.ndarray]) -> PFACovarianceState:
        """Rebuild a state written by :meth:`state_dict`."""
        new = cls()
        for i, name in enumerate(np.asarray(state["fields"]).tolist()):
            total = np.asarray(state[f"sum_{i}"], dtype=np.float64)
            sums = _FieldSums(total.shape[0])
            sums.count = int(state[f"count_{i}"])
            sums.total = total.copy()
            sums.outer = np.asfortranarray(np.triu(np.asarray(state[f"outer_{i}"], np.float64)))
            new._fields[str(name)] = sums
        return new

    def covariance(self, field: str) -> np.ndarray:
        """The (units, units) covariance of ``field``, normalised by ``count - 1``."""
        count, total, outer = self._fields[field].numpy()
        if count == 0:
            raise IntroscopeError(f"field {field!r} has no samples")
        mean = total / count
        if count <= 1:
            return outer / count - np.outer(mean, mean)
        return outer / (count - 1) - np.outer(mean, total / (count - 1))

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


def _to_like(array: np.ndarray, like: Any) -> Any:
    import torch

    return torch.as_tensor(array, dtype=torch.float64, device=like.device)


def _torch_int_types() -> tuple[Any, ...]:
    import torch

    return (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)
