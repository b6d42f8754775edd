"""The ``introscope`` command: ``analyze``, ``demo``, ``layers``, ``info`` (also ``python -m introscope``).

Exit status: 0 success; 1 the analysis failed; 2 bad arguments; 3 a model or data file is missing,
unreadable or of an unknown kind; 4 an optional dependency is missing (the message names the pip
extra); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, which is handled as Ctrl-C is, so
files being written are removed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import NoReturn

from introscope.exceptions import IntroscopeError, IntroscopeValueError, MissingDependencyError

from ._analysis import COMPONENTS
from ._console import configure_logging, error_text
from ._data_report import PROJECTIONS
from ._demo import run_demo
from ._models import InputFileError

__all__ = [
    "main",
    "run_demo",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INPUT",
    "EXIT_DEPENDENCY",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_DEPENDENCY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
#: 128 + SIGTERM (15), as a shell reports a process killed by it.
EXIT_TERMINATED = 143

_LOG = logging.getLogger("introscope.cli")

#: ``--input-dtype`` of ``layers``: the dtype of the example input fed to a PyTorch model.
INPUT_DTYPES = ("float32", "float64", "float16", "int64", "int32", "uint8", "bool")

_EXIT_TEXT = """exit status: 0 success, 1 the analysis failed, 2 bad arguments, 3 a model or data file
is missing or unreadable, 4 an optional dependency is missing, 130 interrupted, 143 terminated."""

_ANALYZE_EXAMPLES = """examples:
  introscope analyze --model cnn.onnx --data images/ --out report/
  introscope analyze --model net.pt --constructor mynet:Net --data x.npy --layer-kind relu
  introscope analyze --model model.keras --data photos/ --image-size 224 224 \\
      --scale 0.00392157 --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225
  introscope analyze --data clip_embeddings.parquet --out clip-report/

data: a folder of images (one sub-folder per label), an .npy/.npz array (.npz keys samples/x,
labels/y, ids; integer arrays such as token ids are fed unchanged, uint8 ones as float32
pixels), or with no --model a table of embeddings (.parquet with an embedding list column or
numeric columns and optional id/label columns, other columns left out; or a 2-D .npy).

