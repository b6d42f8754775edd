"""The accumulator contract: field sets, error context, NaN/Inf policy, merge, state_dict, save."""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.introspectors._accumulator import (
    Accumulator,
    Capabilities,
    State,
    StateError,
    accumulate,
    merge_all,
)


class Sums(State):
    """The docstring's example state: column sums and a count."""

    capabilities = Capabilities(mergeable=True, exact=False, passes=1, grows_with=("units",))

    def __init__(self, units: int) -> None:
        self.n, self.total = 0, np.zeros(units)

    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        x = np.asarray(array)
        if x.ndim != 2 or x.shape[1] != self.total.shape[0]:
            raise StateError(f"has shape {x.shape}; expected (samples, {self.total.size})")
        self.total += x.sum(axis=0, dtype=np.float64)
        self.n += len(x)
        return 0

    def merged(self, other: Sums) -> Sums:
        out = Sums(self.total.size)
        out.n, out.total = self.n + other.n, self.total + other.total
        return out

    def result(self) -> np.ndarray:
        return self.total / self.n

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Sums:
        out = cls(len(state["total"]))
        out.n, out.total = int(state["n"]), np.array(state["total"], dtype=np.float64)
        return out

    @property
    def nbytes(self) -> int:
        return self.total.nbytes


class Means(Accumulator):
    owner = "Means"
    state_type = Sums
    nonfinite_policies = ("raise", "warn")

    def __init__(self, *, scale: float = 1.0, nonfinite: str = "raise") -> None:
        super().__init__(nonfinite=nonfinite)
        self.scale = scale

    def new_state(self, field: str, array: Any) -> Sums:
        return Sums(np.shape(array)[-1])  # update() checks the rest

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "nonfinite": self.nonfinite_policy}

    def finalize(self) -> dict[str, np.ndarray]:
        return {name: self.scale * s.result() for name, s in self.states.items()}


def _producer(arrays: dict[str, np.ndarray]):
    n = len(next(iter(arrays.values())))

    def producer(batch_size: int):
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"a": rng.standard_normal((50, 4)), "b": rng.standard_normal((50, 2))}


def test_accumulate_feeds_every_accumulator_once(data) -> None:
    calls = []

    def producer(batch_size: int):
        calls.append(batch_size)
        yield from _producer(data)(batch_size)

    one, two = Means(), Means(scale=2.0)
    r1, r2 = accumulate(producer, one, two, batch_size=8)
    assert calls == [8] and one.batches_seen == 7 and two.batches_seen == 7
    np.testing.assert_allclose(r1["a"], data["a"].mean(axis=0))
    np.testing.assert_allclose(r2["b"], 2 * data["b"].mean(axis=0))
    accs = accumulate(producer, Means(), batch_size=50, finalize=False)
    assert isinstance(accs[0], Means) and accs[0].fields == ["a", "b"]


def test_errors_name_owner_field_and_batch(data) -> None:
    acc = Means()
    with pytest.raises(
        IntroscopeValueError, match=r"^Means: response 'a' \(update\(\)\) has shape"
    ):
        acc.update("a", np.zeros(3))
    assert acc.fields == []  # a rejected first batch leaves no state
    acc.update_batch(Batch({"a": data["a"][:5], "b": data["b"][:5]}))
    with pytest.raises(IntroscopeValueError, match=r"Means: batch 1 has fields \['a'\], earlier"):
        acc.update_batch(Batch({"a": data["a"][:5]}))
    with pytest.raises(IntroscopeValueError, match=r"Means: response 'b' \(batch 1\) has shape"):
        acc.update_batch(Batch({"a": data["a"][:5], "b": data["a"][:5]}))
    with pytest.raises(IntroscopeValueError, match="at least one accumulator"):
        accumulate(_producer(data), batch_size=4)
    with pytest.raises(IntroscopeValueError, match="argument 0 is a str"):
        accumulate(_producer(data), "IUA", batch_size=4)  # type: ignore[arg-type]
    with pytest.raises(IntroscopeValueError, match="batch_size"):
        accumulate(_producer(data), Means(), batch_size=0)
    with pytest.raises(IntroscopeError, match="yielded no batch"):
        accumulate(lambda bs: iter(()), Means(), batch_size=4)
    with pytest.raises(IntroscopeValueError, match="nonfinite must be one of 'raise', 'warn'"):
        Means(nonfinite="ignore")


