"""Streaming, mergeable covariance of 2-D responses, and its eigen-decomposition.

The state per field is the sample count ``n``, a per-unit shift ``s`` and two float64 sums about
it, ``T = sum(x - s)`` and ``S = sum((x - s)(x - s)^T)``. The covariance
``(S - T T^T / n) / (n - 1)`` does not depend on ``s``. The shift is the column mean of the
first batch (of its first 256 rows at most) rounded to a short float32 (few significant bits)
within half its standard deviation (see ``_sums_math.choose_shift``), so ``S`` stays at the
scale of the variance and nothing cancels when the mean is large compared with the spread. ``merge`` re-expresses the other
state's sums about this state's shift (``T + n d`` and ``S + T d^T + d T^T + n d d^T`` with
``d = s_other - s``), so shards and workers merge to the one-pass covariance (up to float64
rounding).

Precision. With ``precision="auto"`` (the default) batches that float32 holds exactly (float32,
float16, bool, 8/16-bit integers) are staged as float32 ``x - s`` in blocks of about 4 MiB, or
the size of the float64 state above ~724 units (``b`` rows, 2048 for 512 and for 1024 units);
each block's Gram matrix is one float32 product ``block.T @ block`` (numpy's BLAS) added to the
float64 ``S``. Where every unit of the first batch lies within one standard deviation of zero
(ReLU-like layers; constant units exactly 0), at most 256 units, the shift is zero and batches of
1,024 rows or more are their own blocks (no staging copy; ``Q_ii`` at most twice the variance). DNIKit also multiplies float32 responses in float32 (per batch, about zero). An entry of the covariance is then within ``(b + 4) u sqrt(Q_ii Q_jj)`` of
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
from typing import Any, ClassVar, cast

import numpy as np

from introscope._validation import check_tolerance, pooling_hint, user_stacklevel
from introscope.exceptions import IntroscopeError, IntroscopeValueError

from .._accumulator import Accumulator, StateError, repeat_renames
from .._npz import HEADER_KEY
from .._state_contract import host_array, is_torch_tensor
from ._field_sums import PRECISIONS, FieldSums

__all__ = ["PFACovariancesResult", "PFACovarianceState"]

_logger = logging.getLogger("introscope.introspectors.pfa")


class _PendingEigenvectors:
    """Stands for the eigenvectors of a covariance until they are first read."""

    __slots__ = ("cov",)

    def __init__(self, cov: np.ndarray) -> None:
        self.cov = cov

    def compute(self) -> np.ndarray:
        return np.linalg.eigh(self.cov)[1][:, ::-1]

    def __repr__(self) -> str:
        return "<eigenvectors, computed when first read>"


def eigh_eigenvalues(result: PFACovariancesResult) -> np.ndarray:
    """``result``'s eigenvalues as DNIKit computes them (``eigh``, clipped at 0, descending).

    ``eigvalsh`` (what ``make_covariance_result`` uses: no vectors, ~3x cheaper) and ``eigh``
    run different LAPACK algorithms, whose eigenvalues differ in the last bits. Where such bits
    decide a count (Size's threshold is one of the cumulative ratios), use these. The vectors
    ``eigh`` also gives are kept as the result's eigenvectors when those were not computed yet.
    """
    values, vectors = np.linalg.eigh(result.covariances)
    if type(object.__getattribute__(result, "eigenvectors")) is _PendingEigenvectors:
        object.__setattr__(result, "eigenvectors", vectors[:, ::-1])
    return cast(np.ndarray, np.maximum(0.0, values)[::-1])


@dataclass(frozen=True)
class PFACovariancesResult:
    """A layer's response covariance, its spectrum and its inactive units.

    Examples:
        >>> import numpy as np
        >>> from introscope.introspectors import PFACovariancesResult
        >>> cov = np.diag([4.0, 1.0, 0.0])  # unit 2 never varies
        >>> result = PFACovariancesResult.make_covariance_result(covariances=cov)
        >>> result.eigenvalues, result.inactive_units
        (array([4., 1., 0.]), array([2]))
    """

    covariances: np.ndarray
    """The (units, units) covariance matrix (normalised by ``count - 1``)."""

    eigenvalues: np.ndarray
    """Eigenvalues of ``covariances``, descending, clipped at zero."""

    eigenvectors: np.ndarray
    """Eigenvectors as columns, in the order of ``eigenvalues`` (DNIKit 2.0 reverses the rows of
    ``eigh``'s matrix instead, so its columns are neither in that order nor eigenvectors).
    Computed on first access: no recipe needs them."""

    original_output_count: int
    """Number of units (features) in the response."""

    inactive_units: np.ndarray
    """Indices (ascending) of units whose variance is below ``epsilon_inactive * max variance``."""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name == "eigenvectors" and type(value) is _PendingEigenvectors:
            # No recipe needs the eigenvectors; eigh with vectors costs 3x eigvalsh (0.20 s
            # vs 0.07 s at 1,024 units), so they are computed on first access only.
            value = value.compute()
            object.__setattr__(self, "eigenvectors", value)
        return value

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
        # eigvalsh reads one triangle only; eigenvalues of a PSD matrix that come out slightly
        # negative are rounding noise, hence the clip. The eigenvectors wait until read.
        values = np.maximum(np.linalg.eigvalsh(cov), 0.0)[::-1]
        var = np.abs(np.diag(cov))
        inactive = np.flatnonzero(var < epsilon_inactive * np.max(var)).astype(int)
        return PFACovariancesResult(
            covariances=cov,
            eigenvalues=values,
            eigenvectors=_PendingEigenvectors(cov),  # type: ignore[arg-type]
            original_output_count=int(cov.shape[0]),
            inactive_units=inactive,
        )


class PFACovarianceState(Accumulator):
    """Accumulator of per-field response covariances (PFA's state): ``update``, ``merge``,
    ``finalize() -> PFA``.

    Feed it numpy arrays or torch tensors of shape (samples, units); torch tensors are summed on
    their own device in float64 (for example from a forward hook) and moved to the host only at
    ``finalize``. Each field's state is a ``_field_sums.FieldSums``.

    Args:
        precision: ``"auto"`` (default) forms the products of float32, float16, bool and
            8/16-bit integer batches in float32 about a per-unit shift and accumulates them in
            float64; ``"float64"`` forms every product in float64 (twice the arithmetic).
            float64 and 32/64-bit integer batches, and torch state, always use float64.
        epsilon_inactive: the default of ``finalize``: a unit is inactive when its
            variance is below this times the largest variance of its layer.
    """

    owner = "PFA"
    state_type = FieldSums
    #: The result class ``finalize`` builds (``PFA``; set by ``pfa/_pfa.py``, which depends
    #: on this module, so that this module need not import it).
    result_type: ClassVar[Any] = None

    def __init__(self, *, precision: str = "auto", epsilon_inactive: float = 1e-8) -> None:
        if precision not in PRECISIONS:
            raise IntroscopeValueError(
                f"PFA: precision must be one of {PRECISIONS}, got {precision!r}"
            )
        self.precision = precision
        self.epsilon_inactive = check_tolerance(epsilon_inactive, "epsilon_inactive", owner="PFA")
        super().__init__()

    # ------------------------------------------------------------------ contract
    def new_state(self, field: str, array: Any) -> FieldSums:
        shape = tuple(array.shape)
        if len(shape) != 2:
            raise StateError(
                f"has shape {shape}; PFA needs 2-D responses (samples, units): "
                + pooling_hint(shape)
            )
        if shape[1] == 0:
            raise StateError(
                f"has shape {shape}: no units to analyse; PFA needs at least one unit per sample"
            )
        like = array if is_torch_tensor(array) else None
        return FieldSums(shape[1], like=like, precision=self.precision)

    def config(self) -> dict[str, Any]:
        return {"precision": self.precision, "epsilon_inactive": self.epsilon_inactive}

    def _merge_key(self) -> dict[str, Any]:
        # Sums merge whatever precision formed their products; the finishing threshold is part
        # of the result, so two states must agree on it (else the merge order would pick it).
        return {"epsilon_inactive": self.epsilon_inactive}

    def count(self, field: str) -> int:
        """Number of samples accumulated for ``field``."""
        return cast("FieldSums", self._states[field]).count

    def merge(self, other: PFACovarianceState) -> PFACovarianceState:
        """A new state: this one's data followed by ``other``'s (both inputs unchanged), as
        every accumulator's ``merge``; ``absorb`` adds ``other`` into this state instead."""
        return self.merged(other)

    def absorb(self, other: PFACovarianceState) -> PFACovarianceState:
        """Add ``other``'s sums (computed on disjoint data) into this state; returns ``self``.

        ``other``'s sums are re-expressed about this state's shift first (exact up to float64
        rounding), so states started on different data merge to the one-pass covariance. No
        copy of this state's matrices: for a merge tree whose intermediate states are its own.
        """
        if not isinstance(other, PFACovarianceState):
            raise TypeError(f"can only merge a PFACovarianceState, got {type(other).__name__}")
        self._check_whole()
        other._check_whole()
        mine, theirs = self._merge_key(), other._merge_key()
        if mine != theirs:
            raise IntroscopeValueError(
                f"PFA: cannot merge analyses with different settings {mine} and {theirs}; "
                f"merge only analyses made with the same arguments"
            )
        # A plain ``name`` on one side is the first call of the other side's ``name#0``, ...
        # (see ``repeat_renames``): this state is renamed in place, ``other`` is left as it is.
        mine_as, theirs_as = repeat_renames(self._states, other._states)
        for old, new in mine_as.items():
            self.rename_field(old, new)
        for name, their_sums in other._states.items():
            field = theirs_as.get(name, name)
            my_sums = self._states.get(field)
            try:
                if my_sums is None:
                    self._states[field] = their_sums.copy()
                else:
                    cast("FieldSums", my_sums).absorb(cast("FieldSums", their_sums))
            except StateError as exc:
                raise type(exc)(f"PFA: cannot merge response {field!r}: {exc}") from None
        self._batches += other._batches
        self._changed()
        return self

    def merged(self, other: PFACovarianceState) -> PFACovarianceState:
        """A new state: this one's data followed by ``other``'s (inputs unchanged)."""
        out = self.spawn()
        out._field_set = self._field_set
        return out.absorb(self).absorb(other)

    # ------------------------------------------------------------------ flat state dict
    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as flat arrays (for ``np.savez``; no pickle needed).

        ``fields``, ``precision``, ``epsilon_inactive``, and per field ``i``: ``count_i``,
        ``shift_i`` and the float64 sums about the shift ``sum_i`` and ``outer_i`` (full
        symmetric matrix).

        Beside a PyTorch checkpoint, keep the state in its own file (``state.save(path)``, then
        ``PFACovarianceState.load(path)``). Inside one, ``torch.load``'s default
        (``weights_only=True``) refuses numpy arrays: store ``v.tolist()`` for the string
        entries and ``torch.tensor(v)`` for the others; ``from_state_dict`` takes them back
        (see ``Accumulator.state_dict``).
        """
        out: dict[str, np.ndarray] = {
            "fields": np.array(self.fields, dtype=np.str_),
            "precision": np.array(self.precision, dtype=np.str_),
            "epsilon_inactive": np.array(self.epsilon_inactive),
        }
        for i, sums in enumerate(self._states.values()):
            count, shift, total, outer = sums.numpy()  # type: ignore[attr-defined]
            out[f"count_{i}"] = np.array(count, dtype=np.int64)
            out[f"shift_{i}"] = shift
            out[f"sum_{i}"] = total
            out[f"outer_{i}"] = outer
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PFACovarianceState:
        """Rebuild a state written by ``state_dict`` (no ``shift_i``: sums about zero).

        Also reads the generic layout of ``Accumulator.state_dict``. The values may be torch
        tensors and the strings Python ``str`` or lists of them (a state kept in a torch
        checkpoint, as ``torch.load`` gives it back).
        """
        if HEADER_KEY in state:
            return super().from_state_dict(state)
        state = {k: host_array(v) for k, v in state.items()}
        precision = str(np.asarray(state["precision"])) if "precision" in state else "auto"
        eps = float(np.asarray(state["epsilon_inactive"])) if "epsilon_inactive" in state else 1e-8
        new = cls(precision=precision, epsilon_inactive=eps)
        for i, name in enumerate(np.asarray(state["fields"]).reshape(-1).tolist()):
            part = {
                "count": state[f"count_{i}"],
                "sum": state[f"sum_{i}"],
                "outer": state[f"outer_{i}"],
                "precision": precision,
            }
            if f"shift_{i}" in state:
                part["shift"] = state[f"shift_{i}"]
            new._states[str(name)] = FieldSums.from_state_dict(part)
        return new

    # ------------------------------------------------------------------ finishing
    def covariance(self, field: str) -> np.ndarray:
        """The (units, units) covariance of ``field``, normalised by ``count - 1``."""
        try:
            return cast(np.ndarray, self._states[field].result())
        except StateError as exc:
            raise IntroscopeValueError(f"PFA: response {field!r} {exc}") from None

    def covariance_results(
        self, *, epsilon_inactive: float | None = None, fields: Iterable[str] | None = None
    ) -> tuple[dict[str, PFACovariancesResult], list[str]]:
        """Covariance results per field, and the fields with fewer samples than units.

        A failed field is reported with a warning (not an exception), as DNIKit does.
        """
        self._check_whole()
        eps = self.epsilon_inactive if epsilon_inactive is None else epsilon_inactive
        results: dict[str, PFACovariancesResult] = {}
        failed: list[str] = []
        for field in self.fields if fields is None else fields:
            sums = self._states[field]
            if sums.count < sums.units:  # type: ignore[attr-defined]
                warnings.warn(
                    f"PFA: field {field!r} has fewer samples than units (samples, units) = "
                    f"({sums.count}, {sums.units}); its covariance is not computed and it is "  # type: ignore[attr-defined]
                    f"listed in failed_responses",
                    stacklevel=user_stacklevel(),
                )
                failed.append(field)
                continue
            cov = self.covariance(field)
            if not np.all(np.isfinite(cov)):
                # Every batch was finite (updates check): the sums overflowed float64.
                raise IntroscopeValueError(
                    f"PFA: the covariance of response {field!r} overflows float64 (responses "
                    f"of magnitude above ~1e154); rescale the responses first"
                )
            results[field] = PFACovariancesResult.make_covariance_result(
                covariances=cov, epsilon_inactive=eps
            )
            _logger.debug(
                "PFA field %r: %d units, %d inactive",
                field,
                sums.units,  # type: ignore[attr-defined]
                results[field].inactive_units.size,
            )
        return results, failed

    def finalize(self, *, epsilon_inactive: float | None = None) -> Any:
        """The ``PFA`` of everything accumulated (``epsilon_inactive``: see the class)."""
        return self.result_type.from_state(self, epsilon_inactive=epsilon_inactive)