results beside report.html: dataset_report.parquet, iua_model.json/.png, and pfa_model.json,
which is a pruning plan: introscope.introspectors.pfa.PFAPruningPlan.load("pfa_model.json")
reads it for PFA.prune (each layer also has its recommended_count).
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _nonzero(text: str) -> float:
    value = _finite(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a non-zero number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected positive dimensions, got {text!r}")
    return shape


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line starting ``introscope analyze: error:``,
    pointing at ``--help``, instead of argparse's usage lines (exit status 2 all the same)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with unknown arguments refused by the sub-command's parser (named
    in the error) rather than by the top-level one."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        command = commands[0].choices.get(args.command, parser) if commands else parser
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _common() -> _Parser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("output control")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log what each step does")  # fmt: skip
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and a full traceback on errors")  # fmt: skip
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress lines")  # fmt: skip
    return common


def _sub(sub: argparse._SubParsersAction[_Parser], name: str, help: str, epilog: str) -> _Parser:
    return sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"{epilog}\n{_EXIT_TEXT}",
        parents=[_common()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="introscope",
        description="Look inside neural networks and the data flowing through them.",
        epilog="example: introscope demo   (then open out/report.html)\n" + _EXIT_TEXT,
        parents=[_common()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from introscope import __version__

    parser.add_argument("--version", action="version", version=f"introscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    an = _sub(sub, "analyze", "model health (IUA, PFA) and data health in one HTML report",
              _ANALYZE_EXAMPLES)  # fmt: skip
    an.add_argument("--model", help=".onnx, .keras/.h5, TorchScript .pt, or a state dict with "
                    "--constructor; omit for a table of embeddings")  # fmt: skip
    an.add_argument("--constructor", metavar="MODULE:CLASS",
                    help="builds, without arguments, the module a state dict belongs to "
                    "(importable from here); checkpoint dicts ({'model': sd, ...}) and "
                    "module./model. key prefixes are unwrapped")  # fmt: skip
    an.add_argument("--data", required=True, help="image folder, .npy/.npz, or .parquet")
    an.add_argument(
        "--out", default="introscope-report", help="output folder (default: %(default)s)"
    )
    an.add_argument("--layers", nargs="+", metavar="NAME", help="responses to analyse")
    an.add_argument("--layer-kind", nargs="+", metavar="KIND",
                    help="layer kinds to analyse, e.g. relu conv2d dense")  # fmt: skip
    an.add_argument("--embedding-layer", metavar="NAME",
                    help="response for familiarity, duplicates and the map "
                    "(default: the last flat layer before the output)")  # fmt: skip
    an.add_argument("--introspectors", metavar="LIST",
                    help=f"comma-separated subset of {','.join(COMPONENTS)} (default: all that apply)")  # fmt: skip
    an.add_argument("--batch-size", type=_positive_int, default=64)
    an.add_argument("--device", default=None, help="cpu or cuda (PyTorch and ONNX models)")
    an.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("W", "H"),
                    help="resize images to W x H (default: the model's input size, else the "
                    "most common size among the images)")  # fmt: skip
    an.add_argument("--color", choices=("auto", "rgb", "grey"), default="auto",
                    help="read images as RGB or greyscale (default auto: the model's declared "
                    "channels, else RGB when any image is in colour)")  # fmt: skip
    an.add_argument("--scale", type=_nonzero, help="multiply raw pixels by this (default 1/255 for "
                    "8-bit images, 1/65535 for 16-bit ones)")  # fmt: skip
    an.add_argument("--mean", type=_finite, nargs="+", help="subtract per channel, after --scale")
    an.add_argument("--std", type=_positive, nargs="+", help="divide per channel, after --mean")
    an.add_argument("--labels", metavar="CSV",
                    help="labels: a CSV with a header naming an id column (id, path, file, "
                    "filename, name) and a label column (label, labels, class, category, y); "
                    "without a header, id,label rows matched by id, or a single column of "
                    "labels in sample order")  # fmt: skip
    an.add_argument("--projection", choices=PROJECTIONS, default="umap",
                    help="2-D map method (default: %(default)s)")  # fmt: skip
    an.add_argument("--max-thumbnails", type=_count, default=5000,
                    help="thumbnails embedded in the report (default: %(default)s)")  # fmt: skip
    an.add_argument("--seed", type=int, default=0, help="seed of the map and thumbnail sample")

    demo = _sub(sub, "demo", "the bundled digits CNN and its dying-ReLU twin in one report",
                "example:\n  introscope demo --out out   (then open out/report.html)")  # fmt: skip
    demo.add_argument("--out", default="out", help="output folder (default: %(default)s)")
    demo.add_argument("--batch-size", type=_positive_int, default=128)
    demo.add_argument("--seed", type=int, default=0, help="training seed of the CNNs")
    demo.add_argument("--no-cache", action="store_true", help="retrain instead of cached weights")
    demo.add_argument("--no-pfa", action="store_true", help="skip PFA")
    demo.add_argument("--no-data", action="store_true", help="skip the data sections")
    demo.add_argument("--projection", choices=PROJECTIONS, default="umap")

    lay = _sub(sub, "layers", "list a model's inputs and responses: kinds, shapes, channel axes",
               "examples:\n  introscope layers --model cnn.onnx\n"
               "  introscope layers --model net.pt --constructor mynet:Net --input-shape 3,32,32\n"
               "  introscope layers --model text.pt --constructor mynet:TextNet --input-shape 128 "
               "--input-dtype int64")  # fmt: skip
    lay.add_argument("--model", required=True, help="model file (as for analyze)")
    lay.add_argument("--constructor", metavar="MODULE:CLASS", help="for a PyTorch state dict")
    lay.add_argument("--input-shape", type=_parse_shape,
                     help="per-sample input shape of a PyTorch model, e.g. 3,32,32")  # fmt: skip
    lay.add_argument("--input-dtype", choices=INPUT_DTYPES, default="float32",
                     help="dtype of that input (default: %(default)s; int64 for token ids)")  # fmt: skip

    resp = _sub(sub, "responses", "list the responses of a PyTorch model file (see layers)",
                "example:\n  introscope responses net.pt --constructor mynet:Net --input-shape 1,8,8")  # fmt: skip
    resp.add_argument("path", help="TorchScript file, or state dict with --constructor")
    resp.add_argument("--constructor", help="'package.module:Class' building the module")
    resp.add_argument(
        "--input-shape", type=_parse_shape, help="per-sample input shape, e.g. 3,32,32"
    )
    resp.add_argument("--input-dtype", choices=INPUT_DTYPES, default="float32",
                      help="dtype of that input (default: %(default)s; int64 for token ids)")  # fmt: skip

    _sub(
        sub,
        "info",
        "versions of introscope and its optional dependencies",
        "example:\n  introscope info",
    )
    return parser


def _layers(
    model_path: str,
    constructor: str | None,
    input_shape: tuple[int, ...] | None,
    input_dtype: str = "float32",
) -> None:
    from ._models import layer_rows, load_model

    model = load_model(
        model_path, constructor=constructor, example_shape=input_shape, example_dtype=input_dtype
    )
    backend = getattr(model, "backend", None)
    if getattr(backend, "ready", True) is False:
        # a PyTorch module's responses exist only once it has run: never list guessed names
        raise IntroscopeValueError(
            f"{model_path}: a PyTorch model's responses (names such as relu#0/relu#1, shapes, "
            f"channel axes) are known only after a forward pass; pass --input-shape with the "
            f"shape of one input sample, e.g. --input-shape 3,224,224 (and --input-dtype int64 "
            f"for token ids)"
        )
    rows = layer_rows(model)
    widths = [
        max(len(r[i]) for r in rows + [("name", "kind", "type", "shape", "axis")]) for i in range(5)
    ]
    print(
        "  ".join(
            h.ljust(w) for h, w in zip(("name", "kind", "type", "shape", "channel axis"), widths)
        )
    )
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _info() -> None:
    import importlib
    import importlib.util

    import numpy as np

    import introscope

    print(f"introscope {introscope.__version__}, numpy {np.__version__}")
    if importlib.util.find_spec("keras") is not None:
        import introscope.tensorflow  # noqa: F401 - sets KERAS_BACKEND=torch before keras loads
    # (module, what it is for: the extra that installs it)
    for module, extra in (
        ("torch", "torch"), ("keras", "keras"), ("tensorflow", "tensorflow"), ("onnx", "onnx"),
        ("onnxruntime", "onnx"), ("onnxscript", "onnx"), ("pandas", "report"),
        ("matplotlib", "report"), ("plotly", "report"), ("pyarrow", "report"), ("PIL", "image"),
        ("cv2", "image"), ("umap", "dimreduction"), ("pacmap", "dimreduction"),
        ("faiss", "duplicates"), ("ray", "ray"), ("torch_pruning", "prune"),
    ):  # fmt: skip
        if importlib.util.find_spec(module) is None:
            print(f"  {module:<14} not installed (extra [{extra}])")
            continue
        try:
            mod = importlib.import_module(module)
            print(f"  {module:<14} {getattr(mod, '__version__', '?')}")
        except Exception as exc:  # noqa: BLE001 - installed but broken: say so, go on
            print(f"  {module:<14} fails to import: {type(exc).__name__}: {exc}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler, ``timeout``, a closed terminal), raised where the program is,
    as Ctrl-C raises ``KeyboardInterrupt``: ``finally`` blocks and the clean-ups that catch
    ``BaseException`` (temporary files of atomic writes) run before the exit."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (once: a second one during the
    clean-up is ignored); the earlier handler is back afterwards. Nothing changes off the main
    thread, where Python cannot set handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``introscope`` command; returns the exit status."""
    parser = _parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    configure_logging(getattr(args, "verbose", False), debug)
    with _sigterm_as_interrupt():
        return _run(args, debug)


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        if args.command == "analyze":
            from ._analyze import run_analyze

            path = run_analyze(args)
            print(f"Report: {path}\nOpen it in a browser: {path.resolve().as_uri()}")
        elif args.command == "demo":
            run_demo(
                args.out,
                batch_size=args.batch_size,
                seed=args.seed,
                cache=not args.no_cache,
                pfa=not args.no_pfa,
                data=not args.no_data,
                projection=args.projection,
                quiet=args.quiet,
            )
        elif args.command == "layers":
            _layers(args.model, args.constructor, args.input_shape, args.input_dtype)
        elif args.command == "responses":
            _layers(args.path, args.constructor, args.input_shape, args.input_dtype)
        else:
            _info()
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"introscope: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (introscope layers ... | head): not an error of ours. Point
        # stdout at devnull so that Python's flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        code = (
            EXIT_INPUT
            if isinstance(exc, InputFileError)
            else EXIT_DEPENDENCY
            if isinstance(exc, MissingDependencyError)
            else EXIT_USAGE
            if isinstance(exc, IntroscopeValueError)
            else EXIT_FAILED
        )
        if debug:
            traceback.print_exc()
        elif not isinstance(exc, IntroscopeError):
            _LOG.debug("unexpected error", exc_info=True)
        message = error_text(exc)
        hint = "" if debug else " (run with --debug for the traceback)"
        print(f"introscope {args.command}: error: {message}{hint if code == EXIT_FAILED else ''}",
              file=sys.stderr)  # fmt: skip
        return code
    return EXIT_OK
