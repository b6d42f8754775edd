"""``introscope demo``: the digits CNN and its dying-ReLU twin, side by side, in one report."""

from __future__ import annotations

import datetime
import os
import pathlib
import sys
import time
from typing import Any, TextIO, cast

import numpy as np

from introscope.exceptions import require_all

from . import _analysis as A
from ._data import DataSource
from ._data_report import projection_needs
from ._output import check_output_folder, check_output_names
from ._report_files import RunOutput, data_health, model_health, write_report

__all__ = ["run_demo"]

_VARIANTS = (("healthy", False), ("dying ReLU", True))


def _side_by_side(tables: dict[str, Any], index: str, columns: list[str]) -> str:
    import pandas as pd

    joined = pd.concat({name: t.set_index(index)[columns] for name, t in tables.items()}, axis=1)
    with pd.option_context("display.width", 200, "display.precision", 1):
        return cast(str, joined.to_string())


def _digits_source(data: Any) -> DataSource:
    """The held-out digits as a DataSource: ids ``digit-<index>``, the 8x8 images as thumbnails."""
    from introscope.base import Batch

    xs, labels, ids = [], [], []
    for batch in data(512):
        xs.append(np.asarray(batch.fields["samples"]))
        labels += [str(v) for v in batch.metadata[Batch.StdKeys.LABELS]["label"]]
        ids += [f"digit-{i}" for i in batch.metadata[Batch.StdKeys.IDENTIFIER]]
    x = np.concatenate(xs)
    return DataSource("arrays", pathlib.Path("sklearn digits"), ids, labels, "samples", array=x)


def _data_pass(
    source: DataSource,
    model: Any,
    iua_layers: list[str],
    pfa_layers: list[str],
    batch_size: int,
    projection: str,
    seed: int,
    stages: A.Stages,
    output: RunOutput,
) -> tuple[Any, A.ModelPass | None]:
    """The data sections on ``relu3`` of ``model``; the same pass feeds its IUA and PFA.

    Returns (the data section, the IUA/PFA results, or None when not every sample went
    through the pass and model_health must make its own).
    """
    from introscope.base import pipeline
    from introscope.processors import FieldRemover

    feed = A.ModelFeed(model, iua_layers, pfa_layers)
    layers = list(dict.fromkeys([*feed.layers, "relu3"]))
    producer = pipeline(
        source.producer, model(layers), feed.stage(), FieldRemover("relu3", keep=True)
    )
    section = data_health(
        producer=producer,
        source=source,
        response="relu3 of the healthy CNN",
        components=["familiarity", "duplicates", "projection"],
        batch_size=batch_size,
        projection=projection,
        max_thumbnails=5000,
        seed=seed,
        stages=stages,
        output=output,
        total=len(source),
    )
    return section, (feed.finish() if feed.samples == len(source) else None)