def test_nonfinite_policy_for_states_that_do_not_check(data) -> None:
    bad = data["a"].copy()
    bad[3, 1] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(
        IntroscopeValueError, match=r"'a' \(batch 0\) has 2 NaN or Inf values.*warn"
    ):
        accumulate(_producer({"a": bad}), Means(), batch_size=10)
    acc = Means(nonfinite="warn")
    with pytest.warns(RuntimeWarning, match=r"Means: NaN or Inf values kept: 'a': 2") as seen:
        accumulate(_producer({"a": bad}), acc, batch_size=10)
    assert len(seen) == 1  # one summary warning, not one per batch
    assert acc.nonfinite_counts == {"a": 2}
    direct = Means(nonfinite="warn")
    with pytest.warns(
        RuntimeWarning, match=r"'a' \(update\(\)\) has 2 NaN or Inf values out of 200"
    ):
        direct.update("a", bad)


def test_merge_is_pure_associative_and_checks_settings(data) -> None:
    parts = [Means() for _ in range(3)]
    for i, acc in enumerate(parts):
        acc.update_batch(Batch({k: v[i * 10 : i * 10 + 10] for k, v in data.items()}))
    before = parts[0].states["a"].total.copy()
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    np.testing.assert_array_equal(parts[0].states["a"].total, before)  # inputs unchanged
    for name in data:
        np.testing.assert_allclose(left.finalize()[name], data[name][:30].mean(axis=0))
        np.testing.assert_allclose(left.finalize()[name], right.finalize()[name])
    tree = merge_all(parts)
    assert tree.batches_seen == 3 and tree.states["a"].n == 30
    only_one = Means()
    only_one.update("c", data["a"])
    union = parts[0].merge(only_one)
    assert union.fields == ["a", "b", "c"]
    union.states["c"].total[0] = 99.0  # a copy, not a shared state
    assert only_one.states["c"].total[0] != 99.0
    with pytest.raises(IntroscopeValueError, match=r"different settings \{'scale': \(1.0, 2.0\)\}"):
        parts[0].merge(Means(scale=2.0))
    with pytest.raises(TypeError, match="can only merge with another Means"):
        parts[0].merge(object())  # type: ignore[arg-type]


def test_reset_rename_and_sizes(data) -> None:
    acc = Means()
    acc.update_batch(Batch(data))
    assert acc.nbytes == 6 * 8
    acc.rename_field("a", "a#0")
    assert acc.fields == ["a#0", "b"]
    acc.update_batch(Batch({"a#0": data["a"], "b": data["b"]}))  # the field set followed
    with pytest.raises(IntroscopeValueError, match="'b' exists"):
        acc.rename_field("a#0", "b")
    acc.rename_field("missing", "x")  # no-op
    acc.reset()
    assert acc.fields == [] and acc.batches_seen == 0 and acc.nbytes == 0
    acc.update_batch(Batch({"z": data["a"]}))  # a new field set after reset
    assert acc.fields == ["z"]
    assert Sums.capabilities.grows_with == ("units",) and Sums.capabilities.passes == 1


def test_state_dict_round_trip_without_pickle(tmp_path, data) -> None:
    acc = Means(scale=3.0)
    accumulate(_producer(data), acc, batch_size=16, finalize=False)
    sd = acc.state_dict()
    assert all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in sd.values())
    np.savez(tmp_path / "raw.npz", **sd)
    with np.load(tmp_path / "raw.npz", allow_pickle=False) as loaded:
        back = Means.from_state_dict(dict(loaded))
    assert back.scale == 3.0 and back.batches_seen == acc.batches_seen
    for name in data:
        np.testing.assert_array_equal(back.finalize()[name], acc.finalize()[name])
    # The field set is restored: a batch with other fields is still refused.
    with pytest.raises(IntroscopeValueError, match="earlier batches had"):
        back.update_batch(Batch({"a": data["a"]}))
    with pytest.raises(IntroscopeValueError, match="not an accumulator state_dict"):
        Means.from_state_dict({"a": np.zeros(2)})


def test_save_is_atomic_with_umask_permissions(tmp_path, monkeypatch, data) -> None:
    acc = Means()
    accumulate(_producer(data), acc, batch_size=25, finalize=False)
    path = tmp_path / "means.npz"
    old = os.umask(0o027)
    try:
        acc.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["means.npz"]  # no temporary left behind
    back = Means.load(path)
    np.testing.assert_array_equal(back.finalize()["a"], acc.finalize()["a"])

    def interrupted(handle: Any, **_: Any) -> None:
        handle.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", interrupted)
    acc.update("a", data["a"])
    with pytest.raises(OSError, match="disk full"):
        acc.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["means.npz"]  # the old file is intact
    np.testing.assert_array_equal(Means.load(path).finalize()["a"], back.finalize()["a"])


