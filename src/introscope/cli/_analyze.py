"""``introscope analyze``: a model (optional) and data in, ``report.html`` and results out."""

from __future__ import annotations

import argparse
import datetime
import logging
import pathlib
import re
import time
from collections.abc import Sequence
from typing import Any

from introscope.exceptions import IntroscopeError, IntroscopeValueError, require_all

from . import _analysis as A
from . import _data_report as D
from ._data import Preprocess, load_data
from ._data_report import projection_needs
from ._models import (
    InputFileError,
    InputSpec,
    check_one_input,
    embedding_layer,
    input_spec,
    is_torch,
    load_model,
    select_layers,
)
from ._output import check_output_folder, check_output_names
from ._report_files import RunOutput, data_health, model_health, write_report
from ._tables import NO_LABEL

__all__ = ["run_analyze", "parse_components", "embedding_stage"]

_LOG = logging.getLogger("introscope.cli.analyze")

_DATA_PARTS = ("familiarity", "duplicates", "projection")


def parse_components(text: str | None, with_model: bool) -> list[str]:
    """``--introspectors iua,pfa,...`` as a list (all that apply when not given)."""
    if text is None:
        return list(A.COMPONENTS if with_model else _DATA_PARTS)
    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in A.COMPONENTS]
    if unknown or not parts:
        raise IntroscopeValueError(
            f"--introspectors {text!r}: unknown {unknown or 'empty list'}; choose from "
            f"{','.join(A.COMPONENTS)}"
        )
    if not with_model and any(p in ("iua", "pfa") for p in parts):
        raise IntroscopeValueError(
            "--introspectors iua/pfa need a model: pass --model PATH, or drop them for "
            "embeddings (familiarity,duplicates,projection)"
        )
    return list(dict.fromkeys(parts))


def embedding_stage(info_shape: Sequence[int | None], channel_axis: int | None) -> Any:
    """A stage making one vector per sample: spatial responses averaged over positions, other
    multi-dimensional ones flattened; None when the response is already 2-D."""
    from introscope.processors import Flattener, Pooler

    nd = len(info_shape)
    if nd <= 2:
        return None
    if channel_axis is not None:
        axis = channel_axis % nd
        return Pooler(dim=tuple(d for d in range(1, nd) if d != axis), method=Pooler.Method.AVERAGE)
    return Flattener()


