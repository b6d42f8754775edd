"""Model and data sections of a run, and writing ``report.html`` with its results beside it."""

from __future__ import annotations

import json
import logging
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from introscope._atomic import TEMP_NAME, new_file_mode

from . import _analysis as A
from . import _data_report as D
from ._console import error_text
from ._output import write_bytes, write_json, write_parquet, write_text
from ._tables import NO_LABEL

_LOG = logging.getLogger("introscope.cli")

__all__ = [
    "RunOutput",
    "model_health",
    "data_health",
    "write_report",
    "iua_file_row",
    "MOSTLY_DEAD_THRESHOLD",
]


@dataclass
class RunOutput:
    """Files to write beside the report: name -> (bytes | JSON object | DataFrame, description)."""

    files: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def add(self, name: str, content: Any, description: str) -> None:
        self.files[name] = (content, description)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def model_health(
    *,
    name: str,
    tag: str,
    source: str,
    model: Any,
    data: Any,
    total: int,
    iua_layers: Sequence[str],
    pfa_layers: Sequence[str],
    components: Sequence[str],
    batch_size: int,
    stages: A.Stages,
    output: RunOutput,
    notes: Sequence[str] = (),
    done: A.ModelPass | None = None,
) -> tuple[Any, Any, Any]:
    """Run IUA and PFA on one model (or take ``done``, a pass already made); return
    (ModelSection, iua, recipes)."""
    from introscope.introspectors import PFA
    from introscope.viz._report_page import ModelSection

    order = list(model.response_infos)
    section = ModelSection(name=name, source=source, notes=list(notes))
    skipped = []
    want_iua = "iua" in components and bool(iua_layers)
    want_pfa = "pfa" in components and bool(pfa_layers)
    result = A.ModelPass()
    if want_iua or want_pfa:
        what = " and ".join(n for n, on in (("IUA", want_iua), ("PFA", want_pfa)) if on)
        layers = len(set(iua_layers if want_iua else ()) | set(pfa_layers if want_pfa else ()))
        if done is not None:
            stages.begin(f"{what} of {name}: {layers} layers, fed by the data pass")
            result = done
        else:
            stages.begin(f"{what} of {name}: one pass over {layers} layers x {total} samples")
            result = A.run_model_pass(
                data,
                model,
                iua_layers if want_iua else (),
                pfa_layers if want_pfa else (),
                batch_size,
                total,
            )
    iua, recipes = result.iua, result.recipes
    summary_parts = []
    if iua is not None:
        section.iua = A.iua_rows(iua, model, order)
        section.heatmap_png = A.iua_heatmap_png(
            iua, f"IUA, {name}: share of samples each unit is inactive"
        )
        section.heatmap_file = f"iua_{tag}.png"
        output.add(section.heatmap_file, section.heatmap_png, f"IUA heatmaps of {name}")
        summary = []
        for row in iua.summary():
            info = model.response_infos[row["response"]]
            summary.append({**iua_file_row(row), "kind": info.layer.kind.name})
        summary.sort(key=lambda r: order.index(r["response"]))
        output.add(f"iua_{tag}.json", _jsonable(summary), f"IUA summary per layer of {name}")
        dead = sum(r.dead_units for r in section.iua)
        units = sum(r.units for r in section.iua)
        summary_parts.append(f"{dead} of {units} units dead")
    elif "iua" in components:
        if len(order) <= 1:  # e.g. TorchScript: only the model's output is a response
            skipped.append(f"IUA: {_NO_INNER_LAYERS}")
        else:
            skipped.append("IUA: no layers to analyse (choose some with --layers or --layer-kind).")
    if result.pfa_error is not None:
        skipped.append(f"PFA could not run: {error_text(result.pfa_error)}")
        summary_parts.append("PFA failed, see the report")
    elif recipes is not None:
        section.pfa = A.pfa_rows(recipes, order)
        analysed = [r for r in section.pfa if not r.note]
        failed = [r.name for r in section.pfa if r.note]
        if analysed:
            plan = PFA.pruning_plan(recipes).to_dict()
            output.add(
                f"pfa_{tag}.json",
                _jsonable(_pfa_file(section.pfa, plan)),
                f"PFA recommended sizes and units to keep of {name} (a pruning plan: "
                f"introscope.introspectors.pfa.PFAPruningPlan.load reads it)"
                + (f"; not analysed, under not_analysed: {', '.join(failed)}" if failed else ""),
            )
            summary_parts.append(
                f"{sum(r.recommended or 0 for r in analysed)} of "
                f"{sum(r.original or 0 for r in analysed)} units recommended"
                + (f", {len(failed)} layer(s) not analysed" if failed else "")
            )
        else:  # nothing to prune: no plan file, and the report says why
            why = "; ".join(f"{r.name}: {r.note}" for r in section.pfa)
            skipped.append(
                f"PFA could analyse none of its layers ({why}), so no pfa_{tag}.json was written."
            )
            summary_parts.append("PFA analysed no layer")
    if want_iua or want_pfa:
        stages.end(f"({'; '.join(summary_parts)})")
    if "pfa" in components and not pfa_layers:
        skipped.append(
            f"PFA: {_NO_INNER_LAYERS}"
            if len(order) <= 1
            else "PFA: no conv or dense layers to analyse, besides those making the output "
            "(choose some with --layers or --layer-kind)."
        )
    # requested but not done: say so on stderr too, not only inside report.html
    blind = [line.split(":")[0] for line in skipped if line.endswith(_NO_INNER_LAYERS)]
    if blind:
        _LOG.warning("%s: %s %s", name, " and ".join(blind), _NO_INNER_LAYERS)
    for line in skipped:
        if not line.endswith(_NO_INNER_LAYERS):
            _LOG.warning("%s: %s", name, line)
    if "iua" not in components and "pfa" not in components:
        skipped.append("IUA and PFA: not requested (--introspectors has neither iua nor pfa).")
    section.skipped = skipped
    return section, iua, recipes


