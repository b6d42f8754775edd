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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors.pfa import PFACovarianceState

from ._checks import at, check_responses, check_target_dimensions

__all__ = ["PCAFit", "PCAState"]

_KEY = "x"
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

    def transform(self, data: np.ndarray) -> np.ndarray:
        """Project (samples, features) data: ``(data - mean) @ components.T``.

        float32 data gives float32 projections (computed in float64), anything else float64.
        """
        x = np.asarray(data)
        out = (x.astype(np.float64, copy=False) - self.mean) @ self.components.T
        return out.astype(np.float32) if x.dtype == np.float32 else out


class PCAState:
    """Accumulator-style state of one field for exact streamed PCA.

    ``update`` folds in a (samples, features) batch (numpy, or a torch tensor, summed on its own
    device), ``merged`` combines two states of disjoint data without changing either,
    ``state_dict`` / ``from_state_dict`` hold numpy arrays and JSON scalars (no pickle), and
    ``result(k)`` gives the ``k`` leading principal components.

    Args:
        precision: ``"auto"`` (default) forms the products of float32 (and narrower) batches in
            float32 about a shift near the mean and sums them in float64 (covariance entries
            within about 1e-7 relative); ``"float64"`` forms every product in float64.
        name: the field's name, used in error messages.
    """

    mergeable: ClassVar[bool] = True
    """Merging two states is exact (up to float64 rounding) and associative."""
    passes: ClassVar[int] = 1
    """One pass over the data is enough."""
    grows_with: ClassVar[str] = "units"
    """The state is O(features^2): it does not grow with the number of samples."""

    def __init__(self, *, precision: str = "auto", name: str = "") -> None:
        if precision not in ("auto", "float64"):
            raise IntroscopeValueError(
                f"PCAState: precision must be 'auto' or 'float64', got {precision!r}"
            )
        self.precision = precision
        self.name = name
        self._sums = PFACovarianceState(precision=precision)
        self._features: int | None = None

    def _who(self) -> str:
        return f"PCAState({self.name!r})" if self.name else "PCAState"

    @property
    def count(self) -> int:
        """Number of samples folded in so far."""
        return self._sums.count(_KEY) if self._sums.fields else 0

    @property
    def features(self) -> int | None:
        """Number of features per sample (None before the first batch)."""
        return self._features

    @property
    def nbytes(self) -> int:
        """Approximate size of the state in bytes (the float64 sums)."""
        d = self.features or 0
        return 8 * (d * d + 2 * d + 1)

    def update(self, array: Any, *, where: str = "", _checked: bool = False) -> None:
        """Fold a (samples, features) batch into the state.

        ``where`` (e.g. "batch 3") is added to error messages.
        """
        torch_input = type(array).__module__.startswith("torch")
        if not (_checked or torch_input):
            array = check_responses(self._who(), self.name, array, where)
        shape = tuple(array.shape)
        if len(shape) != 2:
            raise IntroscopeValueError(
                f"{self._who()}: batch has shape {shape}{at(where)}; PCA needs 2-D responses "
                f"(samples, features): flatten or pool them first"
            )
        d = self._features
        if d is not None and shape[1] != d:
            raise IntroscopeValueError(
                f"{self._who()}: batch has {shape[1]} features{at(where)} but earlier batches "
                f"had {d}; every batch of a field must have the same number of features"
            )
        try:
            self._sums.update(_KEY, array, where=where)
        except IntroscopeError as exc:
            # torch input reaches the shared sums unchecked: their messages name field 'x'.
            raise IntroscopeValueError(
                f"{self._who()}: {str(exc).replace(repr(_KEY), repr(self.name))}"
            ) from exc
        self._features = shape[1]

    def merged(self, other: PCAState) -> PCAState:
        """A new state holding this state's data and ``other``'s (neither is changed)."""
        if not isinstance(other, PCAState):
            raise IntroscopeValueError(
                f"{self._who()}: can only merge another PCAState, got {type(other).__name__}"
            )
        mine, theirs = self.features, other.features
        if mine is not None and theirs is not None and mine != theirs:
            raise IntroscopeValueError(
                f"{self._who()}: cannot merge a state of {theirs} features into one of {mine}"
            )
        new = PCAState.from_state_dict(self.state_dict())
        # Reads other's sums without changing their values.
        new._sums.merge(other._sums)
        new._features = mine if mine is not None else theirs
        return new

    def state_dict(self) -> dict[str, Any]:
        """The state as numpy arrays and JSON scalars: ``count``, ``shift``, ``sum``, ``outer``.

        ``sum`` and ``outer`` are the float64 sums of ``x - shift`` and of its outer products
        (``outer`` is the full symmetric matrix).
        """
        out: dict[str, Any] = {
            "format": _FORMAT,
            "precision": self.precision,
            "name": self.name,
            "count": 0,
        }
        if self._sums.fields:
            inner = self._sums.state_dict()
            out["count"] = int(inner["count_0"])
            out["shift"] = np.asarray(inner["shift_0"], dtype=np.float64)
            out["sum"] = np.asarray(inner["sum_0"], dtype=np.float64)
            out["outer"] = np.asarray(inner["outer_0"], dtype=np.float64)
        return out

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PCAState:
        """Rebuild a state written by :meth:`state_dict` (values may be 0-d numpy arrays)."""
        fmt = str(np.asarray(state.get("format", _FORMAT)))
        if fmt != _FORMAT:
            raise IntroscopeValueError(
                f"PCAState.from_state_dict: unknown format {fmt!r}, expected {_FORMAT!r}"
            )
        new = cls(
            precision=str(np.asarray(state.get("precision", "auto"))),
            name=str(np.asarray(state.get("name", ""))),
        )
        if "sum" in state:
            total = np.asarray(state["sum"], dtype=np.float64)
            outer = np.asarray(state["outer"], dtype=np.float64)
            d = total.shape[0]
            if total.ndim != 1 or outer.shape != (d, d):
                raise IntroscopeValueError(
                    f"PCAState.from_state_dict: 'sum' has shape {total.shape} and 'outer' "
                    f"{outer.shape}; expected (d,) and (d, d)"
                )
            inner = {
                "fields": np.array([_KEY], dtype=np.str_),
                "precision": np.array(new.precision, dtype=np.str_),
                "count_0": np.array(int(np.asarray(state["count"])), dtype=np.int64),
                "shift_0": np.asarray(state.get("shift", np.zeros(d)), dtype=np.float64),
                "sum_0": total,
                "outer_0": outer,
            }
            new._sums = PFACovarianceState.from_state_dict(inner)
            new._features = d
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

    def result(self, target_dimensions: int) -> PCAFit:
        """The ``target_dimensions`` leading principal components of the data seen so far."""
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
        total_variance = float(np.trace(cov))
        # Only the k largest eigenpairs (ascending from scipy).
        values, vectors = eigh(cov, subset_by_index=(d - k, d - 1))
        values = np.maximum(values[::-1], 0.0)
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
