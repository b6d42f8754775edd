"""PFA against DNIKit 2.0 on the same seeded responses (skipped without .venv-dnikit)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

from introscope.base import Batch
from introscope.introspectors import PFA

STRATEGIES = {
    "kl": "PFA.Strategy.KL()",
    "energy90": "PFA.Strategy.Energy(0.9)",
    "energy50_min6": "PFA.Strategy.Energy(0.5, min_kept_count=6)",
    "size30": "PFA.Strategy.Size(0.3)",
    "size70_min2": "PFA.Strategy.Size(0.7, min_kept_count=2)",
}
UNITS = ["AbsMax", "AbsMin", "L1Max", "L1Min"]

DNIKIT_SCRIPT = """
import warnings
from dnikit.base import Batch
from dnikit.introspectors import PFA, PFAKLDiagnostics, PFAEnergyDiagnostics

names = [k for k in arrays if k != "__batch_size"]
batch_size = int(arrays["__batch_size"])
n = len(arrays[names[0]])
def producer(bs):
    for i in range(0, n, bs):
        yield Batch({k: arrays[k][i:i + bs] for k in names})

with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    pfa = PFA.introspect(producer, batch_size=batch_size)
strategies = STRATEGIES
result = {"failed": list(pfa.failed_responses), "recipes": {}, "inactive": {}, "eig": {}}
for name, cov in pfa._internal_result.items():
    result["inactive"][name] = [int(u) for u in cov.inactive_units]
    result["eig"][name] = [float(v) for v in cov.eigenvalues]
for skey, sexpr in strategies.items():
    for ukey in UNITS:
        recipes = pfa.get_recipe(strategy=eval(sexpr),
                                 unit_strategy=getattr(PFA.UnitSelectionStrategy, ukey)())
        out = {}
        for layer, r in recipes.items():
            d = r.diagnostics
            out[layer] = {
                "original": int(r.original_output_count),
                "recommended": int(r.recommended_output_count),
                "units": [int(u) for u in r.maximally_correlated_units],
                "inactive": int(r.number_inactive_units),
                "kl": float(d.kl_divergence) if isinstance(d, PFAKLDiagnostics) else None,
                "ratio": float(d.units_ratio) if isinstance(d, PFAKLDiagnostics) else None,
                "energy": float(d.total_kept_energy) if isinstance(d, PFAEnergyDiagnostics) else None,
            }
        result["recipes"][skey + "/" + ukey] = out
