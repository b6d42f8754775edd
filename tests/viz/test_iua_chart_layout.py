"""IUA.show's chart: the figure title clears the first panel's title at any panel count."""

from __future__ import annotations

import numpy as np
import pytest

from introscope.base import Batch, producer_from_batches
from introscope.introspectors import IUA


@pytest.mark.parametrize("panels", [1, 5, 20])
def test_figure_title_does_not_overlap_the_first_panel(panels: int) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fields = {f"l{i}": np.maximum(rng.normal(size=(30, 8)), 0) for i in range(panels)}
    iua = IUA.introspect(producer_from_batches(Batch(fields)), batch_size=30)
    axes = np.atleast_1d(IUA.show(iua, vis_type=IUA.VisType.CHART))
    fig = axes[0].figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    assert title.y0 > axes[0].get_tightbbox(renderer).y1
    plt.close(fig)