#: ``iua_<tag>.json``'s name for IUA.summary()'s ``"dead fraction"``: the share of samples a
#: unit must be inactive for to count as mostly dead (a threshold, not a share of units).
MOSTLY_DEAD_THRESHOLD = "mostly dead threshold (fraction of samples)"


def iua_file_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row of ``iua_<tag>.json``: IUA.summary()'s row with ``"dead fraction"`` (the
    threshold) named :data:`MOSTLY_DEAD_THRESHOLD`, and the shares of units (and channels) that
    are dead or mostly dead beside their counts."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[MOSTLY_DEAD_THRESHOLD if key == "dead fraction" else key] = value
        if key == "mostly dead units":
            units = row["units"]
            out["dead unit share"] = row["dead units"] / units if units else None
            out["mostly dead unit share"] = value / units if units else None
        if key == "mostly dead channels":
            ch = row.get("channels")
            out["dead channel share"] = row["dead channels"] / ch if ch else None
            out["mostly dead channel share"] = value / ch if ch else None
    return out


_NO_INNER_LAYERS = (
    "skipped, the model exposes no inner layers (only its output): a TorchScript file runs "
    "compiled code without hooks; give the model's state dict with --constructor module:Class "
    "instead."
)


def _pfa_file(rows: Sequence[Any], plan: dict[str, Any]) -> dict[str, Any]:
    """``pfa_<tag>.json``: a pruning plan that ``PFAPruningPlan.load`` reads (its ``format``,
    and per layer ``original_count``, ``keep`` and ``remove``), with the strategy and each
    layer's ``recommended_count`` beside them; the layers PFA could not analyse are under
    ``not_analysed``, each with the reason."""
    layers = plan.get("layers", {})
    out = {
        **plan,
        "strategy": "KL",
        "unit_selection": "L1Max",
        "layers": {
            r.name: {
                "original_count": r.original,
                "recommended_count": r.recommended,
                **{k: v for k, v in layers.get(r.name, {}).items() if k != "original_count"},
            }
            for r in rows
            if not r.note
        },
    }
    failed = {r.name: r.note for r in rows if r.note}
    if failed:
        out["not_analysed"] = failed
    return out


