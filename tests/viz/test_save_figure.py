"""introscope.viz.save_figure saves whatever show(..., vis_type=CHART) returns."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from introscope.base import Batch
from introscope.exceptions import IntroscopeValueError
from introscope.introspectors import IUA, PFA
from introscope.viz import save_figure

pytest.importorskip("matplotlib")


def _producer(arrays):
    def producer(batch_size: int):
        n = len(next(iter(arrays.values())))
        for i in range(0, n, batch_size):
            yield Batch({k: v[i : i + batch_size] for k, v in arrays.items()})

    return producer


@pytest.fixture
def arrays():
    rng = np.random.default_rng(1)
    return {"a": np.maximum(rng.standard_normal((30, 4)), 0), "b": rng.standard_normal((30, 3))}


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_liner_for_iua_and_pfa_charts(tmp_path, arrays) -> None:
    old = os.umask(0o022)
    try:
        iua = IUA.introspect(_producer(arrays), batch_size=8)
        several = IUA.show(iua, vis_type=IUA.VisType.CHART)
        assert isinstance(several, np.ndarray)  # DNIKit's return type is kept
        assert _is_png(save_figure(several, tmp_path / "iua.png"))
        one = IUA.show(iua, vis_type=IUA.VisType.CHART, response_names=["a"])
        assert _is_png(save_figure(one, tmp_path / "one.png", dpi=50))
        pfa = PFA.introspect(_producer(arrays), batch_size=8)
        ax = PFA.show(pfa.get_recipe(), vis_type=PFA.VisType.CHART)
        svg = save_figure(ax, tmp_path / "pfa.svg")
        assert svg.read_text().lstrip().startswith("<?xml")
        assert _is_png(save_figure(ax.figure, tmp_path / "fig.png"))
        modes = {stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}
        assert modes == {0o644}
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "fig.png",
            "iua.png",
            "one.png",
            "pfa.svg",
        ]
    finally:
        os.umask(old)


def test_not_a_chart_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(IntroscopeValueError, match="save_figure: expected what show"):
        save_figure({"not": "a chart"}, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
