"""Merging accumulators whose fields name a module's calls differently: ``act`` on one side,
``act#0``, ``act#1`` on the other (a PyTorch monitor renames ``act`` -> ``act#0`` once it sees
a module run twice in one pass; two ranks may disagree)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from introscope.introspectors import IUA, PFA
from introscope.introspectors._accumulator import merge_all, repeat_renames
from introscope.introspectors.pfa import PFACovarianceState

RNG = np.random.default_rng(0)
FIRST, SECOND, THIRD = (np.maximum(RNG.normal(size=(n, 4)), 0.0) for n in (12, 9, 7))
FC = RNG.normal(size=(28, 3))


def _iua(fields: dict[str, np.ndarray]) -> IUA:
    acc = IUA.accumulator()
    for name, array in fields.items():
        acc.update(name, array)
    return acc


def _pfa(fields: dict[str, np.ndarray]) -> PFACovarianceState:
    acc = PFA.accumulator(precision="float64")
    for name, array in fields.items():
        acc.update(name, array)
    return acc


def _snapshot(acc: IUA | PFACovarianceState) -> dict[str, dict[str, np.ndarray]]:
    return {n: {k: np.array(v) for k, v in s.state_dict().items()} for n, s in acc.states.items()}


def _same(a: dict[str, dict[str, np.ndarray]], b: dict[str, dict[str, np.ndarray]]) -> bool:
    return a.keys() == b.keys() and all(
        a[n].keys() == b[n].keys() and all(np.array_equal(a[n][k], b[n][k]) for k in a[n])
        for n in a
    )


def test_repeat_renames_rule() -> None:
    assert repeat_renames(["fc", "act"], ["fc", "act#0", "act#1"]) == ({"act": "act#0"}, {})
    assert repeat_renames(["act#0", "act#1"], ["act"]) == ({}, {"act": "act#0"})
    assert repeat_renames(["act"], ["act"]) == ({}, {})
    assert repeat_renames(["act#0"], ["act#0"]) == ({}, {})
    # Both forms on the other side: nothing to align (merged as named).
    assert repeat_renames(["act"], ["act", "act#0"]) == ({}, {})
    # This side has its own act#0 already: its plain act is something else.
    assert repeat_renames(["act", "act#0"], ["act#0"]) == ({}, {})
    # A plain name with no numbered counterpart is left alone.
    assert repeat_renames(["act"], ["act#1"]) == ({}, {})


@pytest.mark.parametrize("swap", [False, True])
def test_iua_merge_files_a_plain_field_under_name0(swap: bool) -> None:
    once = _iua({"fc": FC[:12], "act": FIRST})  # rank 0: act ran once per pass
    twice = _iua({"fc": FC[12:21], "act#0": SECOND, "act#1": SECOND})  # rank 1: twice
    before = (_snapshot(once), _snapshot(twice))
    merged = twice.merge(once) if swap else once.merge(twice)
    assert set(merged.fields) == {"fc", "act#0", "act#1"}
    counts = {n: r.num_samples for n, r in merged.results.items()}
    assert counts == {"fc": 21, "act#0": 21, "act#1": 9}
    # The same as one accumulator that saw both first calls under act#0.
    alone = _iua({"act#0": np.concatenate([SECOND, FIRST] if swap else [FIRST, SECOND])})
    assert merged.results["act#0"].unit_inactive_count == alone.results["act#0"].unit_inactive_count
    # Pure: neither input changed (names included).
    assert _same(_snapshot(once), before[0]) and _same(_snapshot(twice), before[1])
    assert once.fields == ["fc", "act"] and twice.fields == ["fc", "act#0", "act#1"]


@pytest.mark.parametrize("swap", [False, True])
def test_pfa_merge_and_absorb_file_a_plain_field_under_name0(swap: bool) -> None:
    once = _pfa({"act": FIRST})
    twice = _pfa({"act#0": SECOND, "act#1": THIRD})
    before = (_snapshot(once), _snapshot(twice))
    merged = twice.merge(once) if swap else once.merge(twice)
    assert set(merged.fields) == {"act#0", "act#1"}
    assert merged.count("act#0") == len(FIRST) + len(SECOND)
    one_pass = _pfa({"act#0": np.concatenate([FIRST, SECOND])})
    np.testing.assert_allclose(
        merged.covariance("act#0"), one_pass.covariance("act#0"), rtol=1e-12, atol=1e-14
    )
    assert _same(_snapshot(once), before[0]) and _same(_snapshot(twice), before[1])
    # absorb (Ray's driver tree) renames its own state in place, never the other one.
    left, right = (twice, once) if swap else (once, twice)
    left = type(left).from_state_dict(left.state_dict())
    assert left.absorb(right) is left
    assert set(left.fields) == {"act#0", "act#1"} and left.count("act#0") == 21
    assert _same(_snapshot(right), before[0] if swap else before[1])


def test_merge_order_does_not_change_the_fields_or_counts() -> None:
    parts = [
        {"fc": FC[:12], "act": FIRST},
        {"fc": FC[12:21], "act#0": SECOND, "act#1": SECOND[:5]},
        {"fc": FC[21:], "act": THIRD},
    ]
    expected_fields = {"fc", "act#0", "act#1"}
    counts = {"fc": 28, "act#0": 28, "act#1": 5}
    for order in itertools.permutations(range(3)):
        iuas = [_iua(parts[i]) for i in order]
        left = iuas[0].merge(iuas[1]).merge(iuas[2])
        right = iuas[0].merge(iuas[1].merge(iuas[2]))
        tree = merge_all(iuas)
        for acc in (left, right, tree):
            assert set(acc.fields) == expected_fields
            assert {n: r.num_samples for n, r in acc.results.items()} == counts
        assert (
            left.results["act#0"].unit_inactive_count == right.results["act#0"].unit_inactive_count
        )
        pfas = [_pfa(parts[i]) for i in order]
        for acc in (pfas[0].merge(pfas[1]).merge(pfas[2]), pfas[0].merge(pfas[1].merge(pfas[2]))):
            assert set(acc.fields) == expected_fields
            assert {n: acc.count(n) for n in acc.fields} == counts


def test_iua_merge_carries_renamed_nonfinite_counts_and_field_set() -> None:
    bad = FIRST.copy()
    bad[0, 0] = np.nan
    once = IUA.accumulator(nonfinite="warn")
    with pytest.warns(RuntimeWarning):
        once.update("act", bad)
    twice = IUA.accumulator(nonfinite="warn")
    twice.update("act#0", SECOND)
    twice.update("act#1", THIRD)
    merged = once.merge(twice)
    assert merged.nonfinite_counts == {"act#0": 1}
    assert once.nonfinite_counts == {"act": 1}


def test_ray_entries_merge_through_the_same_rule() -> None:
    iray = pytest.importorskip("introscope.ray")
    for entry, make in ((iray.AccumulatorEntry(IUA.accumulator()), _iua), (iray.PFAEntry(), _pfa)):
        blocks = [make({"act": FIRST}), make({"act#0": SECOND, "act#1": THIRD})]
        shipped = [entry.from_state_dict(entry.state_dict(b)) for b in blocks]
        state = entry.merged(entry.merged(entry.driver_new(), shipped[0]), shipped[1])
        assert set(state.fields) == {"act#0", "act#1"}
        result = entry.finalize(state)
        assert result is not None
