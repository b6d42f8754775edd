"""Streamed, mergeable state for exact PCA of one field, and the decomposition it finishes with.

The state holds the sample count and float64 sums about a per-feature shift (the same sums as
PFA's covariance state, which it reuses: float32 products in float64 blocks for float32 data,
float64 otherwise), so its size is O(features^2) whatever the number of samples, and two states
of disjoint data merge to the state of their union (up to float64 rounding). The principal
components are the leading eigenvectors of the exact covariance; scikit-learn's ``PCA`` with
its ``covariance_eigh`` or ``full`` solver gives the same ones, whereas ``IncrementalPCA`` (what
DNIKit 2.0 streams with) only approximates them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from introscope._validation import check_choice, pooling_hint, user_stacklevel
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors._state_contract import Capabilities, State, StateError
from introscope.introspectors.pfa import PFACovarianceState

from ._checks import check_target_dimensions

__all__ = ["PCAFit", "PCAState"]

_FORMAT = "introscope.PCAState/1"


@dataclass(frozen=True)
class PCAFit:
    """The leading principal components of one field (scikit-learn's ``PCA`` attribute names)."""

    mean: np.ndarray
    """(features,) mean of the fitted samples (float64)."""

    components: np.ndarray
    """(target_dimensions, features) principal axes as rows, by decreasing variance; each row's
    entry of largest magnitude is positive (scikit-learn's sign convention)."""

    explained_variance: np.ndarray
    """(target_dimensions,) variance along each axis (eigenvalues of the covariance, ``n - 1``
    normalised)."""

    explained_variance_ratio: np.ndarray
    """(target_dimensions,) each axis's share of the total variance."""

    n_samples: int
    """Number of samples the fit saw."""

    def __post_init__(self) -> None:
        # (features, k) contiguous: a transposed view sends OpenBLAS down a path measured 8x
        # slower on a loaded 2-core machine.
        object.__setattr__(self, "_axes", np.ascontiguousarray(self.components.T))

    def transform(self, data: np.ndarray) -> np.ndarray:
        """Project (samples, features) data: ``(data - mean) @ components.T``.

        float32 data gives float32 projections (computed in float64), anything else float64.
        """
        x = np.asarray(data)
        out = (x.astype(np.float64, copy=False) - self.mean) @ self._axes  # type: ignore[attr-defined]
        return cast(np.ndarray, out.astype(np.float32) if x.dtype == np.float32 else out)


# PFA's streamed covariance sums (a State of the accumulator contract), reached through its
# public accumulator rather than its private module.
_Sums: Any = PFACovarianceState.state_type


class PCAState(State):
    """Accumulator-contract state of one field for exact streamed PCA.

    ``update`` folds in a (samples, features) batch (numpy, or a torch tensor, summed on its own
    device), ``merged`` combines two states of disjoint data without changing either,
    ``state_dict`` / ``from_state_dict`` hold numpy arrays and JSON scalars (no pickle), and
    ``result(target_dimensions=k)`` gives the ``k`` leading principal components. Its size is
    O(features^2), whatever the number of samples.

    Args:
        precision: ``"auto"`` (default) forms the products of float32 (and narrower) batches in
            float32 about a shift near the mean and sums them in float64 (covariance entries
            within about 1e-7 of the largest variance, so a component ``r`` times weaker than
            the first is off by about ``6e-8 * r`` relative, up to ~10x more for rows sorted by
            class; ``result`` warns above 1e-4); ``"float64"`` forms every product in float64.
        name: the field's name, used in the messages of ``result``.
    """

    capabilities = Capabilities(mergeable=True, exact=False, passes=1, grows_with=("units",))
    # The sums find NaN/Inf in their float64 column sums, without another pass.
    checks_finite = True

    def __init__(self, *, precision: str = "auto", name: str = "") -> None:
        check_choice(precision, "precision", ("auto", "float64"), owner="PCAState")
        self.precision = precision
        self.name = name
        self._sums: Any = None
        # Whether some products were formed in float32 (precision "auto", float32 or narrower
        # numpy batches: the dtypes PFACovarianceState multiplies in float32).
        self._float32_products = False

    def _who(self) -> str:
        return f"PCAState({self.name!r})" if self.name else "PCAState"

    @property
    def count(self) -> int:
        """Number of samples folded in so far."""
        return 0 if self._sums is None else int(self._sums.count)

    @property
    def features(self) -> int | None:
        """Number of features per sample (None before the first batch)."""
        return None if self._sums is None else int(self._sums.units)

    @property
    def nbytes(self) -> int:
        """Bytes of the sums (and of their staging buffers)."""
        return 0 if self._sums is None else int(self._sums.nbytes)

    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        """Fold a (samples, features) batch into the state; NaN/Inf always raise.

        Raises ``StateError`` (bad shape or dtype) or ``NonFiniteValues``, leaving
        the state unchanged.
        """
        torch_input = type(array).__module__.startswith("torch")
        shape = tuple(array.shape)
        if len(shape) != 2:
            hint = pooling_hint(shape) or "make it (samples, features) first"
            raise StateError(f"has shape {shape}; PCA needs 2-D responses: {hint}")
        if not torch_input:
            array = np.asarray(array)
            if array.dtype.kind not in "biuf":
                raise StateError(f"has dtype {array.dtype}; PCA needs real numbers")
        if self._sums is not None and shape[1] != self._sums.units:
            raise StateError(
                f"has {shape[1]} features, but earlier batches had {self._sums.units}; every "
                f"batch of a field must have the same number of features"
            )
        sums = self._sums
        if sums is None:
            _check_fits_in_memory(shape[1])
            sums = _Sums(shape[1], like=array if torch_input else None, precision=self.precision)
        sums.update(array)
        self._sums = sums
        if not torch_input and self.precision == "auto" and array.dtype.char in _FLOAT32_EXACT:
            self._float32_products = True
        return 0

    def merged(self, other: PCAState) -> PCAState:
        """A new state holding this state's data and ``other``'s (neither is changed)."""
        if not isinstance(other, PCAState):
            raise StateError(f"can only merge another PCAState, got {type(other).__name__}")
        new = PCAState(precision=self.precision, name=self.name)
        new._float32_products = self._float32_products or other._float32_products
        if self._sums is None or other._sums is None:
            source = self._sums if self._sums is not None else other._sums
            new._sums = None if source is None else source.copy()
            return new
        if self._sums.units != other._sums.units:
            raise StateError(
                f"cannot merge a state of {other._sums.units} features into one of "
                f"{self._sums.units}"
            )
        new._sums = self._sums.merged(other._sums)
        return new

    def state_dict(self) -> dict[str, Any]:
        """numpy arrays and JSON scalars: ``count``, ``shift``, ``sum``, ``outer``, settings.

        ``sum`` and ``outer`` are the float64 sums of ``x - shift`` and of its outer products
        (``outer`` is the full symmetric matrix).
        """
        out: dict[str, Any] = {
            "format": _FORMAT,
            "precision": self.precision,
            "name": self.name,
            "count": 0,
            "float32_products": self._float32_products,
        }
        if self._sums is not None:
            inner = self._sums.state_dict()
            out["count"] = int(inner["count"])
            out["sum"] = np.asarray(inner["sum"], dtype=np.float64)
            out["outer"] = np.asarray(inner["outer"], dtype=np.float64)
            out["shift"] = np.asarray(inner.get("shift", np.zeros_like(out["sum"])), np.float64)
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PCAState:
        """Rebuild a state written by ``state_dict`` (values may be 0-d numpy arrays)."""
        fmt = str(np.asarray(state.get("format", _FORMAT)))
        if fmt != _FORMAT:
            raise IntroscopeValueError(
                f"PCAState.from_state_dict: unknown format {fmt!r}, expected {_FORMAT!r}"
            )
        new = cls(
            precision=str(np.asarray(state.get("precision", "auto"))),
            name=str(np.asarray(state.get("name", ""))),
        )
        new._float32_products = bool(np.asarray(state.get("float32_products", False)))
        if "sum" in state:
            total = np.asarray(state["sum"], dtype=np.float64)
            outer = np.asarray(state["outer"], dtype=np.float64)
            d = total.shape[0] if total.ndim == 1 else -1
            if total.ndim != 1 or outer.shape != (d, d):
                raise IntroscopeValueError(
                    f"PCAState.from_state_dict: 'sum' has shape {total.shape} and 'outer' "
                    f"{outer.shape}; expected (d,) and (d, d)"
                )
            inner = {
                "count": int(np.asarray(state["count"])),
                "precision": new.precision,
                "sum": total,
                "outer": outer,
                "shift": np.asarray(state.get("shift", np.zeros(d)), dtype=np.float64),
            }
            new._sums = _Sums.from_state_dict(inner)
        return new

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """The float64 mean (features,) and covariance (features, features), ``n - 1``
        normalised."""
        state = self.state_dict()
        n = state["count"]
        if n == 0:
            raise IntroscopeError(f"{self._who()}: no samples were folded in")
        shift, total, cov = state["shift"], state["sum"], state["outer"]
        # The shift cancels: (S - T T^T / n) / (n - 1) with T, S the sums about it.
        cov /= max(n - 1, 1)
        cov -= np.outer(total / n, total / max(n - 1, 1))
        return shift + total / n, cov

    def result(
        self, target_dimensions: int = 2, *, warn_precision: bool = True, **options: Any
    ) -> PCAFit:
        """The ``target_dimensions`` leading principal components of the data seen so far.

        With ``warn_precision`` (default), warns when float32 products (``precision="auto"``
        on float32 data) leave the last kept component off by more than ~1e-4 relative
        (estimated as ``2**-24 * largest variance / its variance``).
        """
        who = self._who()
        k = check_target_dimensions(who, target_dimensions)
        d, n = self.features, self.count
        if d is None or n == 0:
            raise IntroscopeError(f"{who}: no samples were folded in; there is nothing to fit")
        if k > d:
            raise IntroscopeValueError(
                f"{who}: target_dimensions={k} exceeds the {d} features of the data; "
                f"ask for at most {d} dimensions"
            )
        if k > n:
            raise IntroscopeValueError(
                f"{who}: target_dimensions={k} exceeds the {n} samples fitted; PCA finds at "
                f"most as many components as samples: fit on more data or ask for at most {n}"
            )
        from scipy.linalg import eigh

        mean, cov = self.mean_and_covariance()
        _check_normal_range(who, mean, cov)
        total_variance = float(np.trace(cov))
        # Only the k largest eigenpairs (ascending from scipy).
        values, vectors = eigh(cov, subset_by_index=(d - k, d - 1))
        values = np.maximum(values[::-1], 0.0)
        if self._float32_products and warn_precision:
            _warn_float32_conditioning(who, values)
        components = np.ascontiguousarray(vectors[:, ::-1].T)
        # scikit-learn's sign rule (svd_flip on the rows of Vt): largest |entry| positive.
        biggest = components[np.arange(k), np.argmax(np.abs(components), axis=1)]
        components *= np.where(biggest < 0, -1.0, 1.0)[:, None]
        ratio = values / total_variance if total_variance > 0 else np.zeros_like(values)
        return PCAFit(
            mean=mean,
            components=components,
            explained_variance=values,
            explained_variance_ratio=ratio,
            n_samples=n,
        )


# float32 products (precision "auto") leave a component of variance v with relative errors of
# about 2**-24 * (largest variance) / v (measured within 3x of this, more when rows come sorted,
# e.g. by class); above this estimate, result() warns.
_FLOAT32_ERROR_WARN = 1e-4
_FLOAT32_EXACT = "?bBhHef"


def _warn_float32_conditioning(who: str, values: np.ndarray) -> None:
    """Warn when the float32 products cannot resolve the smallest kept component."""
    largest, smallest = float(values[0]), float(values[-1])
    if largest <= 0:
        return
    error = 2.0**-24 * largest / smallest if smallest > 0 else np.inf
    # At or beyond 1 the component's variance is at float32's rounding level of the largest:
    # a direction of (numerically) zero variance (fewer samples than components, a dead unit),
    # arbitrary in float64 too; no advice helps there.
    if _FLOAT32_ERROR_WARN < error < 1.0:
        k = len(values)
        warnings.warn(
            f"{who}: the first component's variance is "
            + f"{largest / smallest:.1e} times component {k}'s, so with precision='auto' (float32 products of float32 data) "
            f"the components can be off by about {error:.0e} relative (more when the "
            f"rows are sorted, e.g. by class); pass precision='float64' for exact components",
            stacklevel=user_stacklevel(),
        )


# Variances below this have squares near float64's subnormal range: the sums lose digits.
_TINY_VARIANCE = float(np.finfo(np.float64).tiny) * 2.0**20


def _check_normal_range(who: str, mean: np.ndarray, cov: np.ndarray) -> None:
    """Refuse a covariance whose every variance lies where float64 squares lose precision:
    tiny variances, or none at all from data whose values are tiny but not zero (their squares
    all underflowed). Zero variance from zeros or from constants of normal size is data."""
    largest = float(np.max(np.diagonal(cov))) if cov.size else 0.0
    magnitude = float(np.max(np.abs(mean))) if mean.size else 0.0
    if 0.0 < largest < _TINY_VARIANCE or (
        largest == 0.0 and 0.0 < magnitude < np.sqrt(_TINY_VARIANCE)
    ):
        raise IntroscopeError(
            f"{who}: the data's largest variance is {largest:.3g}, so small that float64 "
            f"squares of it lose precision (below ~{_TINY_VARIANCE:.0e}) and the components would "
            f"be wrong; multiply the responses by a constant (e.g. 2.0**500) before fitting: the "
            f"components do not change"
        )


#: Above this many features the exact PCA's final eigen-decomposition can take minutes.
_WIDE = 8192


def _check_fits_in_memory(features: int) -> None:
    """Refuse a (features x features) covariance that would take over half the memory; warn
    (once per field, when its sums are made) above ``_WIDE`` features."""
    need = 3 * 8 * features * features  # the float64 sums, a product buffer, a copy to solve
    try:
        import os

        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX
        memory = None
    if memory is not None and need > memory // 2:
        raise StateError(
            f"has {features:,} features: exact streamed PCA keeps {features:,} x {features:,} "
            f"covariance sums (~{need / 2**30:,.0f} GiB) and this machine has "
            f"{memory / 2**30:,.0f} GiB; use DimensionReduction.Strategy.StandardPCA(k) "
            f"(scikit-learn's PCA on the rows, memory O(samples x features)), or reduce the "
            f"features first (introscope.processors.Pooler)"
        )
    if features > _WIDE:
        warnings.warn(
            f"PCA: {features:,} features: exact streamed PCA keeps {features:,} x {features:,} "
            f"covariance sums (~{need / 2**30:,.1f} GiB) and ends with an eigen-decomposition of "
            f"that size, which can take minutes; DimensionReduction.Strategy.StandardPCA(k) "
            f"(scikit-learn's PCA on the rows) or fewer features (introscope.processors.Pooler) "
            f"may be faster",
            stacklevel=user_stacklevel(),
        )
