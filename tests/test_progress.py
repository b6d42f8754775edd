"""introscope._progress: totals from the producer's size, on/off switch, Jupyter."""

from __future__ import annotations

import numpy as np

from introscope._progress import producer_size, progress, progress_enabled
from introscope.base import Batch, pipeline
from introscope.processors import Composer, Pooler
from introscope.samples import StubProducer


def _stub(n: int = 10) -> StubProducer:
    return StubProducer({"x": np.zeros((n, 2, 3))})


def test_sizes_of_known_producers_and_pipelines(tmp_path) -> None:
    from introscope.base import CachedProducer, TrainTestSplitProducer
    from introscope.processors import Cacher

    assert producer_size(_stub(10)) == 10
    split = ((np.zeros((6, 2)), np.zeros(6)), (np.zeros((4, 2)), np.zeros(4)))
    assert producer_size(TrainTestSplitProducer(split)) == 10
    pooled = pipeline(_stub(7), Pooler(dim=2, method=Pooler.Method.MAX))
    assert producer_size(pooled) == 7
    cached = pipeline(_stub(5), Cacher(tmp_path / "c"))
    assert producer_size(cached) == 5
    list(cached(2))
    assert producer_size(CachedProducer(tmp_path / "c")) == 5
    # a Composer may drop elements; an arbitrary callable has no known size
    assert producer_size(pipeline(_stub(5), Composer(lambda b: b))) is None
    assert producer_size(lambda batch_size: iter([])) is None


def test_bar_counts_samples_out_of_the_total(monkeypatch) -> None:
    import tqdm.auto

    made = []

    class Recorder:
        def __init__(self, iterable=None, **kwargs) -> None:
            self.kwargs, self.n = kwargs, 0
            made.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def update(self, n: int) -> None:
            self.n += n

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    monkeypatch.setenv("INTROSCOPE_PROGRESS", "1")
    batches = [Batch({"x": np.zeros((4, 1))}), Batch({"x": np.zeros((3, 1))})]
    assert list(progress(batches, "demo", total=7)) == batches
    assert made[0].kwargs["total"] == 7 and made[0].kwargs["unit"] == "sample"
    assert made[0].n == 7


def test_switch(monkeypatch) -> None:
    monkeypatch.setenv("INTROSCOPE_PROGRESS", "0")
    assert not progress_enabled()
    monkeypatch.setenv("INTROSCOPE_PROGRESS", "off")
    assert not progress_enabled()
    monkeypatch.setenv("INTROSCOPE_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.delenv("INTROSCOPE_PROGRESS")
    # pytest captures stderr (not a terminal) and this is no Jupyter kernel
    assert not progress_enabled()


def test_jupyter_kernels_get_bars(monkeypatch) -> None:
    import sys
    import types

    class ZMQInteractiveShell:  # the class name of the shell in IPython's Jupyter kernel
        pass

    class TerminalInteractiveShell:
        pass

    fake = types.SimpleNamespace(get_ipython=lambda: ZMQInteractiveShell())
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.delenv("INTROSCOPE_PROGRESS", raising=False)
    assert progress_enabled()
    fake.get_ipython = lambda: TerminalInteractiveShell()
    assert not progress_enabled()  # plain IPython on a captured stderr


def test_jupyter_without_ipywidgets_gets_the_text_bar_not_a_warning(monkeypatch):
    import importlib.util

    import tqdm.std

    from introscope import _progress

    monkeypatch.setattr(_progress, "_in_jupyter", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a),
    )
    assert _progress._tqdm_class() is tqdm.std.tqdm