def test_load_refuses_other_files(tmp_path, data) -> None:
    from introscope.introspectors import IUA

    acc = Means()
    acc.update("a", data["a"])
    acc.save(tmp_path / "m.npz")
    with pytest.raises(IntroscopeError, match=r"holds a 'Means', not a 'IUA'.*Means.load"):
        IUA.load(tmp_path / "m.npz")
    with pytest.raises(FileNotFoundError, match="no file at"):
        Means.load(tmp_path / "absent.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    with pytest.raises(IntroscopeError, match="not an introscope .npz file"):
        Means.load(tmp_path / "plain.npz")


def test_docstring_example_is_this_state() -> None:
    import introscope.introspectors._accumulator as accumulator_module
    import introscope.introspectors._state_contract as state_module

    doc = (state_module.__doc__ or "") + (accumulator_module.__doc__ or "")
    for line in ("class MySums(State):", "def merged(self, other):", "def finalize(self):"):
        assert line in doc
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Means().finalize() == {}


def test_a_batch_rejected_part_way_is_never_silently_kept(tmp_path):
    # Field "a" takes the batch in, then "b" holds a NaN: the responses no longer cover the
    # same samples, so going on (or finishing) says so until reset().
    from introscope.introspectors import IUA, PFA

    for acc in (IUA(), PFA.accumulator()):
        acc.update_batch(Batch({"a": np.ones((3, 2)), "b": np.ones((3, 2))}))
        bad = np.ones((3, 2))
        bad[0, 0] = np.nan
        with pytest.raises(IntroscopeValueError, match="NaN"):
            acc.update_batch(Batch({"a": np.ones((3, 2)), "b": bad}))
        for go_on in (
            lambda a: a.update_batch(Batch({"a": np.ones((3, 2)), "b": np.ones((3, 2))})),
            lambda a: a.finalize(),
            lambda a: a.save(tmp_path / "s.npz"),
        ):
            with pytest.raises(IntroscopeValueError, match="rejected at response 'b' after 'a'"):
                go_on(acc)
        acc.reset()
        acc.update_batch(Batch({"a": np.ones((3, 2)), "b": np.ones((3, 2))}))
        acc.finalize()
    # A batch rejected at its first field changed nothing: the accumulator goes on.
    iua = IUA()
    with pytest.raises(IntroscopeValueError):
        iua.update_batch(Batch({"a": np.full((2, 2), np.nan), "b": np.ones((2, 2))}))
    iua.update_batch(Batch({"a": np.ones((2, 2)), "b": np.ones((2, 2))}))
    assert iua.finalize().results["a"].num_samples == 2


def test_damaged_or_inconsistent_saved_states_are_clear_errors(tmp_path):
    import json

    from introscope.introspectors import IUA, PFA
    from introscope.introspectors.pfa import PFACovarianceState

    iua = IUA()
    iua.update("relu", np.maximum(np.random.default_rng(0).normal(size=(10, 4)), 0))
    iua.save(tmp_path / "iua.npz")
    raw = (tmp_path / "iua.npz").read_bytes()
    (tmp_path / "half.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    for name in ("half", "empty", "flip"):
        with pytest.raises(IntroscopeError, match="is damaged"):
            IUA.load(tmp_path / f"{name}.npz")
    header = {"type": "IUA", "kind": "state", "format": 1}
    np.savez(tmp_path / "bare.npz", __introscope__=np.array(json.dumps(header)))
    with pytest.raises(IntroscopeValueError, match="incomplete or inconsistent .missing 'config'"):
        IUA.load(tmp_path / "bare.npz")
    pfa = PFA.accumulator()
    pfa.update("fc", np.random.default_rng(0).normal(size=(10, 4)))
    pfa.save(tmp_path / "pfa.npz")
    parts = dict(np.load(tmp_path / "pfa.npz"))
    parts["0.outer"] = np.zeros((3, 3))
    np.savez(tmp_path / "pfa_bad.npz", **parts)
    with pytest.raises(IntroscopeValueError, match="'fc' holds inconsistent sums"):
        PFACovarianceState.load(tmp_path / "pfa_bad.npz")


def test_iua_skips_a_batch_without_rows():
    from introscope.introspectors import IUA

    def producer(batch_size):
        yield Batch({"r": np.ones((3, 2, 2))})
        yield Batch({"r": np.ones((0, 2, 2))})
        yield Batch({"r": np.zeros((2, 2, 2))})

    assert IUA.introspect(producer, batch_size=4).results["r"].num_samples == 5
