"""Principal Filter Analysis (Suau et al., arXiv 1807.10585)."""

from ._covariance import PFACovariancesResult, PFACovarianceState
from ._pfa import PFA
from ._plan import PFAGroupPlan, PFALayerPlan, PFAPruningPlan
from ._recipe import PFAEnergyDiagnostics, PFAKLDiagnostics, PFARecipe
from ._rows import recipe_rows
from ._strategies import PFAStrategyType
from ._torch_prune import PrunedModel, count_params_and_macs, prune_model, prune_sequential
from ._units import PFAUnitSelectionStrategyType

__all__ = [
    "PFA",
    "PFARecipe",
    "PFAKLDiagnostics",
    "PFAEnergyDiagnostics",
    "PFACovariancesResult",
    "PFACovarianceState",
    "PFAStrategyType",
    "PFAUnitSelectionStrategyType",
    "PFAGroupPlan",
    "PFALayerPlan",
    "PFAPruningPlan",
    "PrunedModel",
    "count_params_and_macs",
    "prune_model",
    "prune_sequential",
    "recipe_rows",
]
