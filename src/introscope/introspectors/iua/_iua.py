"""Inactive Unit Analysis: how often each unit of each response is (numerically) zero."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast, overload

import numpy as np

from introscope._order import natural_key, natural_sorted
from introscope._validation import check_choice, check_tolerance, unknown_name_error
from introscope.base import Producer, ResponseInfo
from introscope.exceptions import IntroscopeError, IntroscopeValueError

from .._accumulator import Accumulator, StateError, accumulate
from .._configured import class_or_instance, settings_of
from ._channels import ChannelAxisArg, resolve_channel_axis
from ._result import IUAResult
from ._state import IUAState

if TYPE_CHECKING:
    import pandas as pd

    import torch
    from introscope.torch._monitor import Monitor

__all__ = ["IUA"]

NonFinite = Literal["raise", "warn"]

#: The defaults of IUA's settings (``IUA(...)``, ``introspect``, ``monitor``).
_DEFAULTS: Final[Mapping[str, Any]] = {
    "rtol": 1e-05,
    "atol": 1e-08,
    "channel_axis": None,
    "response_infos": None,
    "nonfinite": "raise",
}


class _VisType:
    """How ``IUA.show`` presents results."""

    CHART: Final = "chart"
    """A heatmap of per-unit inactive proportions, one panel per response."""
    TABLE: Final = "table"
    """A pandas DataFrame, one row per response."""


class IUA(Accumulator):
    """Inactive Unit Analysis: per response, how many units are inactive (close to 0) and how often.

    ``IUA.introspect(producer)`` returns an ``IUA``; its ``results`` map each response name to
    an ``IUA.Result``. An ``IUA`` is also an accumulator: ``update(field, array)`` folds in
    one batch, ``merge(other)`` combines two analyses of disjoint data exactly. The state is
    O(units) counters per response plus one small integer per sample (and per sample per channel
    view); nothing else grows with the data.

    Args:
        rtol: relative tolerance of ``numpy.isclose``; against 0 it has no effect.
        atol: a value ``x`` is inactive when ``|x| <= atol`` (``numpy.isclose(x, 0, rtol, atol)``).
        channel_axis: ``None``; an axis (counted with the batch axis, 1 for PyTorch's NCHW, -1
            for Keras' NHWC) for every response with spatial positions; or a mapping response name
            -> axis. Adds a per-channel view (``channel_results``): a channel is inactive for
            a sample when all its positions are.
        response_infos: the model's ``ResponseInfo`` mapping; for responses that
            ``channel_axis`` does not name, convolution-like layers get their channel axis from it.
        nonfinite: ``"raise"`` (default): a NaN or Inf in a response raises, naming the response
            and batch; ``"warn"``: it warns, counts the value as active (as ``numpy.isclose``
            does) and reports the number per response in ``IUA.Result.nonfinite``.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import IUA
        >>> relu = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
        >>> iua = IUA.introspect(producer_from_batches(Batch({"relu": relu})), batch_size=2)
        >>> result = iua.results["relu"]
        >>> result.unit_inactive_count
        [4, 1, 2]
        >>> result.dead_units()  # how many units are inactive on every sample
        1
    """

    Result: TypeAlias = IUAResult
    VisType: TypeAlias = _VisType

    owner = "IUA"
    state_type = IUAState
    nonfinite_policies = ("raise", "warn")
    nonfinite_note = "counted as active"
    nonfinite_report = "IUA.Result.nonfinite"

    def __init__(
        self,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
        nonfinite: NonFinite = "raise",
    ) -> None:
        self.rtol = check_tolerance(rtol, "rtol", owner="IUA")
        self.atol = check_tolerance(atol, "atol", owner="IUA")
        check_choice(nonfinite, "nonfinite", self.nonfinite_policies, owner="IUA")
        super().__init__(nonfinite=nonfinite)
        self._channel_axis = channel_axis
        self._response_infos = response_infos
        self._cache: dict[str, Any] = {}
        self._force_device_path = False  # tests run the accelerator path on CPU tensors

    # ------------------------------------------------------------------ accumulator
    def new_state(self, field: str, array: Any) -> IUAState:
        shape = tuple(int(d) for d in getattr(array, "shape", np.shape(array)))
        if len(shape) < 1:
            raise StateError("has no batch dimension")
        mapping = self._channel_axis
        if isinstance(mapping, Mapping) and field not in mapping and f"{field}#0" in mapping:
            # The monitor names a module's first call by its plain path until it sees a second
            # call in the same pass (then renames it name#0): honour a mapping keyed name#0.
            mapping = {field: mapping[f"{field}#0"]}
        axis = resolve_channel_axis(field, shape, mapping, self._response_infos)
        return IUAState(shape[1:], axis, self.atol, force_device_path=self._force_device_path)

    def config(self) -> dict[str, Any]:
        axis = self._channel_axis
        return {
            "rtol": self.rtol,
            "atol": self.atol,
            "channel_axis": dict(axis) if isinstance(axis, Mapping) else axis,
            "nonfinite": self.nonfinite_policy,
        }

    def spawn(self) -> IUA:
        out = super().spawn()
        out._response_infos = self._response_infos
        out._force_device_path = self._force_device_path
        return out

    def _merge_key(self) -> dict[str, Any]:
        # The NaN/Inf policy too: a "warn" state's kept values would pass into a "raise" one.
        return {"rtol": self.rtol, "atol": self.atol, "nonfinite": self.nonfinite_policy}

    def _changed(self) -> None:
        self._cache.clear()

    def merge(self, other: IUA) -> IUA:
        """A new IUA equal to the analysis of this one's data followed by ``other``'s."""
        if not isinstance(other, IUA):
            raise TypeError(f"can only merge an IUA with an IUA, got {type(other).__name__}")
        if (self.rtol, self.atol) != (other.rtol, other.atol):
            raise IntroscopeError(
                f"IUA: cannot merge analyses with different tolerances: "
                f"(rtol, atol) = {(self.rtol, self.atol)} and {(other.rtol, other.atol)}"
            )
        return super().merge(other)

    merged = merge

    def finalize(self) -> IUA:
        """The analysis itself (an ``IUA`` is its own result, as in DNIKit)."""
        self.sync()
        return self

    @property
    def state_nbytes(self) -> int:
        """Bytes of state held (counters plus the per-sample integer arrays)."""
        return self.nbytes

    # ------------------------------------------------------------------ results
    @property
    def results(self) -> Mapping[str, IUAResult]:
        """Per response: ``IUA.Result`` over its units."""
        self.sync()
        if "units" not in self._cache:
            self._cache["units"] = {name: s.result() for name, s in self._states.items()}
        return cast("Mapping[str, IUAResult]", self._cache["units"])

    @property
    def channel_results(self) -> Mapping[str, IUAResult]:
        """Per response with a channel axis: ``IUA.Result`` over its channels.

        A channel is inactive for a sample when all its positions are; unit arrays have shape
        (channels,).
        """
        self.sync()
        if "channels" not in self._cache:
            self._cache["channels"] = {
                name: s.result(view="channels")
                for name, s in self._states.items()
                if cast("IUAState", s).channels is not None
            }
        return cast("Mapping[str, IUAResult]", self._cache["channels"])

    def channel_axis(self, response: str) -> int | None:
        """Channel axis of ``response`` in its unit shape (batch axis dropped), or None."""
        return cast("IUAState", self._states[response]).channel_axis

    def summary(self, dead_fraction: float = 0.99) -> list[dict[str, Any]]:
        """One dict per response (natural order: relu, relu_2, relu_10): sizes, mean/std
        inactive, dead and mostly-dead counts."""
        if not 0.0 < dead_fraction <= 1.0:
            raise IntroscopeValueError(f"dead_fraction must be in (0, 1], got {dead_fraction!r}")
        rows = []
        channel_results = self.channel_results
        for name, res in sorted(self.results.items(), key=lambda item: natural_key(item[0])):
            row: dict[str, Any] = {
                "response": name,
                "shape": self._states[name].unit_shape,  # type: ignore[attr-defined]
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
    @class_or_instance
    def introspect(
        cls_or_self: type[IUA] | IUA,
        producer: Producer,
        *,
        batch_size: int = 32,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
        nonfinite: NonFinite = "raise",
    ) -> IUA:
        """Analyse every field of every batch of ``producer``; see ``IUA`` for arguments.

        Called on a configured ``IUA`` (``IUA(atol=0.5).introspect(producer)``, the way
        ``introscope.ray`` takes its settings), the analysis uses that instance's settings
        and leaves the instance as it is; an argument that contradicts them is an error.
        """
        given: dict[str, Any] = {
            "rtol": rtol,
            "atol": atol,
            "channel_axis": channel_axis,
            "response_infos": response_infos,
            "nonfinite": nonfinite,
        }
        if isinstance(cls_or_self, IUA):
            iua = cls_or_self._configured("introspect", given)
        else:
            iua = cls_or_self(**given)
        accumulate(producer, iua, batch_size=batch_size, desc="IUA")
        return iua

    def _configured(self, method: str, given: Mapping[str, Any]) -> IUA:
        """A new, empty IUA with this one's settings and the agreeing arguments ``given``."""
        configured = {**self.config(), "response_infos": self._response_infos}
        settings = settings_of("IUA", method, configured, given, _DEFAULTS)
        out = type(self)(**settings)
        out._force_device_path = self._force_device_path
        return out

    @classmethod
    def accumulator(
        cls,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        response_infos: Mapping[str, ResponseInfo] | None = None,
        nonfinite: NonFinite = "raise",
    ) -> IUA:
        """An empty IUA to feed (``finalize()`` gives what ``introspect`` returns: itself)."""
        return cls(
            rtol=rtol,
            atol=atol,
            channel_axis=channel_axis,
            response_infos=response_infos,
            nonfinite=nonfinite,
        )

    @class_or_instance
    def monitor(
        cls_or_self: type[IUA] | IUA,
        model: torch.nn.Module,
        layers: str | Iterable[Any] | None = None,
        *,
        rtol: float = 1e-05,
        atol: float = 1e-08,
        channel_axis: ChannelAxisArg = None,
        nonfinite: NonFinite = "raise",
    ) -> Monitor[IUA]:
        """Watch modules of a ``torch.nn.Module`` with forward hooks; use as a context manager.

        ``layers``: module names (as in ``model.named_modules()``) or modules; None means every
        ReLU/ReLU6 module. Counting runs on the model's device, in evaluation and in training;
        ``monitor.result`` is an ``IUA`` of everything seen so far and ``monitor.reset()``
        starts afresh (e.g. once per epoch). The defaults are those of ``introspect``; with
        ``channel_axis=None`` the layout comes from each module as ``introscope.torch``
        describes it (channels-first outputs with positions get a channel view), the way
        ``introspect`` takes it from ``response_infos``. Pass an axis (or a mapping) to
        override. A module called several times per forward pass gives ``name#0``,
        ``name#1``, ... as ``introscope.torch`` names them.

        Creating the monitor registers nothing: it counts inside ``with IUA.monitor(model) as
        m:`` (hooks removed on exit), or between ``m.attach()`` and ``m.detach()``. Called on
        a configured ``IUA`` (``IUA(atol=0.5).monitor(model)``), it counts with that
        instance's settings into a new ``IUA``, as ``introspect`` does.
        """
        from introscope.torch._monitor import Monitor

        given: dict[str, Any] = {
            "rtol": rtol,
            "atol": atol,
            "channel_axis": channel_axis,
            "nonfinite": nonfinite,
        }
        if isinstance(cls_or_self, IUA):
            iua = cls_or_self._configured("monitor", given)
        else:
            iua = IUA(**given)
        return Monitor(model, iua, layers, owner="IUA.monitor", default_types=("ReLU", "ReLU6"))

    def add_response_info(self, info: ResponseInfo) -> None:
        """Record the ``ResponseInfo`` of a response (its layout gives its channel axis)."""
        infos = dict(self._response_infos or {})
        infos[info.name] = info
        self._response_infos = infos

    @staticmethod
    def _resolve_names(iua: IUA, response_names: str | Sequence[str] | None) -> list[str]:
        known = list(iua.results)
        if response_names is None:
            names = known
        else:
            names = [response_names] if isinstance(response_names, str) else list(response_names)
            unknown = [n for n in names if n not in iua.results]
            if unknown:
                raise IntroscopeValueError(str(unknown_name_error("response", unknown, known)))
        if not names and response_names is None:
            raise IntroscopeValueError(
                "IUA.show: this IUA holds no responses: nothing was counted (a monitor counts "
                "only while attached: `with IUA.monitor(model) as m:` or m.attach(); a producer "
                "must yield batches of model responses)"
            )
        if not names:
            raise IntroscopeValueError(
                "no response to show: response_names is empty (pass None to show every response)"
            )
        return natural_sorted(names)

    @overload
    @staticmethod
    def show(
        iua: IUA,
        *,
        vis_type: Literal["table"] = ...,
        response_names: str | Sequence[str] | None = None,
        dead_fraction: float = 0.99,
        details: bool = False,
    ) -> pd.DataFrame: ...

    @overload
    @staticmethod
    def show(
        iua: IUA,
        *,
        vis_type: Literal["chart"],
        response_names: str | Sequence[str] | None = None,
        dead_fraction: float = 0.99,
        details: bool = False,
    ) -> Any: ...

    @overload
    @staticmethod
    def show(
        iua: IUA,
        *,
        vis_type: str,
        response_names: str | Sequence[str] | None = None,
        dead_fraction: float = 0.99,
        details: bool = False,
    ) -> Any: ...

    @staticmethod
    def show(
        iua: IUA,
        *,
        vis_type: str = VisType.TABLE,
        response_names: str | Sequence[str] | None = None,
        dead_fraction: float = 0.99,
        details: bool = False,
    ) -> Any:
        """A pandas DataFrame (``VisType.TABLE``) or matplotlib heatmap axes (``VisType.CHART``).

        The table has DNIKit's columns ``response``, ``mean inactive``, ``std inactive``, one row
        per response in natural order (``relu``, ``relu_2``, ``relu_10``). ``details=True`` adds
        unit counts, dead units (inactive for every sample) and units inactive for at least
        ``dead_fraction`` of the samples, as counts and percentages, and the same for channels
        where there is a channel view. The chart has one labelled panel per response (an array
        of axes for several; ``introscope.viz.save_figure(axes, path)`` saves it).
        """
        if not isinstance(iua, IUA):
            raise TypeError(f"IUA.show expects the IUA returned by IUA.introspect, got {iua!r}")
        names = IUA._resolve_names(iua, response_names)
        if vis_type == IUA.VisType.TABLE:
            from introscope.viz._iua import iua_table

            rows = [r for r in iua.summary(dead_fraction) if r["response"] in names]
            return iua_table(rows, details=details)
        if vis_type == IUA.VisType.CHART:
            from introscope.viz._iua import iua_chart

            panels = []
            for row in iua.summary(dead_fraction):
                if row["response"] in names:
                    name = row["response"]
                    prop = iua.results[name].unit_inactive_proportion_array
                    panels.append((row, prop, iua.channel_axis(name)))
            return iua_chart(panels)
        raise IntroscopeValueError(
            f"unknown vis_type {vis_type!r}; expected IUA.VisType.TABLE ({IUA.VisType.TABLE!r}) "
            f"or IUA.VisType.CHART ({IUA.VisType.CHART!r})"
        )

    # ------------------------------------------------------------------ display
    def __str__(self) -> str:
        from introscope.viz._iua import iua_text

        return iua_text(self.summary())

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {s.n_samples} samples" for n, s in self._states.items())  # type: ignore[attr-defined]
        return f"IUA({parts or 'empty'}; atol={self.atol:g})"

    def _repr_html_(self) -> str:
        from introscope.viz._iua import iua_html

        panels = [
            (row, self.results[row["response"]].unit_inactive_proportion_array)
            for row in self.summary()
        ]
        return iua_html(panels)
