"""``Pooler``: reduce fields over chosen dimensions with max, sum or mean."""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeAlias, cast

import numpy as np

from introscope._validation import user_stacklevel
from introscope.base import ResponseInfo
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone, OneOrMany

from ._base import Processor

__all__ = ["Pooler"]


class _Method(enum.Enum):
    """How [`Pooler`][introscope.processors.Pooler] reduces."""

    MAX = enum.auto()
    SUM = enum.auto()
    AVERAGE = enum.auto()


_REDUCERS: dict[_Method, Callable[..., Any]] = {
    _Method.MAX: np.max,
    _Method.SUM: np.sum,
    _Method.AVERAGE: np.mean,
}


class Pooler(Processor):
    """Pools fields over dimension(s) ``dim`` with ``method`` (``Pooler.Method.MAX``, ``SUM`` or
    ``AVERAGE``); spatial pooling is ``dim=(2, 3)`` for ``NCHW`` responses (PyTorch, ONNX) and
    ``dim=(1, 2)`` for ``NHWC`` ones (Keras).

    Args:
        dim: dimension(s) to pool; never 0 (the batch). Negative values count from the end.
            PyTorch and ONNX responses are channels-first: their positions are ``dim=(2, 3)``.
        method: a ``Pooler.Method`` (or its name, e.g. ``"max"``).
        fields: the fields to pool (all by default).
        response_infos: the model's ``response_infos``; then pooling a field's channel axis
            (``ResponseInfo.channel_axis``) warns, once per field.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Pooler
        >>> responses = Batch({"conv": np.arange(16.0).reshape(1, 1, 4, 4)})  # NCHW: 1 channel, 4x4
        >>> pool = Pooler(dim=(2, 3), method=Pooler.Method.MAX)
        >>> peek_first_batch(pipeline(producer_from_batches(responses), pool), 1).fields["conv"]
        array([[15.]])
    """

    Method: TypeAlias = _Method
    _needs_numbers = True
    _func: Callable[..., Any]  # a numpy reducer: called with axis=

    def __init__(
        self,
        dim: OneOrMany[int],
        method: _Method | str,
        *,
        fields: OneManyOrNone[str] = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
    ) -> None:
        items = [dim] if isinstance(dim, (int, np.integer)) else dim
        if not isinstance(items, Collection) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in items
        ):
            raise TypeError(f"Pooler: dim must be an int or a collection of ints, got {dim!r}")
        dims = tuple(int(d) for d in items)
        if not dims:
            raise IntroscopeValueError("Pooler: dim must name at least one dimension")
        if 0 in dims:
            raise IntroscopeValueError("Pooler: cannot pool dimension 0 (the batch dimension)")
        if isinstance(method, str):
            try:
                method = _Method[method.upper()]
            except KeyError:
                raise IntroscopeValueError(
                    f"Pooler: unknown method {method!r}; use one of {[m.name for m in _Method]}"
                ) from None
        if not isinstance(method, _Method):
            raise TypeError(f"Pooler: method must be a Pooler.Method, got {method!r}")
        self.dim = dims
        self.method = method
        self._infos = response_infos
        self._warned: set[str] = set()
        super().__init__(_REDUCERS[method], fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        ndim = array.ndim
        axes = set()
        for d in self.dim:
            if not -ndim <= d < ndim:
                raise IntroscopeError(
                    f"Pooler: dim={self.dim} is out of range for field {name!r} of shape "
                    f"{array.shape}"
                )
            axes.add(d % ndim)
        if 0 in axes:
            raise IntroscopeError(
                f"Pooler: dim={self.dim} would pool dimension 0 (the batch) of field {name!r} "
                f"of shape {array.shape}"
            )
        self._check_channels(name, ndim, axes)
        return cast(np.ndarray, self._func(array, axis=tuple(sorted(axes))))

    def _check_channels(self, name: str, ndim: int, axes: set[int]) -> None:
        info = self._infos.get(name) if self._infos is not None else None
        axis = getattr(info, "channel_axis", None)
        if axis is None or name in self._warned or axis % ndim not in axes:
            return
        self._warned.add(name)
        positions = tuple(d for d in range(1, ndim) if d != axis % ndim)
        warnings.warn(
            f"Pooler: dim={self.dim} pools dimension {axis % ndim} of field {name!r}, which its "
            f"ResponseInfo marks as the channels (channel_axis={axis}), so the channels are "
            f"reduced away; to pool the positions and keep one value per channel use "
            f"dim={positions}",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