"""


def _responses(dtype: type) -> dict[str, np.ndarray]:
    """Seeded responses with correlated units, dead units, exact duplicates and a failed layer."""
    rng = np.random.default_rng(1807)
    n = 600
    # Low-rank layer: 24 units driven by 5 factors, plus noise.
    low = rng.standard_normal((n, 5)) @ rng.standard_normal((5, 24))
    low += 0.05 * rng.standard_normal((n, 24))
    # Dead and constant units, ReLU-like sparsity.
    relu = np.maximum(rng.standard_normal((n, 16)) @ rng.standard_normal((16, 16)), 0)
    relu[:, [2, 9]] = 0.0
    relu[:, 11] = 3.5
    # Exact duplicates and scaled copies: many exactly tied correlations.
    base = rng.standard_normal((n, 6))
    dup = np.concatenate([base, base[:, :3], 2.0 * base[:, 3:5], -base[:, :2]], axis=1)
    # A layer with more units than samples: reported as failed.
    wide = rng.standard_normal((n, n + 8))
    # Independent units: a flat spectrum.
    flat = rng.standard_normal((n, 10))
    return {
        "low": low.astype(dtype),
        "relu": relu.astype(dtype),
        "dup": dup.astype(dtype),
        "wide": wide.astype(dtype),
        "flat": flat.astype(dtype),
    }


def _introscope(arrays: dict[str, np.ndarray], batch_size: int) -> dict:
    n = len(next(iter(arrays.values())))

    def producer(bs):
        for i in range(0, n, bs):
            yield Batch({k: v[i : i + bs] for k, v in arrays.items()})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pfa = PFA.introspect(producer, batch_size=batch_size)
    assert any("fewer samples than units" in str(w.message) for w in caught)
    result = {"failed": list(pfa.failed_responses), "recipes": {}, "inactive": {}, "eig": {}}
    for name, cov in pfa.covariances.items():
        result["inactive"][name] = [int(u) for u in cov.inactive_units]
        result["eig"][name] = [float(v) for v in cov.eigenvalues]
    for skey, sexpr in STRATEGIES.items():
        for ukey in UNITS:
            recipes = pfa.get_recipe(
                strategy=eval(sexpr), unit_strategy=getattr(PFA.UnitSelectionStrategy, ukey)()
            )
            result["recipes"][f"{skey}/{ukey}"] = {
                layer: {
                    "original": r.original_output_count,
                    "recommended": r.recommended_output_count,
                    "units": list(r.maximally_correlated_units),
                    "inactive": r.number_inactive_units,
                    "kl": getattr(r.diagnostics, "kl_divergence", None),
                    "ratio": getattr(r.diagnostics, "units_ratio", None),
                    "energy": getattr(r.diagnostics, "total_kept_energy", None),
                }
                for layer, r in recipes.items()
            }
    return result


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pfa_matches_dnikit(dtype: type, tmp_path) -> None:
    arrays = _responses(dtype)
    batch_size = 64
    script = f"STRATEGIES = {STRATEGIES!r}\nUNITS = {UNITS!r}\n" + DNIKIT_SCRIPT
    ref = run_dnikit(script, {**arrays, "__batch_size": np.array(batch_size)}, tmp_path / "dnikit")
    ours = _introscope(arrays, batch_size)

    assert ours["failed"] == ref["failed"] == ["wide"]
    assert ours["inactive"] == ref["inactive"]
    assert ours["inactive"]["relu"] == [2, 9, 11]
    # Both multiply float32 responses in float32 (DNIKit per batch, about zero; introscope per
    # ~4 MiB block, about a per-unit shift), so they agree to float32 rounding.
    tol = 1e-9 if dtype == np.float64 else 1e-5
    for layer, values in ref["eig"].items():
        scale = max(values)
        np.testing.assert_allclose(ours["eig"][layer], values, rtol=tol, atol=tol * scale)
    assert ours["recipes"].keys() == ref["recipes"].keys()
    for combo, layers in ref["recipes"].items():
        assert ours["recipes"][combo].keys() == layers.keys(), combo
        for layer, expected in layers.items():
            got = ours["recipes"][combo][layer]
            where = f"{combo} {layer}"
            for key in ("original", "recommended", "inactive", "units"):
                assert got[key] == expected[key], f"{where}: {key} {got[key]} != {expected[key]}"
            for key in ("kl", "ratio", "energy"):
                if expected[key] is None:
                    assert got[key] is None, where
                else:
                    assert got[key] == pytest.approx(expected[key], rel=tol, abs=tol), where


SIZE_ON_SAME_COVARIANCES = """
import numpy as np
from dnikit.introspectors import PFA, PFACovariancesResult
covs = {k: PFACovariancesResult.make_covariance_result(covariances=v) for k, v in arrays.items()}
result = {}
for r in np.linspace(0.0, 1.0, 51):
    recipes = PFA.Strategy.Size(relative_size=float(r))(covs)
    result[f"{r:.2f}"] = {k: int(v.recommended_output_count) for k, v in recipes.items()}
"""


def test_size_counts_equal_dnikits_on_the_same_covariances(tmp_path):
    # 51 units over three layers and fractions k/50: the shared threshold is then exactly one
    # of the cumulative ratios, a tie that the last bits of the eigenvalues and sums decide.
    from introscope.introspectors import PFACovariancesResult

    covs = {}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for name, (units, mixed) in {
            "fc": (20, True),
            "fc2": (21, False),
            "fc3": (10, True),
        }.items():
            x = rng.normal(size=(200, units))
            covs[f"{seed}/{name}"] = np.cov(x @ rng.normal(size=(units, units)) if mixed else x,
                                            rowvar=False)  # fmt: skip
    for seed in range(3):
        group = {k: v for k, v in covs.items() if k.startswith(f"{seed}/")}
        want = run_dnikit(SIZE_ON_SAME_COVARIANCES, group, tmp_path / str(seed))
        ours = {
            k: PFACovariancesResult.make_covariance_result(covariances=v) for k, v in group.items()
        }
        for r, counts in want.items():
            recipes = PFA.Strategy.Size(relative_size=float(r))(ours)
            assert {k: v.recommended_output_count for k, v in recipes.items()} == counts, r