def run_analyze(args: argparse.Namespace) -> pathlib.Path:
    """Run every requested introspector and write the report; return its path."""
    from introscope.base import pipeline
    from introscope.processors import FieldRemover
    from introscope.viz._report_page import Report

    started = time.perf_counter()
    with_model = args.model is not None
    components = parse_components(args.introspectors, with_model)
    data_parts = [c for c in components if c in _DATA_PARTS]
    # Found now rather than after the whole analysis: an --out that cannot be written, and
    # the Parquet writer the data table needs.
    check_output_folder(args.out)
    check_output_names(args.out, _output_names(components, with_model))
    # Every missing extra named at once (the model's own framework is checked when it loads).
    needs = []
    if data_parts:
        needs.append(("pyarrow", "report", "the report's Parquet table"))
    if "projection" in components:
        needs += projection_needs(args.projection)
    require_all(needs)
    _check_image_folder(pathlib.Path(args.data), pathlib.Path(args.out))
    # one pass of the model gives IUA and PFA
    n_stages = (1 if with_model else 0) + 1 + (1 if {"iua", "pfa"} & set(components) else 0)
    n_stages += 2 if data_parts else 0
    stages = A.Stages(n_stages + 1, quiet=args.quiet)
    model = spec = None
    torch_model = with_model and is_torch(args.model, args.constructor)

    def open_data() -> Any:
        source = load_data(
            args.data,
            spec=spec,
            with_model=with_model,
            image_size=tuple(args.image_size) if args.image_size else None,
            preprocess=Preprocess(args.scale, _tuple(args.mean), _tuple(args.std)),
            labels_csv=args.labels,
            out=args.out,
            color=getattr(args, "color", "auto"),
        )
        # A size given with --image-size or declared by the model is the one to use: only
        # a size chosen from the images is refused when its batches are too large.
        declared = spec is not None and spec.size is not None
        _check_batch_memory(source, args.batch_size, explicit=bool(args.image_size) or declared)
        return source

    if torch_model:
        # PyTorch declares no input: read the data first (images as CHW, PyTorch's layout) and
        # show the module one batch of it
        spec = InputSpec(None, "CHW", None, None)
        stages.begin(f"opening the data {args.data}")
        source = open_data()
        stages.end(f"({'; '.join(source.notes)})")
        stages.begin(f"loading the model {args.model}")
        example = next(iter(source.producer(2))).fields[source.field]
        try:
            try:
                model = load_model(
                    args.model, constructor=args.constructor, device=args.device, example=example
                )
            except IntroscopeError:
                if source.integer_dtype is None:
                    raise
                # Integer samples stay integers for token ids (an embedding layer); a model that
                # refuses them (a CNN given int16 scans) gets them as float32, as before.
                source.integers_as_float = True
                example = next(iter(source.producer(2))).fields[source.field]
                model = load_model(
                    args.model, constructor=args.constructor, device=args.device, example=example
                )
                _LOG.info("integer samples fed as float32: the model refused them as integers")
        except IntroscopeError as exc:
            if not isinstance(exc, (InputFileError, IntroscopeValueError)):
                _raise_if_channels_last(source, exc)  # the model ran on the example and failed
                _raise_if_grey(source, exc, getattr(args, "color", "auto"))
                _raise_if_colour(source, exc, getattr(args, "color", "auto"))
                _raise_if_image_size(source, exc, args.image_size)
            raise
        stages.end(f"({len(model.response_infos)} responses)")
    else:
        if with_model:
            stages.begin(f"loading the model {args.model}")
            model = load_model(args.model, constructor=args.constructor, device=args.device)
            check_one_input(model, args.model)
            spec = input_spec(model)
            stages.end(f"({len(model.response_infos)} responses)")
        stages.begin(f"opening the data {args.data}")
        source = open_data()
        stages.end(f"({'; '.join(source.notes)})")
    n = len(source)
    _check_enough_samples(n, components, args.projection, with_model)
    output = RunOutput()
    facts: list[tuple[str, str]] = []
    models = []
    shared = None
    not_run: list[str] = []  # requested but skipped (a TorchScript model has no inner layers)
    if model is not None:
        iua_layers, pfa_layers = select_layers(model, args.layers, args.layer_kind)
        _LOG.info("model input %s; IUA layers %s; PFA layers %s", spec, iua_layers, pfa_layers)
        want_iua = iua_layers if "iua" in components else []
        want_pfa = pfa_layers if "pfa" in components else []
        if data_parts and (want_iua or want_pfa) and n >= 40:
            # One pass of the model for everything: the data sections' pass feeds IUA and PFA.
            # (Below 40 samples the data sections look at the first batch before their pass.)
            shared = A.ModelFeed(model, want_iua, want_pfa)
    data_section = None
    data_skipped = None
    data_facts: list[tuple[str, str]] = []
    if data_parts:
        input_digests = None
        if model is not None:
            feed = source.producer
            if "duplicates" in data_parts:
                input_digests = D.RowDigests(source.field)
                feed = input_digests.wrap(source.producer)
            response = embedding_layer(model, args.embedding_layer)
            info = model.response_infos[response]
            stage = embedding_stage(info.shape, info.channel_axis)
            tail = [stage] if stage else []
            if shared is not None:
                layers = list(dict.fromkeys([*shared.layers, response]))
                keep = FieldRemover(response, keep=True)
                producer = pipeline(feed, model(layers), shared.stage(), keep, *tail)
            else:
                producer = pipeline(feed, model([response]), *tail)
        else:
            response = source.field
            shape = (None, *source.sample_shape)
            stage = embedding_stage(shape, None)
            producer = pipeline(source.producer, stage) if stage else source.producer
        data_section = data_health(
            producer=producer,
            source=source,
            response=response,
            components=data_parts,
            batch_size=args.batch_size,
            projection=args.projection,
            max_thumbnails=args.max_thumbnails,
            seed=args.seed,
            stages=stages,
            output=output,
            total=n,
            input_digests=input_digests,
        )
        data_facts = [("embedding", response)]
        _LOG.info("familiarity, duplicates and the map read %r", response)
    else:
        data_skipped = (
            "Not requested (--introspectors has none of familiarity, duplicates, projection)."
        )
    if model is not None:
        done = None
        if shared is not None:
            if shared.samples == n:
                done = shared.finish()
            else:  # not every sample went through the shared pass: IUA and PFA on their own
                _LOG.warning("the data pass fed %d of %d samples to IUA/PFA", shared.samples, n)
        section, iua_result, recipes = model_health(
            name=pathlib.Path(args.model).name,
            tag="model",
            source=str(args.model),
            model=model,
            data=source.producer,
            total=n,
            iua_layers=iua_layers,
            pfa_layers=pfa_layers,
            components=components,
            batch_size=args.batch_size,
            stages=stages,
            output=output,
            notes=source.notes,
            done=done,
        )
        models.append(section)
        not_run += ["iua"] if "iua" in components and iua_result is None else []
        failed = [r.name for r in section.pfa if r.note]  # PFA could not analyse them
        analysed = recipes is not None and len(failed) < len(section.pfa)
        not_run += ["pfa"] if "pfa" in components and not analysed else []
        facts.append(("model", str(args.model)))
        if "iua" in components:
            facts.append(("IUA layers", ", ".join(iua_layers) or "none"))
        if "pfa" in components:
            text = ", ".join(pfa_layers) or "none"
            if failed:
                text += f" (not analysed: {', '.join(failed)}; see Model health)"
            facts.append(("PFA layers", text))
    facts += data_facts
    facts = [
        ("data", f"{args.data} ({source.kind}, {n} samples, {_label_count(source.labels)})"),
        ("read as", "; ".join(source.notes)),
        *facts,
        ("introspectors", _ran(components, not_run)),
        ("created", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    stages.begin(f"writing {args.out}")
    report = Report(
        title="introscope report",
        subtitle=(f"{args.model} on " if with_model else "") + str(args.data),
        facts=facts,
        models=models,
        model_skipped=None if with_model else "No model was given: data health only.",
        data=data_section,
        data_skipped=data_skipped,
    )
    facts.append(("run time", f"{time.perf_counter() - started:.1f} s"))
    path = write_report(pathlib.Path(args.out), report, output)
    stages.end()
    return path


def _check_image_folder(path: pathlib.Path, out: pathlib.Path | None = None) -> None:
    """Every image of an ``--data`` folder decodes: found before the model loads, not after."""
    if not path.is_dir():
        return
    from ._folder import image_folder
    from ._image_check import check_images

    files = image_folder(path, out)[0]
    if files:
        check_images(files, path)


def _output_names(components: Sequence[str], with_model: bool) -> list[str]:
    """The files a run of ``components`` may write in ``--out`` (``model_health`` and
    ``data_health`` name them; the model's tag is ``model``)."""
    names = ["report.html"]
    if with_model and "iua" in components:
        names += ["iua_model.png", "iua_model.json"]
    if with_model and "pfa" in components:
        names.append("pfa_model.json")
    if any(c in components for c in _DATA_PARTS):
        names.append("dataset_report.parquet")
    return names


#: The fewest samples each data part works on, and why (familiarity: DatasetReport's default
#: mixture of 5 Gaussians; duplicates: 10 nearest neighbours; the map: 2 points).
_FEWEST = {
    "familiarity": (5, "familiarity fits a mixture of 5 Gaussians and needs at least 5"),
    "duplicates": (10, "duplicates looks up 10 neighbours per sample and needs at least 10"),
    "projection": (2, "the 2-D map needs at least 2 (4 for UMAP)"),
}


def _check_enough_samples(
    n: int, components: Sequence[str], projection: str, with_model: bool = False
) -> None:
    """Found before the model runs: parts that cannot work on so few samples, and what to do
    (every such part at once, and a ``--introspectors`` list without them that can run)."""
    blocked = [c for c in components if c in _FEWEST and n < _FEWEST[c][0]]
    if blocked:
        rest = [c for c in components if c not in blocked]
        if not rest and with_model:
            rest = ["iua", "pfa"]  # model health alone works on a single sample
        them = "it" if len(blocked) == 1 else "them"
        fix = (
            f"give more data, or leave {them} out with --introspectors {','.join(rest)}"
            if rest
            else f"give at least {max(_FEWEST[c][0] for c in blocked)} samples"
        )
        reasons = "; ".join(_FEWEST[c][1] for c in blocked)
        raise IntroscopeValueError(
            f"--data has {n} sample{'s' if n != 1 else ''}; {reasons}: {fix}"
        )
    if "projection" in components and projection == "umap" and n < 4:
        raise IntroscopeValueError(
            f"--data has {n} samples; UMAP needs at least 4: use --projection pca for so few "
            f"samples"
        )
    if "projection" in components and projection == "tsne" and n <= 30:
        raise IntroscopeValueError(
            f"--data has {n} samples; t-SNE's perplexity of 30 needs more than 30: use "
            f"--projection pca (or umap) for so few samples"
        )


#: Bytes of one batch of float32 images above which a size not given with --image-size is
#: refused (and a given one warned about): images resized to one huge size fill the memory.
BATCH_BYTES = 2 << 30


def _check_batch_memory(source: Any, batch_size: int, *, explicit: bool) -> None:
    if source.kind != "images" or source.image_size is None:
        return
    w, h = source.image_size
    per_batch = min(batch_size, len(source)) * w * h * source.channels * 4
    if per_batch <= BATCH_BYTES:
        return
    what = (
        f"images resized to {w}x{h} ({source.channels} channel(s)) make batches of "
        f"{per_batch / 2**30:.1f} GiB of float32 samples at --batch-size {batch_size}"
    )
    if explicit:
        _LOG.warning("%s; a smaller --batch-size needs less memory", what)
        return
    raise IntroscopeValueError(
        f"--data {str(source.path)!r}: {what} (more than {BATCH_BYTES / 2**30:.0f} GiB); give "
        f"the size the model takes with --image-size W H, or a smaller --batch-size"
    )


def _raise_if_grey(source: Any, exc: Exception, color: str) -> None:
    """A PyTorch model that refused greyscale images (1 channel): say to pass --color rgb."""
    text = str(exc)
    if source.kind != "images" or source.channels != 1 or "channels" not in text:
        return
    text = text.split("; the images have 1 channel")[0]  # the Python API's hint
    raise IntroscopeValueError(
        f"{text}; the images were read as greyscale (1 channel)"
        + (": pass --color rgb for an RGB model" if color == "auto" else "")
    ) from exc


#: torch's refusal of colour images by a convolution that takes 1 channel: "expected
#: input[2, 3, 40, 50] to have 1 channels, but got 3 channels instead"
_ONE_CHANNEL = re.compile(r"to have 1 channels?,? but got (\d+) channels?")
#: and by a Linear layer on flattened images: "(2x7500 and 2500x10)", 3 times the features
_FLAT_SHAPES = re.compile(r"cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


def _raise_if_colour(source: Any, exc: Exception, color: str) -> None:
    """A PyTorch model that takes 1 channel and refused colour images: say to pass --color grey
    (the opposite of :func:`_raise_if_grey`; under ``auto`` a colour folder is read as RGB)."""
    text = str(exc)
    if source.kind != "images" or source.channels == 1:
        return
    conv, flat = _ONE_CHANNEL.search(text), _FLAT_SHAPES.search(text)
    by_conv = conv is not None and int(conv.group(1)) == source.channels
    by_flat = flat is not None and int(flat.group(2)) == source.channels * int(flat.group(3))
    by_flat = by_flat and color == "auto"  # --color rgb given: left to the --image-size hint
    if not (by_conv or by_flat):
        return
    hint = "pass --color grey for a greyscale (1-channel) model"
    if not by_conv:  # a feature count 3 times too large could also be another image size
        hint += " (or --image-size W H, if it takes another input size)"
    raise IntroscopeValueError(
        f"{text}; the images were read as RGB ({source.channels} channels)"
        + (f": {hint}" if color == "auto" else "")
    ) from exc


def _raise_if_image_size(source: Any, exc: Exception, image_size: Any) -> None:
    """A PyTorch model that failed on images of the folder's size: say to pass --image-size
    (a model with a fixed input size, e.g. a Linear layer after the convolutions)."""
    text = str(exc)
    shapes = ("cannot be multiplied", "size mismatch", "shape", "Sizes of tensors")
    if source.kind != "images" or image_size or not any(s in text for s in shapes):
        return
    w, h = source.image_size
    raise IntroscopeValueError(
        f"{text}; the images were resized to {w}x{h}: if the model takes another input size, "
        f"give it with --image-size W H"
    ) from exc


def _raise_if_channels_last(source: Any, exc: Exception) -> None:
    """A PyTorch model that failed on array samples shaped (N, H, W, C): say to transpose them."""
    shape = tuple(source.sample_shape) if source.kind == "arrays" else ()
    if len(shape) != 3 or shape[-1] not in (1, 3, 4) or shape[0] in (1, 3, 4):
        return
    h, w, c = shape
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise IntroscopeValueError(
        f"--data {str(source.path)!r}: samples of shape (N, {h}, {w}, {c}) look channels-last "
        f"(N, H, W, C), but a PyTorch model takes (N, C, H, W): save them transposed, "
        f"np.save(path, x.transpose(0, 3, 1, 2)) (the model said: {reason})"
    ) from exc


def _ran(components: Sequence[str], not_run: Sequence[str]) -> str:
    """The summary's list of introspectors: those that ran, then those requested but skipped."""
    ran = ", ".join(c for c in components if c not in not_run) or "none"
    return ran + (f" ({', '.join(not_run)} skipped: see Model health)" if not_run else "")


def _tuple(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def _label_count(labels: Sequence[str]) -> str:
    """The report's count of labels: "unlabelled", "1 label", "10 labels, 3 without a label"."""
    named = {label for label in labels if label != NO_LABEL}
    if not named:
        return "unlabelled"
    text = f"{len(named)} label" + ("" if len(named) == 1 else "s")
    missing = sum(label == NO_LABEL for label in labels)
    return text + (f", {missing} without a label" if missing else "")
