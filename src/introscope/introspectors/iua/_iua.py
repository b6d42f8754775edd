"""Inactive Unit Analysis: how often each unit of each response is (numerically) zero."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from introscope._progress import progress
from introscope.base import Producer, ResponseInfo
from introscope.base._model import unknown_name_error
from introscope.base._producer import checked_batches
from introscope.exceptions import IntroscopeError

from ._channels import ChannelAxisArg, resolve_channel_axis
from ._kernel import count_batch, work_dtype
from ._result import IUAResult
from ._state import FieldState

if TYPE_CHECKING:
    from ._torch_monitor import IUAMonitor

__all__ = ["IUA"]

NonFinite = Literal["raise", "warn"]


class _VisType:
    """How :meth:`IUA.show` presents results."""

    CHART: Final = "chart"
    """A heatmap of per-unit inactive proportions, one panel per response."""
    TABLE: Final = "table"
    """A pandas DataFrame, one row per response."""


def _check_tolerance(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise IntroscopeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise IntroscopeError(f"{name} must be finite and >= 0, got {value!r}")
    return value


class IUA:
    """Inactive Unit Analysis: per response, how many units are inactive (close to 0) and how often.

    ``IUA.introspect(producer)`` returns an ``IUA``; its :attr:`results` map each response name to
    an :class:`IUA.Result`. An ``IUA`` is also an accumulator: ``update(field, array)`` folds in
    one batch, ``merge(other)`` combines two analyses of disjoint data exactly. The state is
    O(units) counters per response plus one small integer per sample (and per sample per channel
    view); nothing else grows with the data.

    Args:
        rtol: relative tolerance of ``numpy.isclose``; against 0 it has no effect.
        atol: a value ``x`` is inactive when ``|x| <= atol`` (``numpy.isclose(x, 0, rtol, atol)``).
        channel_axis: ``None``; an axis (counted with the batch axis, 1 for PyTorch's NCHW, -1
            for Keras' NHWC) for every response with spatial positions; or a mapping response name
            -> axis. Adds a per-channel view (:attr:`channel_results`): a channel is inactive for
            a sample when all its positions are.
        response_infos: the model's ``ResponseInfo`` mapping; for responses that
            ``channel_axis`` does not name, convolution-like layers get their channel axis from it.
        nonfinite: ``"raise"`` (default): a NaN or Inf in a response raises, naming the response
            and batch; ``"warn"``: it warns, counts the value as active (as ``numpy.isclose``
            does) and reports the number per response in ``IUA.Result.nonfinite``.
    """

    Result = IUAResult
    VisType = _VisType

    def __init__(
        self,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
        nonfinite: NonFinite = "raise",
    ) -> None:
        self.rtol = _check_tolerance("rtol", rtol)
        self.atol = _check_tolerance("atol", atol)
        if nonfinite not in ("raise", "warn"):
            raise IntroscopeError(f'nonfinite must be "raise" or "warn", got {nonfinite!r}')
        self.nonfinite_policy: NonFinite = nonfinite
        self._channel_axis = channel_axis
        self._response_infos = response_infos
        self._fields: dict[str, FieldState] = {}
        self._cache: dict[str, Any] = {}
        self._warn_each = True

    # ------------------------------------------------------------------ accumulator
    def update(self, field: str, array: np.ndarray, *, _where: str = "") -> None:
        """Fold one batch of responses of ``field`` (shape (batch, ...)) into the state."""
        where = _where or "update()"
        arr = np.asarray(array)
        wdt = work_dtype(arr.dtype)
        if wdt is None:
            raise IntroscopeError(
                f"IUA: response {field!r} ({where}) has dtype {arr.dtype}; "
                f"IUA needs numeric responses (float, complex, int or bool)"
            )
        if arr.ndim < 1:
            raise IntroscopeError(f"IUA: response {field!r} ({where}) has no batch dimension")
        unit_shape = tuple(int(d) for d in arr.shape[1:])
        state = self._fields.get(field)
        if state is None:
            axis = resolve_channel_axis(
                field, tuple(arr.shape), self._channel_axis, self._response_infos
            )
            state = FieldState(field, unit_shape, arr.dtype.kind, axis)
        elif state.unit_shape != unit_shape:
            raise IntroscopeError(
                f"IUA: response {field!r} ({where}) has units of shape {unit_shape}, but earlier "
                f"batches had {state.unit_shape}; every batch must have the same shape after dim 0"
            )
        flat = arr.reshape(arr.shape[0], -1)
        counts = count_batch(flat, self.atol, state.channel_split())
        if counts.nonfinite:
            msg = (
                f"IUA: response {field!r} ({where}) has {counts.nonfinite} NaN or Inf values "
                f"out of {flat.size}"
            )
            if self.nonfinite_policy == "raise":
                raise IntroscopeError(
                    msg + '; fix the model or data, or pass nonfinite="warn" to count them '
                    "as active and report how many"
                )
            if self._warn_each and state.nonfinite == 0:
                warnings.warn(
                    msg + "; counted as active (see IUA.Result.nonfinite)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        state.add(counts)
        self._fields[field] = state
        self._cache.clear()

    def merge(self, other: IUA) -> IUA:
        """A new IUA equal to the analysis of this one's data followed by ``other``'s."""
        if not isinstance(other, IUA):
            raise TypeError(f"can only merge an IUA with an IUA, got {type(other).__name__}")
        if (self.rtol, self.atol) != (other.rtol, other.atol):
            raise IntroscopeError(
                f"cannot merge IUA analyses with different tolerances: "
                f"(rtol, atol) = {(self.rtol, self.atol)} and {(other.rtol, other.atol)}"
            )
        out = IUA(
            rtol=self.rtol,
            atol=self.atol,
            channel_axis=self._channel_axis,
            response_infos=self._response_infos,
            nonfinite=self.nonfinite_policy,
        )
        for name in dict.fromkeys([*self._fields, *other._fields]):
            mine, theirs = self._fields.get(name), other._fields.get(name)
            if mine is not None and theirs is not None:
                out._fields[name] = mine.merged(theirs)
            else:
                # A copy: later updates of either input must not reach the merged analysis.
                out._fields[name] = (mine if mine is not None else theirs).copy()  # type: ignore[union-attr]
        return out

    @property
    def state_nbytes(self) -> int:
        """Bytes of state held (counters plus the per-sample integer arrays)."""
        return sum(s.nbytes for s in self._fields.values())

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> Mapping[str, IUAResult]:
        """Per response: :class:`IUA.Result` over its units."""
        if "units" not in self._cache:
            self._cache["units"] = {
                name: IUAResult.from_counts(
                    s.units.per_sample.view(), s.units.counts, s.unit_shape, s.nonfinite
                )
                for name, s in self._fields.items()
            }
        return self._cache["units"]

    @property
    def channel_results(self) -> Mapping[str, IUAResult]:
        """Per response with a channel axis: :class:`IUA.Result` over its channels.

        A channel is inactive for a sample when all its positions are; unit arrays have shape
        (channels,).
        """
        if "channels" not in self._cache:
            self._cache["channels"] = {
                name: IUAResult.from_counts(
                    s.channels.per_sample.view(), s.channels.counts, s.channels.shape, s.nonfinite
                )
                for name, s in self._fields.items()
                if s.channels is not None
            }
        return self._cache["channels"]

    def channel_axis(self, response: str) -> int | None:
        """Channel axis of ``response`` in its unit shape (batch axis dropped), or None."""
        return self._fields[response].channel_axis

    def summary(self, dead_fraction: float = 0.99) -> list[dict[str, Any]]:
        """One dict per response (sorted): sizes, mean/std inactive, dead and mostly-dead counts."""
        if not 0.0 < dead_fraction <= 1.0:
            raise ValueError(f"dead_fraction must be in (0, 1], got {dead_fraction!r}")
        rows = []
        channel_results = self.channel_results
        for name, res in sorted(self.results.items()):
            row: dict[str, Any] = {
                "response": name,
                "shape": self._fields[name].unit_shape,
                "samples": res.num_samples,
                "units": res.num_units,
                "mean inactive": res.mean_inactive,
                "std inactive": res.std_inactive,
                "dead units": res.dead_units(1.0),
                "mostly dead units": res.dead_units(dead_fraction),
                "dead fraction": dead_fraction,
                "nonfinite": res.nonfinite,
                "channels": None,
            }
            ch = channel_results.get(name)
            if ch is not None:
                row["channels"] = ch.num_units
                row["mean inactive channels"] = ch.mean_inactive
                row["dead channels"] = ch.dead_units(1.0)
                row["mostly dead channels"] = ch.dead_units(dead_fraction)
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ drivers
    @classmethod
    def introspect(
        cls,
        producer: Producer,
        *,
        batch_size: int = 32,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
        nonfinite: NonFinite = "raise",
    ) -> IUA:
        """Analyse every field of every batch of ``producer``; see :class:`IUA` for arguments."""
        iua = cls(
            rtol=rtol,
            atol=atol,
            channel_axis=channel_axis,
            response_infos=response_infos,
            nonfinite=nonfinite,
        )
        iua._warn_each = False
        names: list[str] | None = None
        batches = checked_batches(producer, batch_size, what="IUA producer")
        for index, batch in enumerate(progress(batches, "IUA")):
            current = list(batch.fields)
            if not current:
                raise IntroscopeError(
                    f"IUA: batch {index} has no fields; IUA needs model responses "
                    f"(pipeline the producer through a model first)"
                )
            if names is None:
                names = current
            elif set(current) != set(names):
                raise IntroscopeError(
                    f"IUA: batch {index} has fields {sorted(current)}, earlier batches had "
                    f"{sorted(names)}; every batch must carry the same responses"
                )
            for name, arr in batch.fields.items():
                iua.update(name, arr, _where=f"batch {index}")
        iua._warn_each = True
        bad = {n: s.nonfinite for n, s in iua._fields.items() if s.nonfinite}
        if bad:
            detail = ", ".join(f"{n!r}: {c}" for n, c in bad.items())
            warnings.warn(
                f"IUA: NaN or Inf values counted as active (see IUA.Result.nonfinite): {detail}",
                RuntimeWarning,
                stacklevel=2,
            )
        return iua

    @staticmethod
    def monitor(
        model: Any,
        layers: str | Iterable[Any] | None = None,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: int | None = 1,
        nonfinite: NonFinite = "raise",
    ) -> IUAMonitor:
        """Watch modules of a ``torch.nn.Module`` with forward hooks; use as a context manager.

        ``layers``: module names (as in ``model.named_modules()``) or modules; None means every
        ReLU-like activation module. Counting runs on the model's device, in evaluation and in
        training; ``monitor.result`` is an :class:`IUA` of everything seen so far.
        ``channel_axis=1`` (PyTorch's NCHW) gives outputs with 3+ dimensions a channel view; pass
        None for models whose outputs are not channels-first (e.g. (batch, tokens, features)).
        """
        from ._torch_monitor import IUAMonitor

        return IUAMonitor(
            model, layers, rtol=rtol, atol=atol, channel_axis=channel_axis, nonfinite=nonfinite
        )

    @staticmethod
    def _resolve_names(iua: IUA, response_names: str | Sequence[str] | None) -> list[str]:
        known = list(iua.results)
        if response_names is None:
            names = known
        else:
            names = [response_names] if isinstance(response_names, str) else list(response_names)
            unknown = [n for n in names if n not in iua.results]
            if unknown:
                raise ValueError(str(unknown_name_error("response", unknown, known)))
        if not names:
            raise ValueError(
                "no response to show: response_names is empty (pass None to show every response)"
            )
        return sorted(dict.fromkeys(names))

    @staticmethod
    def show(
        iua: IUA,
        *,
        vis_type: str = VisType.TABLE,
        response_names: str | Sequence[str] | None = None,
        dead_fraction: float = 0.99,
    ) -> Any:
        """A pandas DataFrame (``VisType.TABLE``) or matplotlib heatmap axes (``VisType.CHART``).

        The table has DNIKit's columns ``response``, ``mean inactive``, ``std inactive`` (sorted
        by response) followed by unit counts, dead units (inactive for every sample) and units
        inactive for at least ``dead_fraction`` of the samples, as counts and percentages, and the
        same for channels where there is a channel view. The chart has one labelled panel per
        response (an array of axes for several).
        """
        if not isinstance(iua, IUA):
            raise TypeError(f"IUA.show expects the IUA returned by IUA.introspect, got {iua!r}")
        names = IUA._resolve_names(iua, response_names)
        if vis_type == IUA.VisType.TABLE:
            from introscope.viz._iua import iua_table

            return iua_table([r for r in iua.summary(dead_fraction) if r["response"] in names])
        if vis_type == IUA.VisType.CHART:
            from introscope.viz._iua import iua_chart

            panels = []
            for row in iua.summary(dead_fraction):
                if row["response"] in names:
                    name = row["response"]
                    prop = iua.results[name].unit_inactive_proportion
                    panels.append((row, prop, iua.channel_axis(name)))
            return iua_chart(panels)
        raise ValueError(
            f"unknown vis_type {vis_type!r}; expected IUA.VisType.TABLE ({IUA.VisType.TABLE!r}) "
            f"or IUA.VisType.CHART ({IUA.VisType.CHART!r})"
        )

    # ------------------------------------------------------------------ display
    def __str__(self) -> str:
        from introscope.viz._iua import iua_text

        return iua_text(self.summary())

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {s.n_samples} samples" for n, s in self._fields.items())
        return f"IUA({parts or 'empty'}; atol={self.atol:g})"

    def _repr_html_(self) -> str:
        from introscope.viz._iua import iua_html

        panels = [
            (row, self.results[row["response"]].unit_inactive_proportion) for row in self.summary()
        ]
        return iua_html(panels)
