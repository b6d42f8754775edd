"""Streamed PCA as an accumulator of the contract: feed it anywhere, finish a DimensionReduction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors._accumulator import Accumulator

from ._checks import check_target_dimensions
from ._pca_state import PCAState

if TYPE_CHECKING:
    from ._dimension_reduction import DimensionReduction

__all__ = ["PCAAccumulator"]


class PCAAccumulator(Accumulator):
    """One ``PCAState`` per field; ``finalize()`` gives a fitted ``DimensionReduction``.

    The same sums as ``DimensionReduction.introspect(..., strategies=Strategy.PCA(k))``, fed by
    ``introscope.introspectors._accumulator.accumulate``, a PyTorch forward hook, a training
    loop or Ray workers; partial accumulators merge exactly (up to float64 rounding).

    Args:
        target_dimensions: principal components per field (``finalize`` may override it).
        precision: ``"auto"`` or ``"float64"``; see ``PCAState``.
    """

    owner = "DimensionReduction"
    field_kind = "field"
    state_type = PCAState

    def __init__(self, *, target_dimensions: int = 2, precision: str = "auto") -> None:
        self.target_dimensions = check_target_dimensions(
            "DimensionReduction.pca_accumulator", target_dimensions
        )
        PCAState(precision=precision)  # checks the value
        self.precision = precision
        super().__init__()

    def new_state(self, field: str, array: Any) -> PCAState:
        return PCAState(precision=self.precision, name=field)

    def config(self) -> dict[str, Any]:
        return {"target_dimensions": self.target_dimensions, "precision": self.precision}

    def _merge_key(self) -> dict[str, Any]:
        # The sums do not depend on how many components are taken from them.
        return {}

    def finalize(
        self, *, target_dimensions: int | None = None, warn_precision: bool = True
    ) -> DimensionReduction:
        """A ``DimensionReduction`` with one fitted PCA per field (``warn_precision``: see
        ``DimensionReduction.Strategy.PCA``)."""
        from ._dimension_reduction import DimensionReduction
        from ._strategies import PCA

        if not self._states:
            raise IntroscopeError(f"{self.owner}: the accumulator holds no data")
        k = self.target_dimensions if target_dimensions is None else target_dimensions
        reducers = {}
        for name, state in self._states.items():
            try:
                reducers[name] = PCA.from_state(
                    state,  # type: ignore[arg-type]
                    k,
                    warn_precision=warn_precision,
                )
            except (IntroscopeError, ValueError) as exc:
                raise IntroscopeValueError(f"{self.owner}: field {name!r}: {exc}") from exc
        return DimensionReduction(_reducers=reducers)