def data_health(
    *,
    producer: Any,
    source: Any,
    response: str,
    components: Sequence[str],
    batch_size: int,
    projection: str,
    max_thumbnails: int,
    seed: int,
    stages: A.Stages,
    output: RunOutput,
    total: int,
    input_digests: D.RowDigests | None = None,
) -> Any:
    """DatasetReport on ``producer`` (one 2-D response) as a DataSection; the table is saved.

    ``input_digests`` (wrapping the producer of the model's inputs) tells exact copies of an
    input apart from near duplicates even when the model's responses to them differ in their
    last bits."""
    parts = [c for c in ("familiarity", "duplicates", "projection") if c in components]
    stages.begin(f"{', '.join(parts)} of {total} samples ({response})")
    digests = D.RowDigests(digest="duplicates" in parts)  # also notes the field's name
    producer = digests.wrap(producer)
    report = D.run_dataset_report(
        A.counted(producer, total, "data"),
        parts,
        batch_size,
        projection=projection,
        seed=seed,
        total=total,
        # unlabelled data (every sample "(no label)") is one group: a familiarity per label
        # would refit the overall one, and repeat its column and its warnings
        split=any(label != NO_LABEL for label in source.labels),
    )
    field_name = digests.field_seen or response
    table = D.report_table(report.data, field_name)
    renamed = list(table.attrs.get("introscope", {}).get("columns", {}))
    named = (
        f" with the response name as it is ({', '.join(renamed)}; DNIKit's names in the schema "
        f"metadata 'introscope')"
        if renamed
        else ""
    )
    output.add(
        "dataset_report.parquet",
        table,
        f"DatasetReport table: DNIKit's columns{named}, plus projection_x/projection_y",
    )
    stages.end()
    stages.begin(f"thumbnails (at most {max_thumbnails})")
    names = {"umap": "UMAP", "tsne": "t-SNE", "pacmap": "PaCMAP", "pca": "PCA"}
    section = D.data_section(
        report.data,
        source,
        response,
        max_thumbnails=max_thumbnails,
        seed=seed,
        projection_name=names.get(projection, projection),
        digests=digests if "duplicates" in parts else None,
        input_digests=input_digests,
    )
    stages.end(f"({len(section.thumbnails)} embedded)")
    return section


def write_report(out_dir: pathlib.Path, report: Any, output: RunOutput) -> pathlib.Path:
    """Write every result file, then ``report.html`` (last, so a complete report means a complete
    run); return the report's path. An earlier run's ``report.html`` is removed before any file
    is replaced: a folder without one holds an incomplete run (interrupted while writing), never
    a report beside another run's results."""
    from introscope.viz._report_page import render_report

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.html").unlink(missing_ok=True)
    _remove_temp_files(out_dir)
    ours = {*output.files, "report.html"}
    stale = sorted(
        p.name for p in out_dir.iterdir() if p.is_file() and p.name not in ours and p.suffix in
        _SUFFIXES
    )  # fmt: skip
    if stale:
        _LOG.warning(
            "%s also holds files from an earlier run that this one did not write (not listed in "
            "the report): %s",
            out_dir,
            ", ".join(stale),
        )
    # Every file of this run gets the mode of a new file under the current umask, also where it
    # replaces an earlier run's file (whose mode atomic writes keep): the run's files hold the
    # same data, so a stricter umask now must not leave some of them as open as before.
    mode = new_file_mode()
    for name, (content, _) in output.files.items():
        path = out_dir / name
        if isinstance(content, bytes):
            write_bytes(path, content)
        elif isinstance(content, (dict, list)):
            write_json(path, content)
        elif isinstance(content, str):
            write_text(path, content)
        else:
            write_parquet(path, content)
        os.chmod(path, mode)
    report.files = [(name, desc) for name, (_, desc) in output.files.items()]
    path = out_dir / "report.html"
    write_text(path, render_report(report))  # a new file (removed above): the umask's mode
    return path


#: Suffixes of the files a report writes (an earlier run's are named when this one does not
#: write them again).
_SUFFIXES = (".html", ".json", ".png", ".parquet")


def _remove_temp_files(out_dir: pathlib.Path) -> None:
    """Remove the temporary files of report files (``.report.html.<12 hex>.tmp``, the names
    ``introscope._atomic`` gives them) that a killed run left in ``out_dir``; nothing else."""
    removed = []
    for p in out_dir.iterdir():
        match = TEMP_NAME.fullmatch(p.name)
        if match is None or not match.group(1).endswith(_SUFFIXES):
            continue
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        _LOG.info("removed temporary files an interrupted run left: %s", ", ".join(removed))


def dumps(obj: Any) -> str:
    """JSON text of ``obj`` (numpy scalars converted)."""
    return json.dumps(_jsonable(obj))
