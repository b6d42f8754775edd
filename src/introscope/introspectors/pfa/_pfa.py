"""The PFA introspector: one streaming covariance pass, then recipes on demand."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast, overload

import numpy as np

from introscope._validation import check_batch_size, check_choice
from introscope.base import ResponseInfo
from introscope.base._producer import Producer
from introscope.exceptions import IntroscopeError, IntroscopeValueError

from .._accumulator import accumulate
from .._npz import load_npz, save_npz
from . import _strategies, _units
from ._covariance import PFACovariancesResult, PFACovarianceState
from ._plan import PFAPruningPlan
from ._recipe import PFARecipe, PFARecipes
from ._strategies import PFAStrategyType
from ._torch_prune import PrunedModel, prune_model
from ._units import PFAUnitSelectionStrategyType

if TYPE_CHECKING:
    import pandas as pd

    import torch
    from introscope.torch._monitor import Monitor

    class _PFAAccumulator(PFACovarianceState):
        """``PFACovarianceState`` as type checkers see what ``PFA.accumulator`` makes: its
        ``finalize`` gives a ``PFA`` (the state names its result class at runtime, so that it
        need not import this module)."""

        def finalize(self, *, epsilon_inactive: float | None = None) -> PFA: ...

else:
    _PFAAccumulator = PFACovarianceState

__all__ = ["PFA"]

_POOLS = ("max", "mean", None)


def _pooling(pool: str | None) -> Callable[[str, Any, ResponseInfo], Any]:
    """The monitor's transform: outputs pooled over every axis but the batch and the channels.

    The channel axis is the module's layout as the adapter describes it: 1 for (N, C, ...)
    outputs, -1 for layers that act on the last axis (a Linear on (N, L, D)) and activations
    after them.
    """

    def transform(name: str, x: Any, info: ResponseInfo) -> Any:
        if x.dim() <= 2:
            return x
        if pool is None:
            raise IntroscopeError(
                f"PFA.monitor: module {name!r} output has shape {tuple(x.shape)}; "
                f"pass pool='max' or 'mean' to reduce it to (samples, channels)"
            )
        axis = 1 if info.channel_axis is None else info.channel_axis % x.dim()
        flat = (x if axis == 1 else x.movedim(axis, 1)).flatten(2)
        return flat.amax(dim=2) if pool == "max" else flat.mean(dim=2)

    return transform


@dataclass(frozen=True)
class PFA:
    """Principal Filter Analysis: how many units each layer needs, and which to keep.

    Create it with ``PFA.introspect`` (or ``PFA.from_state``), then call
    ``get_recipe``.

    Examples:
        Units 2 and 3 of this layer copy units 0 and 1, and unit 4 is always 0:

        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import PFA
        >>> rng = np.random.default_rng(0)
        >>> base = rng.normal(size=(50, 2))
        >>> layer = np.hstack([base, base + 1e-3 * rng.normal(size=(50, 2)), np.zeros((50, 1))])
        >>> pfa = PFA.introspect(producer_from_batches(Batch({"fc": layer})), batch_size=16)
        >>> recipe = pfa.get_recipe(strategy=PFA.Strategy.Energy(energy_threshold=0.99))["fc"]
        >>> recipe.original_output_count, recipe.recommended_output_count
        (5, 2)
        >>> recipe.number_inactive_units, 4 in recipe.units_to_remove, len(recipe.units_to_remove)
        (1, True, 3)
    """

    class Strategy:
        """Bundled strategies; any ``PFAStrategyType`` callable works too."""

        KL: TypeAlias = _strategies.KL
        Energy: TypeAlias = _strategies.Energy
        Size: TypeAlias = _strategies.Size

    class UnitSelectionStrategy:
        """Bundled unit selections; any ``PFAUnitSelectionStrategyType`` works too."""

        AbsMax: TypeAlias = _units.AbsMax
        AbsMin: TypeAlias = _units.AbsMin
        L1Max: TypeAlias = _units.L1Max
        L1Min: TypeAlias = _units.L1Min

        @classmethod
        def get_algos(cls) -> list[PFAUnitSelectionStrategyType]:
            """One instance of every bundled unit selection strategy."""
            return [cls.AbsMax(), cls.AbsMin(), cls.L1Max(), cls.L1Min()]

    class VisType:
        """What ``PFA.show`` draws."""

        CHART: Final = "chart"
        TABLE: Final = "table"

    failed_responses: Sequence[str]
    """Fields with fewer samples than units, for which there is no recipe."""

    _covariance_result_by_response: Mapping[str, PFACovariancesResult]

    _failed_reasons: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Why each of ``failed_responses`` has no recipe (beyond DNIKit)."""

    @staticmethod
    def introspect(
        producer: Producer,
        *,
        batch_size: int = 32,
        epsilon_inactive: float = 1e-8,
        precision: str = "auto",
    ) -> PFA:
        """Accumulate the covariance of every (samples, units) field in one pass over ``producer``.

        Args:
            producer: yields batches whose fields are 2-D responses (pool conv responses first)
            batch_size: size of the batches pulled from ``producer``
            epsilon_inactive: a unit is inactive when its variance is below this times the
                largest variance in its layer
            precision: ``"auto"`` (default) multiplies float32, float16, bool and 8/16-bit
                integer responses in float32, as DNIKit does for float32, but about a per-unit
                shift near the mean (from the first batch) and summed in float64, so a large
                mean does not cancel the variance (errors ~1e-7 relative); float64 responses
                are multiplied in float64. ``"float64"`` multiplies every response in float64
                (sums about 1.5x slower on float32 responses). See
                ``PFACovarianceState``.
        """
        check_batch_size(batch_size)
        state = PFA.accumulator(epsilon_inactive=epsilon_inactive, precision=precision)
        (pfa,) = accumulate(producer, state, batch_size=batch_size, desc="PFA")
        return cast("PFA", pfa)

    @staticmethod
    def accumulator(*, epsilon_inactive: float = 1e-8, precision: str = "auto") -> _PFAAccumulator:
        """An empty PFA accumulator (``finalize()`` gives what ``introspect`` returns)."""
        return _PFAAccumulator(precision=precision, epsilon_inactive=epsilon_inactive)

    @staticmethod
    def from_state(state: PFACovarianceState, *, epsilon_inactive: float | None = None) -> PFA:
        """Finish a ``PFACovarianceState`` fed elsewhere (hooks, shards, workers)."""
        results, failed = state.covariance_results(epsilon_inactive=epsilon_inactive)
        reasons = {}
        for name in failed:
            sums = state._states[name]
            reasons[name] = f"not analysed: fewer samples ({sums.count}) than units ({sums.units})"  # type: ignore[attr-defined]
        return PFA(failed, results, reasons)

    @staticmethod
    def monitor(
        model: torch.nn.Module,
        layers: str | Iterable[Any],
        *,
        pool: str | None = "max",
        epsilon_inactive: float = 1e-8,
        precision: str = "auto",
    ) -> Monitor[PFA]:
        """Watch modules of a ``torch.nn.Module`` with forward hooks (a context manager).

        Outputs with more than two axes are pooled over every axis but the batch and the
        channels (``pool`` "max", as DNIKit users do with ``Pooler(method=MAX)``, or "mean"):
        the channel axis is 1 for convolution-like (N, C, ...) outputs and -1 for a Linear or
        recurrent layer on (N, L, D) and the activations after it, as ``introscope.torch``
        describes each module; (N, C) outputs are used as they are. Sums stay on the model's device in float64.
        ``monitor.result`` is a ``PFA`` of every output seen, ``monitor.state`` the
        ``PFACovarianceState``; other defaults are those of ``introspect``. Creating the
        monitor registers nothing: it counts inside ``with PFA.monitor(model) as m:`` or
        between ``m.attach()`` and ``m.detach()``.
        """
        from introscope.torch._monitor import Monitor

        check_choice(pool, "pool", _POOLS, owner="PFA.monitor")
        state = PFA.accumulator(epsilon_inactive=epsilon_inactive, precision=precision)
        return Monitor(model, state, layers, owner="PFA.monitor", transform=_pooling(pool))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this result to one ``.npz`` (arrays + JSON header; atomic, no pickle)."""
        arrays: dict[str, np.ndarray] = {}
        names = list(self._covariance_result_by_response)
        for i, name in enumerate(names):
            res = self._covariance_result_by_response[name]
            arrays[f"{i}.covariances"] = res.covariances
            arrays[f"{i}.eigenvalues"] = res.eigenvalues
            arrays[f"{i}.eigenvectors"] = res.eigenvectors
            arrays[f"{i}.inactive_units"] = np.asarray(res.inactive_units, dtype=np.int64)
        header = {
            "type": "PFA",
            "kind": "result",
            "format": 1,
            "fields": names,
            "failed_responses": list(self.failed_responses),
        }
        save_npz(path, arrays, header)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> PFA:
        """Read a result written by ``save`` (or a saved ``PFACovarianceState``)."""
        arrays, header = load_npz(path, expect="PFA")
        if header.get("kind") != "result":
            return cast("PFA", PFACovarianceState._import(arrays, header).finalize())
        results = {}
        for i, name in enumerate(header["fields"]):
            cov = arrays[f"{i}.covariances"]
            results[name] = PFACovariancesResult(
                covariances=cov,
                eigenvalues=arrays[f"{i}.eigenvalues"],
                eigenvectors=arrays[f"{i}.eigenvectors"],
                original_output_count=int(cov.shape[0]),
                inactive_units=arrays[f"{i}.inactive_units"].astype(int),
            )
        return PFA(list(header["failed_responses"]), results)

    @property
    def covariances(self) -> Mapping[str, PFACovariancesResult]:
        """Covariance result of every field that succeeded."""
        return self._covariance_result_by_response

    @property
    def _internal_result(self) -> Mapping[str, PFACovariancesResult]:
        return self._covariance_result_by_response

    def get_recipe(
        self,
        *,
        strategy: PFAStrategyType | None = None,
        unit_strategy: PFAUnitSelectionStrategyType | None = None,
    ) -> dict[str, PFARecipe]:
        """A recipe per field: how many units to keep (``strategy``), which to remove
        (``unit_strategy``).

        Defaults: ``PFA.Strategy.KL()`` and ``PFA.UnitSelectionStrategy.L1Max()``. The dict
        (a ``PFARecipes``) also lists, in ``.failed``, the fields PFA could not analyse and
        why; each recipe's ``strategy`` names the strategies, e.g. ``"KL + L1Max"``.
        """
        if strategy is None:
            strategy = PFA.Strategy.KL()
        if unit_strategy is None:
            unit_strategy = PFA.UnitSelectionStrategy.L1Max()
        covariances = self._covariance_result_by_response
        # Some strategies (Size) look at all layers at once, so counts come first.
        counts = strategy(covariances)
        label = f"{_strategy_name(strategy)} + {_strategy_name(unit_strategy)}"
        recipes = {
            name: recipe._with_units(
                list(
                    unit_strategy(
                        covariances=covariances[name],
                        num_units_to_keep=recipe.recommended_output_count,
                    )
                )
            )._labelled(label)
            for name, recipe in counts.items()
        }
        failed = {
            name: self._failed_reasons.get(name, "not analysed: fewer samples than units")
            for name in self.failed_responses
        }
        return PFARecipes(recipes, failed)

    @staticmethod
    def pruning_plan(
        recipes: Mapping[str, PFARecipe],
        model: Any = None,
        *,
        example_input: Any = None,
        layer_names: Mapping[str, str] | None = None,
    ) -> PFAPruningPlan:
        """Units to keep and to remove per layer, exportable as JSON (``plan.save(path)``).

        With a PyTorch ``model`` (and ``example_input``) the plan also records which layers'
        channels are coupled, how each group is reconciled, and the parameters and MACs per
        sample before and after (the model is not changed; see ``prune``).
        """
        plan = PFAPruningPlan.from_recipes(recipes)
        if model is None:
            return plan
        pruned = PFA.prune(model, plan, example_input=example_input, layer_names=layer_names)
        assert pruned.plan is not None  # prune_model always records the plan it applied
        return pruned.plan

    @staticmethod
    def prune(
        model: Any,
        recipes: Mapping[str, PFARecipe] | PFAPruningPlan,
        *,
        example_input: Any,
        layer_names: Mapping[str, str] | None = None,
    ) -> PrunedModel:
        """Prune a copy of a PyTorch model: each recipe's layer keeps its ``units_to_keep``.

        Returns a ``PrunedModel``, not a module: ``.module`` is the pruned copy (a
        ``torch.nn.Module`` to run, fine-tune or save: ``pruned.module(x)``), ``.summary()``
        gives the parameters and MACs per sample before and after (also the fields
        ``params_before``, ``params_after``, ``macs_before``, ``macs_after``), ``.channels``
        the output channels of each pruned layer before and after, and ``.plan`` the plan
        applied (``PFA.pruning_plan`` without pruning).

        Any ``torch.nn.Module`` works (residual blocks, grouped and depthwise convolutions,
        custom ``forward``): Torch-Pruning's dependency graph (extra ``prune``) removes what
        is coupled to the removed channels. Recipes whose channels are coupled keep the union
        of their units. A recipe may name a convolution or linear layer, or a channel-wise
        module after one (BatchNorm, activation, pooling); anything else is an error.

        Args:
            model: the module PFA's responses came from (not modified); a ``torch.compile``'d
                model prunes the module it wraps (compile the copy again). TorchScript
                modules cannot be pruned.
            recipes: ``pfa.get_recipe(...)`` or a ``PFAPruningPlan``.
            example_input: a batch the model accepts (a tensor or numpy array, a tuple of
                them, or a mapping of ``forward``'s argument names to them), to trace it and
                count MACs; floating inputs are cast to the model's dtype, integers (token
                ids) stay as they are.
            layer_names: response name -> module name, where they differ.

        The copy keeps each module's train/eval mode. A plan that would change the shape of
        the model's outputs (a pruned classifier, also behind an activation or a softmax)
        is refused.
        """
        plan = (
            recipes if isinstance(recipes, PFAPruningPlan) else PFAPruningPlan.from_recipes(recipes)
        )
        return prune_model(model, plan, example_input=example_input, layer_names=layer_names)

    @overload
    @staticmethod
    def show(
        recipe_result: Mapping[str, PFARecipe] | Sequence[Mapping[str, PFARecipe]],
        *,
        vis_type: Literal["table"] = ...,
        include_columns: Sequence[str] | None = None,
        exclude_columns: Sequence[str] | None = None,
    ) -> pd.DataFrame: ...

    @overload
    @staticmethod
    def show(
        recipe_result: Mapping[str, PFARecipe] | Sequence[Mapping[str, PFARecipe]],
        *,
        vis_type: Literal["chart"],
        include_columns: Sequence[str] | None = None,
        exclude_columns: Sequence[str] | None = None,
    ) -> Any: ...

    @overload
    @staticmethod
    def show(
        recipe_result: Mapping[str, PFARecipe] | Sequence[Mapping[str, PFARecipe]],
        *,
        vis_type: str,
        include_columns: Sequence[str] | None = None,
        exclude_columns: Sequence[str] | None = None,
    ) -> Any: ...

    @staticmethod
    def show(
        recipe_result: Mapping[str, PFARecipe] | Sequence[Mapping[str, PFARecipe]],
        *,
        vis_type: str = VisType.TABLE,
        include_columns: Sequence[str] | None = None,
        exclude_columns: Sequence[str] | None = None,
    ) -> Any:
        """A pandas table (``VisType.TABLE``) or a matplotlib chart (``VisType.CHART``) of recipes.

        Several recipe mappings may be passed for a table (rows are concatenated, and a first
        column ``strategy`` says which strategy each row came from). With
        ``include_columns=None`` the table has the columns layer name, original count,
        recommended count and units to keep; ``include_columns=[]`` selects every column.
        Layers PFA could not analyse (fewer samples than units) are rows too, with the reason in
        a ``note`` column. The chart is matplotlib Axes; ``introscope.viz.save_figure(ax, path)``
        saves it.
        """
        from introscope.viz._pfa import pfa_chart, pfa_table

        from ._rows import recipe_rows

        if isinstance(recipe_result, PFA):
            raise IntroscopeError(
                "PFA.show() got the result of PFA.introspect; pass a recipe instead: "
                "pfa = PFA.introspect(producer); PFA.show(pfa.get_recipe())"
            )
        if isinstance(recipe_result, Mapping):
            many = [recipe_result]
        else:
            many = list(recipe_result)
        if not many or any(len(r) == 0 for r in many):
            raise IntroscopeValueError("`recipe_result` is empty: there is nothing to show")
        if vis_type == PFA.VisType.TABLE:
            return pfa_table(
                recipe_rows(many),
                include_columns=include_columns,
                exclude_columns=exclude_columns,
                strategy_column=len(many) > 1,
            )
        if vis_type == PFA.VisType.CHART:
            if len(many) > 1:
                raise IntroscopeError(
                    "PFA.show can chart one recipe at a time; pass a single recipe mapping "
                    "for vis_type=PFA.VisType.CHART"
                )
            return pfa_chart(recipe_rows(many))
        raise IntroscopeValueError(
            f"unexpected vis_type {vis_type!r}; expected PFA.VisType.CHART or PFA.VisType.TABLE"
        )


def _strategy_name(strategy: object) -> str:
    name = getattr(strategy, "__name__", None) or type(strategy).__name__
    return str(name)


# The accumulator builds this result class (see PFACovarianceState.result_type).
PFACovarianceState.result_type = PFA
