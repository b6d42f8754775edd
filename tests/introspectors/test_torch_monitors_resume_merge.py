"""Monitors in a training checkpoint (accumulator files beside ``torch.save``, or tensors inside
it under ``torch.load``'s ``weights_only=True``), and merging two ranks' monitors that named a
shared module differently (``act`` on one, ``act#0``/``act#1`` on the other)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from introscope.introspectors import IUA, PFA
from introscope.introspectors.pfa import PFACovarianceState

torch = pytest.importorskip("torch")
nn = torch.nn


class Cond(nn.Module):
    """``act`` runs once per pass, or twice with ``twice=True``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x, twice=False):  # noqa: ANN001, ANN201
        h = self.act(self.fc(x))
        return self.act(h - 0.1) if twice else h


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def _train(net, iua_monitor, pfa_monitor, batches, opt) -> None:  # noqa: ANN001
    with iua_monitor, pfa_monitor:
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()


def _batches(seed: int, n: int = 4) -> list:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)
    ]


def _monitors(net, precision="auto"):  # noqa: ANN001, ANN202
    return IUA.monitor(net, ["1", "3"]), PFA.monitor(net, ["1", "3"], precision=precision)


def _assert_same_analyses(iua_a, iua_b, pfa_a, pfa_b, rtol: float) -> None:  # noqa: ANN001
    assert iua_a.fields == iua_b.fields == ["1", "3"]
    for name in iua_a.fields:
        a, b = iua_a.results[name], iua_b.results[name]
        assert a.num_samples == b.num_samples
        assert a.unit_inactive_count == b.unit_inactive_count
        np.testing.assert_array_equal(a.inactive_array, b.inactive_array)
    for name in ("1", "3"):
        np.testing.assert_allclose(pfa_a.covariance(name), pfa_b.covariance(name), rtol=rtol)


# The saved state comes back bit for bit and IUA's counts are exact; PFA's covariance after the
# resume equals the uninterrupted run's up to the rounding of its sums (the resumed sums are
# added in another order): float64 rounding with precision="float64", float32 products
# with "auto".
@pytest.mark.parametrize(("precision", "rtol"), [("auto", 1e-6), ("float64", 1e-12)])
@pytest.mark.parametrize("inside", [False, True], ids=["files-beside", "tensors-inside"])
def test_resume_from_a_torch_checkpoint_is_exact(
    tmp_path: pathlib.Path, inside: bool, precision: str, rtol: float
) -> None:
    first, second = _batches(1), _batches(2)
    # One uninterrupted run.
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    mi, mp = _monitors(net, precision)
    _train(net, mi, mp, first + second, opt)

    # The same run stopped after `first`, checkpointed, and resumed in a fresh model.
    net2 = _net()
    opt2 = torch.optim.SGD(net2.parameters(), lr=0.1)
    mi2, mp2 = _monitors(net2, precision)
    _train(net2, mi2, mp2, first, opt2)
    ckpt = tmp_path / "ckpt.pt"
    checkpoint = {"model": net2.state_dict(), "optimizer": opt2.state_dict()}
    if inside:  # the documented conversion: tensors and strings, no numpy arrays
        for key, acc in (("iua", mi2.accumulator), ("pfa", mp2.accumulator)):
            checkpoint[key] = {
                k: v.tolist() if v.dtype.kind == "U" else torch.tensor(v)
                for k, v in acc.state_dict().items()
            }
    else:
        mi2.accumulator.save(tmp_path / "ckpt.iua.npz")
        mp2.accumulator.save(tmp_path / "ckpt.pfa.npz")
    torch.save(checkpoint, ckpt)
    saved_iua, saved_pfa = mi2.accumulator.state_dict(), mp2.accumulator.state_dict()

    loaded = torch.load(ckpt)  # torch's default: weights_only=True
    net3 = _net()
    net3.load_state_dict(loaded["model"])
    opt3 = torch.optim.SGD(net3.parameters(), lr=0.1)
    opt3.load_state_dict(loaded["optimizer"])
    mi3, mp3 = _monitors(net3, precision)
    if inside:
        mi3.accumulator = IUA.from_state_dict(loaded["iua"])
        mp3.accumulator = PFACovarianceState.from_state_dict(loaded["pfa"])
    else:
        mi3.accumulator = IUA.load(tmp_path / "ckpt.iua.npz")
        mp3.accumulator = PFACovarianceState.load(tmp_path / "ckpt.pfa.npz")
    # The state came back exactly.
    for before, after in (
        (saved_iua, mi3.accumulator.state_dict()),
        (saved_pfa, mp3.accumulator.state_dict()),
    ):
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_array_equal(before[key], after[key])
    _train(net3, mi3, mp3, second, opt3)

    _assert_same_analyses(mi.accumulator, mi3.accumulator, mp.accumulator, mp3.accumulator, rtol)
    assert mp3.result.get_recipe().keys() == mp.result.get_recipe().keys()


def test_numpy_state_dict_inside_a_checkpoint_needs_the_documented_conversion(
    tmp_path: pathlib.Path,
) -> None:
    """Why the docs say to convert (or to keep a file beside): the default load refuses numpy."""
    acc = IUA.accumulator()
    acc.update("relu", np.maximum(np.random.default_rng(0).normal(size=(6, 3)), 0))
    torch.save({"iua": acc.state_dict()}, tmp_path / "raw.pt")
    with pytest.raises(Exception, match="weights_only"):
        torch.load(tmp_path / "raw.pt")
    # A trusted file may be read with weights_only=False; from_state_dict takes the arrays.
    back = IUA.from_state_dict(torch.load(tmp_path / "raw.pt", weights_only=False)["iua"])
    assert back.results["relu"].unit_inactive_count == acc.results["relu"].unit_inactive_count


def test_two_ranks_merge_a_module_seen_once_and_twice_per_pass() -> None:
    """The scenario of two DDP ranks: the module ``act`` ran once per pass on rank 0, twice on
    rank 1; its first calls merge under ``act#0``, as one monitor seeing both would name them."""
    torch.manual_seed(0)
    c = Cond().eval()
    z = torch.randn(20, 4)
    with torch.no_grad(), IUA.monitor(c) as r0, PFA.monitor(c, ["act"]) as p0:
        c(z[:10])
    with torch.no_grad(), IUA.monitor(c) as r1, PFA.monitor(c, ["act"]) as p1:
        c(z[10:], twice=True)
    # IUA.monitor watches the activations by default: act only.
    assert r0.result.fields == ["act"] and set(r1.result.fields) == {"act#0", "act#1"}
    # One monitor that saw both passes (renaming act -> act#0 itself).
    with torch.no_grad(), IUA.monitor(c) as one, PFA.monitor(c, ["act"]) as pone:
        c(z[:10])
        c(z[10:], twice=True)

    for merged in (r0.result.merge(r1.result), r1.result.merge(r0.result)):
        assert {n: r.num_samples for n, r in merged.results.items()} == {"act#0": 20, "act#1": 10}
        for name in ("act#0", "act#1"):
            assert (
                merged.results[name].unit_inactive_count
                == one.result.results[name].unit_inactive_count
            )
    assert r0.result.fields == ["act"]  # inputs unchanged

    pfa = p0.accumulator.merge(p1.accumulator)
    assert set(pfa.fields) == {"act#0", "act#1"} and pfa.count("act#0") == 20
    np.testing.assert_allclose(
        pfa.covariance("act#0"), pone.accumulator.covariance("act#0"), rtol=1e-6, atol=1e-9
    )
    assert p0.accumulator.fields == ["act"]
