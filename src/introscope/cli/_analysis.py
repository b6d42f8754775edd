"""Run the introspectors for the report and turn their results into plain rows for ``viz``.

This is the one place that knows both the introspector result types and the report's plain
dataclasses, so ``viz`` stays free of ``introspectors`` imports. The model pass (IUA and PFA)
is here; the data sections (DatasetReport) are in :mod:`._data_report`, re-exported.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ._data_report import (
    PROJECTIONS,
    RowDigests,
    data_section,
    projection_needs,
    projection_strategy,
    report_table,
    run_dataset_report,
)

if TYPE_CHECKING:
    from introscope.base import Batch, Producer

__all__ = [
    "Stages",
    "counted",
    "ModelFeed",
    "ModelPass",
    "run_model_pass",
    "iua_rows",
    "pfa_rows",
    "iua_heatmap_png",
    "run_dataset_report",
    "data_section",
    "report_table",
    "projection_strategy",
    "COMPONENTS",
    "PROJECTIONS",
    "projection_needs",
    "RowDigests",
]

#: Names accepted by ``--introspectors``.
COMPONENTS = ("iua", "pfa", "familiarity", "duplicates", "projection")


class Stages:
    """Numbered progress lines on stderr: ``[2/5] IUA on 3 layers ... done in 0.4 s``."""

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total = total
        self.index = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._start = 0.0

    def begin(self, text: str) -> None:
        self.index += 1
        self._start = time.perf_counter()
        if not self.quiet:
            print(f"[{self.index}/{self.total}] {text} ...", file=self.stream, flush=True)

    def end(self, text: str = "") -> None:
        if not self.quiet:
            took = time.perf_counter() - self._start
            extra = f" {text}" if text else ""
            print(f"      done in {took:.1f} s{extra}", file=self.stream, flush=True)


def counted(producer: Callable[[int], Any], total: int, desc: str) -> Producer:
    """``producer`` with a tqdm bar of samples out of ``total`` (when progress is on)."""
    from introscope._progress import progress_enabled

    def produce(batch_size: int) -> Iterator[Batch]:
        if not progress_enabled():
            yield from producer(batch_size)
            return
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=desc, unit="sample", leave=False) as bar:
            for batch in producer(batch_size):
                bar.update(batch.batch_size)
                yield batch

    return produce


def _pool_dims(info: Any) -> tuple[int, ...] | None:
    nd = len(info.shape)
    if nd <= 2:
        return None
    channel = info.channel_axis if info.channel_axis is not None else 1
    channel = channel % nd
    return tuple(d for d in range(1, nd) if d != channel)


@dataclass
class ModelPass:
    """What one pass of the model gave: IUA, PFA recipes (KL), or why PFA could not run."""

    iua: Any = None
    recipes: Any = None
    pfa_error: Exception | None = None


class ModelFeed:
    """IUA and PFA accumulators fed one batch of model responses at a time.

    IUA sees the responses as they are (per-channel view where the adapter knows the layout);
    PFA sees spatial responses max-pooled over their positions, as ``Pooler(MAX)`` would give.
    A PFA failure (for example NaN in a response) stops PFA only; IUA goes on. ``stage()`` is a
    pipeline stage that feeds the batches passing through it, so another introspector's pass
    over the same model (the data sections') can feed IUA and PFA too.
    """

    def __init__(self, model: Any, iua_layers: Sequence[str], pfa_layers: Sequence[str]) -> None:
        from introscope.introspectors import IUA, PFA

        infos = model.response_infos
        self.iua_layers, self.pfa_layers = list(iua_layers), list(pfa_layers)
        self.layers = list(dict.fromkeys([*iua_layers, *pfa_layers]))
        self.iua = IUA.accumulator(response_infos=infos) if iua_layers else None
        self.pfa = PFA.accumulator() if pfa_layers else None
        self.pool = {name: _pool_dims(infos[name]) for name in pfa_layers}
        self.pfa_error: Exception | None = None
        self.batches = 0
        self.samples = 0

    @property
    def desc(self) -> str:
        return "+".join(n for n, on in (("IUA", self.iua), ("PFA", self.pfa)) if on is not None)

    def feed(self, batch: Any) -> None:
        where = f"batch {self.batches}"
        if self.iua is not None:
            for name in self.iua_layers:
                self.iua.update(name, batch.fields[name], where=where)
        if self.pfa is not None and self.pfa_error is None:
            try:
                for name in self.pfa_layers:
                    x, dims = batch.fields[name], self.pool[name]
                    self.pfa.update(name, x if dims is None else np.max(x, axis=dims), where=where)
            except (ValueError, RuntimeError) as exc:
                self.pfa_error = exc
        self.batches += 1
        self.samples += batch.batch_size

    def stage(self) -> Any:
        """A pipeline stage passing batches on unchanged after feeding them."""
        from introscope.base import PipelineStage

        feed = self

        class _Feeding(PipelineStage):
            def _get_batch_processor(self) -> Callable[[Any], Any]:
                def process(batch: Any) -> Any:
                    feed.feed(batch)
                    return batch

                return process

        return _Feeding()

    def finish(self) -> ModelPass:
        out = ModelPass(pfa_error=self.pfa_error)
        if self.iua is not None:
            out.iua = self.iua.finalize()
        if self.pfa is not None and out.pfa_error is None:
            try:
                out.recipes = self.pfa.finalize().get_recipe()
            except (ValueError, RuntimeError) as exc:
                out.pfa_error = exc
        return out


def run_model_pass(
    data: Any,
    model: Any,
    iua_layers: Sequence[str],
    pfa_layers: Sequence[str],
    batch_size: int,
    total: int,
) -> ModelPass:
    """IUA over ``iua_layers`` and PFA recipes of ``pfa_layers`` from one pass of the model."""
    from introscope.base import pipeline
    from introscope.base._producer import checked_batches

    feed = ModelFeed(model, iua_layers, pfa_layers)
    producer = counted(pipeline(data, model(feed.layers)), total, feed.desc)
    for batch in checked_batches(producer, batch_size, what="model pass"):
        feed.feed(batch)
    return feed.finish()


def iua_rows(iua: Any, model: Any | None, order: Sequence[str]) -> list[Any]:
    """One :class:`IUARow` per response, in model order."""
    from introscope.viz._report_page import IUARow

    summary = {r["response"]: r for r in iua.summary()}
    rows = []
    for name in order:
        r = summary.get(name)
        if r is None:
            continue
        kind = model.response_infos[name].layer.kind.name if model is not None else ""
        rows.append(
            IUARow(
                name=name,
                kind=kind,
                shape=tuple(int(d) for d in r["shape"]),
                samples=int(r["samples"]),
                units=int(r["units"]),
                mean_inactive=float(r["mean inactive"]),
                dead_units=int(r["dead units"]),
                mostly_dead_units=int(r["mostly dead units"]),
                channels=None if r["channels"] is None else int(r["channels"]),
                dead_channels=None if r["channels"] is None else int(r["dead channels"]),
            )
        )
    return rows


def pfa_rows(recipes: Any, order: Sequence[str]) -> list[Any]:
    """One :class:`PFARow` per layer, in model order: the rows of ``PFA.show``'s table
    (``recipe_rows``), so the layers PFA could not analyse (``recipes.failed``) are rows too,
    with its reason as their note."""
    from introscope.introspectors.pfa import recipe_rows
    from introscope.viz._report_page import PFARow

    rows = {str(r["layer name"]): r for r in recipe_rows([recipes])}
    names = [n for n in order if n in rows] + [n for n in rows if n not in order]
    out = []
    for name in names:
        r = rows[name]
        if r.get("note"):
            out.append(PFARow(name=name, original=None, recommended=None, note=str(r["note"])))
            continue
        out.append(
            PFARow(
                name=name,
                original=int(r["original count"]),
                recommended=int(r["recommended count"]),
                units_to_keep=sorted(int(u) for u in r["units to keep"]),
                strategy="KL",
            )
        )
    return out


def iua_heatmap_png(iua: Any, title: str) -> bytes:
    """The IUA heatmap figure (one panel per response) as PNG bytes."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    from introscope.introspectors import IUA
    from introscope.viz._figure import LITERAL

    axes = IUA.show(iua, vis_type=IUA.VisType.CHART)
    fig = np.asarray(axes, dtype=object).flat[0].figure
    fig.suptitle(title, fontsize=10, **LITERAL)  # a file name, drawn as it is
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
