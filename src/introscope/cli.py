"""The ``introscope`` command: ``demo`` (IUA and PFA on the bundled CNNs), ``responses``, ``info``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from introscope.exceptions import IntroscopeError

__all__ = ["main", "run_demo"]

_LOG = logging.getLogger("introscope.cli")

_VARIANTS = (("healthy", False), ("dying ReLU", True))


def _save_figure(fig: Any, path: pathlib.Path) -> None:
    """Write ``fig`` as PNG to a temporary name, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _figure_of(axes: Any) -> Any:
    import numpy as np

    first = np.asarray(axes, dtype=object).flat[0]
    return first.figure


def _side_by_side(tables: dict[str, Any], index: str, columns: list[str]) -> str:
    import pandas as pd

    joined = pd.concat({name: t.set_index(index)[columns] for name, t in tables.items()}, axis=1)
    with pd.option_context("display.width", 200, "display.precision", 1):
        return joined.to_string()


def run_demo(
    out: str | os.PathLike = "out",
    *,
    batch_size: int = 128,
    seed: int = 0,
    cache: bool = True,
    pfa: bool = True,
    stream: Any = None,
) -> list[pathlib.Path]:
    """Run IUA (and PFA) on the digits CNN and its dying-ReLU variant; return the PNGs written.

    Tables go to ``stream`` (stdout by default); heatmaps are saved under ``out``.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")  # files only, never a window
    from introscope.base import ResponseInfo, pipeline
    from introscope.samples import digits_cnn_accuracy, load_digits_cnn, load_digits_dataset

    stream = stream or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    try:
        from introscope.introspectors import IUA
    except ImportError:  # pragma: no cover - while IUA is not installed
        IUA = None
    try:
        from introscope.introspectors import PFA
        from introscope.processors import Pooler
    except ImportError:  # pragma: no cover - while PFA is not installed
        PFA = None

    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The split the CNNs were trained on (``seed`` is their training seed): these images are
    # held out from training whatever the seed.
    data = load_digits_dataset().subset(datasets="test")
    kinds = ResponseInfo.LayerKind
    saved: list[pathlib.Path] = []
    iua_tables: dict[str, Any] = {}
    pfa_tables: dict[str, Any] = {}
    say("introscope demo: a tiny CNN on the scikit-learn digits (450 held-out images)")
    for label, dying in _VARIANTS:
        start = time.perf_counter()
        model = load_digits_cnn(dying_relu=dying, seed=seed, cache=cache)
        acc = digits_cnn_accuracy(model.module)
        say(
            f"  {label:<10} test accuracy {acc:6.1%}  (ready in {time.perf_counter() - start:.1f} s)"
        )
        infos = model.response_infos.values()
        relus = [i.name for i in infos if i.layer.kind == kinds.RELU]
        convs = [i.name for i in infos if i.layer.kind == kinds.CONV_2D]
        tag = "dying_relu" if dying else "healthy"
        if IUA is not None:
            # PyTorch responses are NCHW: channel_axis=1 adds the per-channel view for conv ReLUs.
            iua = IUA.introspect(
                pipeline(data, model(relus)), batch_size=batch_size, channel_axis=1
            )
            iua_tables[label] = IUA.show(iua)
            fig = _figure_of(IUA.show(iua, vis_type=IUA.VisType.CHART))
            fig.suptitle(f"IUA, {label} digits CNN: share of samples each unit is inactive")
            path = out_dir / f"iua_{tag}.png"
            _save_figure(fig, path)
            saved.append(path)
            import matplotlib.pyplot as plt

            plt.close(fig)
        if pfa and PFA is not None:
            pooled = pipeline(data, model(convs), Pooler(dim=(2, 3), method=Pooler.Method.MAX))
            recipes = PFA.introspect(pooled, batch_size=batch_size).get_recipe()
            pfa_tables[label] = PFA.show(recipes)
    if iua_tables:
        say("\nInactive Unit Analysis of the ReLU outputs (units inactive per sample; dead =")
        say("inactive on every sample):")
        columns = ["units", "mean inactive", "dead units (%)", "channels", "dead channels"]
        say(_side_by_side(iua_tables, "response", columns))
    else:
        say("\nIUA is not available in this installation; skipped.")
    if pfa_tables:
        say("\nPrincipal Filter Analysis of the conv layers (max-pooled; KL strategy):")
        say(_side_by_side(pfa_tables, "layer name", ["original count", "recommended count"]))
    elif pfa:
        say("\nPFA is not available in this installation; skipped.")
    if saved:
        say("\nIUA heatmaps saved:")
        for path in saved:
            say(f"  {path}")
    return saved


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected positive dimensions, got {text!r}")
    return shape


def _load_constructor(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise IntroscopeError(f"--constructor must look like 'package.module:Class', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise IntroscopeError(f"cannot import the model constructor {spec!r}: {exc}") from exc


def _responses(args: argparse.Namespace) -> None:
    import numpy as np

    from introscope.torch import load_torch_model_from_path

    constructor = _load_constructor(args.constructor) if args.constructor else None
    example = np.zeros((1, *args.input_shape), dtype=np.float32) if args.input_shape else None
    model = load_torch_model_from_path(args.path, constructor, example_input=example)
    for name, info in model.input_layers.items():
        print(f"input  {name:<30} {info.dtype}  {info.shape}")
    for name, info in model.response_infos.items():
        kind = info.layer.kind.name
        print(f"{name:<37} {kind:<16} {info.layer.typename:<16} {info.dtype}  {info.shape}")


def _info() -> None:
    import numpy as np

    import introscope

    print(f"introscope {introscope.__version__}, numpy {np.__version__}")
    for module in ("torch", "keras", "onnxruntime", "pandas", "matplotlib"):
        try:
            mod = importlib.import_module(module)
            print(f"  {module:<12} {getattr(mod, '__version__', '?')}")
        except ImportError:
            print(f"  {module:<12} not installed")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="introscope", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="IUA and PFA on the bundled digits CNN and a dying variant")
    demo.add_argument("--out", default="out", help="folder for the PNG heatmaps (default: out)")
    demo.add_argument("--batch-size", type=int, default=128)
    demo.add_argument("--seed", type=int, default=0, help="training seed of the CNNs")
    demo.add_argument("--no-cache", action="store_true", help="retrain instead of cached weights")
    demo.add_argument("--no-pfa", action="store_true", help="skip PFA")
    resp = sub.add_parser("responses", help="list the responses of a PyTorch model file")
    resp.add_argument("path", help="TorchScript file, or state dict with --constructor")
    resp.add_argument("--constructor", help="'package.module:Class' building the module")
    resp.add_argument(
        "--input-shape", type=_parse_shape, help="per-element input shape, e.g. 3,32,32"
    )
    sub.add_parser("info", help="versions of introscope and its optional dependencies")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``introscope`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "demo":
            if args.batch_size <= 0:
                raise IntroscopeError(f"--batch-size must be positive, got {args.batch_size}")
            run_demo(
                args.out,
                batch_size=args.batch_size,
                seed=args.seed,
                cache=not args.no_cache,
                pfa=not args.no_pfa,
            )
        elif args.command == "responses":
            _responses(args)
        else:
            _info()
    except IntroscopeError as exc:
        print(f"introscope: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