def run_demo(
    out: str | os.PathLike[str] = "out",
    *,
    batch_size: int = 128,
    seed: int = 0,
    cache: bool = True,
    pfa: bool = True,
    data: bool = True,
    projection: str = "umap",
    stream: TextIO | None = None,
    quiet: bool = False,
) -> list[pathlib.Path]:
    """IUA/PFA on the digits CNN and its dying-ReLU twin, data health of the held-out digits.

    Prints the tables side by side on ``stream`` (stdout by default) and writes ``report.html``
    with its results under ``out``; returns the heatmap PNGs written (the report is beside them).
    """
    os.environ.setdefault("MPLBACKEND", "Agg")  # files only, never a window
    import introscope.samples as samples
    from introscope.introspectors import IUA, PFA
    from introscope.viz._report_page import Report

    stream = stream or sys.stdout
    started = time.perf_counter()

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    out_dir = check_output_folder(out)  # before training and analysing, not after
    names = ["report.html"]
    for tag in ("healthy", "dying_relu"):
        names += [f"iua_{tag}.png", f"iua_{tag}.json", f"pfa_{tag}.json"]
    check_output_names(out_dir, names + (["dataset_report.parquet"] if data else []))
    # Every missing extra named at once, before anything runs.
    needs = [("torch", "torch", "the demo's CNNs"), ("matplotlib", "report", "the heatmaps")]
    if data:
        needs.append(("pyarrow", "report", "the report's Parquet table"))
        needs += projection_needs(projection)
    require_all(needs)
    components = ["iua", *(["pfa"] if pfa else [])]
    # per CNN: loading it, then one pass of it for IUA and PFA
    stages = A.Stages(1 + 2 * 2 + (2 if data else 0) + 1, quiet=quiet)
    # The split the CNNs were trained on (``seed`` is their training seed): these images are
    # held out from training whatever the seed.
    stages.begin("loading the held-out digits")
    source = _digits_source(samples.load_digits_dataset().subset(datasets="test"))
    n = len(source)
    stages.end(f"({n} images of 8x8)")
    say(f"introscope demo: a tiny CNN on the scikit-learn digits ({n} held-out images)")
    output = RunOutput()
    sections = []
    iua_tables: dict[str, Any] = {}
    pfa_tables: dict[str, Any] = {}
    data_section = None
    kinds = None
    for label, dying in _VARIANTS:
        stages.begin(f"the {label} CNN (training it unless cached)")
        t0 = time.perf_counter()
        model = samples.load_digits_cnn(dying_relu=dying, seed=seed, cache=cache)
        acc = samples.digits_cnn_accuracy(model.module)
        stages.end()
        say(f"  {label:<10} test accuracy {acc:6.1%}  (ready in {time.perf_counter() - t0:.1f} s)")
        from introscope.base import ResponseInfo

        kinds = ResponseInfo.LayerKind
        infos = model.response_infos.values()
        relus = [i.name for i in infos if i.layer.kind == kinds.RELU]
        convs = [i.name for i in infos if i.layer.kind == kinds.CONV_2D]
        tag = "dying_relu" if dying else "healthy"
        recipe = samples.DIGITS_CNN_RECIPES[tag] if hasattr(samples, "DIGITS_CNN_RECIPES") else {}
        notes = [f"test accuracy {acc:.1%}"]
        if recipe:
            notes.append(
                f"trained {int(recipe['epochs'])} epochs with Adam at learning rate {recipe['lr']:g}"
            )
        done = None
        if data and not dying:
            # One pass of the healthy CNN: the data sections' pass feeds its IUA and PFA too.
            data_section, done = _data_pass(
                source, model, relus, convs if pfa else [], batch_size, projection, seed,
                stages, output,
            )  # fmt: skip
        section, iua, recipes = model_health(
            name=f"{label} CNN",
            tag=tag,
            source="introscope.samples.load_digits_cnn" + ("(dying_relu=True)" if dying else "()"),
            model=model,
            data=source.producer,
            total=n,
            iua_layers=relus,
            pfa_layers=convs,
            components=components,
            batch_size=batch_size,
            stages=stages,
            output=output,
            notes=notes,
            done=done,
        )
        sections.append(section)
        if iua is not None:
            iua_tables[label] = IUA.show(iua, details=True)
        if recipes is not None:
            pfa_tables[label] = PFA.show(recipes)
    if iua_tables:
        say("\nInactive Unit Analysis of the ReLU outputs (units inactive per sample; dead =")
        say("inactive on every sample):")
        columns = ["units", "mean inactive", "dead units (%)", "channels", "dead channels"]
        say(_side_by_side(iua_tables, "response", columns))
    if pfa_tables:
        say("\nPrincipal Filter Analysis of the conv layers (max-pooled; KL strategy):")
        say(_side_by_side(pfa_tables, "layer name", ["original count", "recommended count"]))
    stages.begin(f"writing {out_dir}")
    facts = [
        ("data", f"scikit-learn digits: {n} held-out 8x8 images, 10 labels"),
        ("models", "the tiny digits CNN and its twin trained at a 15x learning rate"),
        ("training seed", str(seed)),
        ("created", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    report = Report(
        title="introscope demo report",
        subtitle="digits CNN: healthy vs dying ReLU",
        facts=facts,
        models=sections,
        data=data_section,
        data_skipped=None if data else "Skipped (--no-data).",
        comparison_note=(
            "The same architecture trained with a learning rate fifteen times too high: its "
            "accuracy stays high, but many ReLU units and whole channels never fire on any "
            "held-out image, and PFA recommends fewer units for its conv layers."
        ),
    )
    facts.append(("run time", f"{time.perf_counter() - started:.1f} s"))
    path = write_report(out_dir, report, output)
    stages.end()
    saved = [out_dir / name for name in output.files if name.endswith(".png")]
    say("\nIUA heatmaps saved:")
    for p in saved:
        say(f"  {p}")
    say(f"\nReport: {path}")
    say(f"Open it in a browser: file://{path.resolve()}")
    return saved
