"""The dry run: which tensors of an ONNX graph keep the batch on dimension 0, measured.

A tensor is a response only when its dimension 0 is known to be the batch. When the inputs have a
dynamic batch, the graph runs on zeros with two batch sizes (and any other dynamic input dimension
32, then 64) and the tensors whose dimension 0 is the batch size in both are kept. A graph exported for a fixed batch size runs twice at that size,
the second time with only sample 0 changed: a tensor whose other rows change too does not have
the batch on dimension 0 (a sequence-first tensor whose length equals the batch size).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from introscope.base._adapter_text import one_line

from ._inputs import GraphInputs, is_dynamic
from ._proto import Shape, format_shape, ort
from ._session import SessionFactory

__all__ = ["BATCH_SIZES", "Probe", "dry_run", "mixed_rows"]

#: The batch sizes of the dry run (not 1: a broadcast dimension of size 1 would pass).
BATCH_SIZES = (2, 3)
#: The size given to every other dynamic input dimension, per run (varied, so that a dimension
#: that follows it is not mistaken for a fixed one).
_FREE_SIZES = (32, 64)


@dataclass
class Probe:
    """What the dry run saw: per tensor, its shape in each run (``None``: not a tensor)."""

    shapes: dict[str, list[tuple[int, ...] | None]]
    dtypes: dict[str, np.dtype]

    def follows(self, name: str) -> bool:
        """Whether the tensor's dimension 0 was the batch size in every run."""
        runs = self.shapes[name]
        if any(s is None for s in runs):
            return False
        shapes = cast("list[tuple[int, ...]]", runs)  # no None in it
        if len({len(s) for s in shapes}) != 1:
            return False
        return all(len(s) > 0 and s[0] == b for s, b in zip(shapes, BATCH_SIZES))

    def shape(self, name: str, static: Shape) -> tuple[int | None, ...]:
        """The public shape: batch ``None``, then each size the inference knows or, where it made
        up a symbol (``unk__3``) or knows nothing, the size when it was the same in every run."""
        runs = self.shapes[name]
        rank = len(runs[0])  # type: ignore[arg-type]
        dims: list[int | None] = [None]
        for axis in range(1, rank):
            known = static[axis] if static is not None and len(static) == rank else None
            if isinstance(known, int) and known > 0:
                dims.append(known)
            elif isinstance(known, str) and not known.startswith("unk__"):
                dims.append(None)  # a symbol of the exporter: the size may change with the data
            else:
                sizes = {s[axis] for s in runs}  # type: ignore[index]
                dims.append(sizes.pop() if len(sizes) == 1 else None)
        return tuple(dims)

    def describe(self, name: str) -> str:
        """How the tensor's shapes went in the dry run, for an error message."""
        shapes = self.shapes.get(name)
        if shapes is None or any(s is None for s in shapes):
            return "in a dry run it was not a tensor"
        shown = " and ".join(format_shape(s) for s in shapes)
        sizes = " and ".join(map(str, BATCH_SIZES))
        return f"in a dry run with batch sizes {sizes} its shapes were {shown}"


def _feeds(inputs: GraphInputs, run: int) -> dict[str, np.ndarray] | str:
    feeds: dict[str, np.ndarray] = dict(inputs.fixed)
    for name, (dtype, shape) in inputs.fed.items():
        if shape is None:
            return f"input {name!r} has an unknown rank"
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            return f"input {name!r} has dtype {dtype}"
        dims = [BATCH_SIZES[run]] + [
            _FREE_SIZES[run] if is_dynamic(d) else cast(int, d) for d in shape[1:]
        ]
        feeds[name] = np.zeros(dims, dtype)
    return feeds


def _short(exc: Exception) -> str:
    return one_line(exc)


def _quiet() -> Any:
    options = ort().RunOptions()
    options.log_severity_level = 4  # a failure is reported by the caller, not logged by onnxruntime
    return options


def _session(
    factory: SessionFactory, names: list[str], untyped: set[str]
) -> tuple[Any, list[str]] | str:
    """A session with ``names`` as outputs (without the untyped ones if they make it fail)."""
    try:
        return factory.make(names, strict=False), names
    except Exception as exc:
        error = exc
    if untyped:  # a tensor without a type may be the cause
        names = [n for n in names if n not in untyped]
        try:
            return factory.make(names, strict=False), names
        except Exception as exc:
            error = exc
    return f"onnxruntime could not load it with every tensor as an output ({_short(error)})"


def dry_run(
    factory: SessionFactory, inputs: GraphInputs, candidates: Sequence[str], untyped: Iterable[str]
) -> Probe | str:
    """Run the graph on zeros with each of ``BATCH_SIZES``, every candidate an output.

    Returns what it saw, or why it could not run (the caller then uses the inferred shapes).
    """
    if inputs.static_batch is not None:
        return f"the graph was exported for a fixed batch size of {inputs.static_batch}"
    runs = [_feeds(inputs, run) for run in range(len(BATCH_SIZES))]
    for feeds in runs:
        if isinstance(feeds, str):
            return feeds
    session = _session(factory, list(candidates), set(untyped))
    if isinstance(session, str):
        return session
    session, names = session
    shapes: dict[str, list[tuple[int, ...] | None]] = {n: [] for n in names}
    dtypes: dict[str, np.dtype] = {}
    for batch, feeds in zip(BATCH_SIZES, runs):
        try:
            arrays = session.run(names, feeds, _quiet()) if names else []
        except Exception as exc:
            return f"onnxruntime failed on zeros with batch size {batch} ({_short(exc)})"
        for name, array in zip(names, arrays):
            ok = isinstance(array, np.ndarray)
            shapes[name].append(tuple(array.shape) if ok else None)
            if ok:
                dtypes[name] = array.dtype
        del arrays
    return Probe(shapes, dtypes)


def _perturbed_feeds(
    inputs: GraphInputs,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | str:
    """Feeds at the fixed batch size, and the same with only sample 0 changed."""
    rng = np.random.default_rng(0)
    base: dict[str, np.ndarray] = dict(inputs.fixed)
    changed: dict[str, np.ndarray] = dict(inputs.fixed)
    for name, (dtype, shape) in inputs.fed.items():
        if shape is None:
            return f"input {name!r} has an unknown rank"
        dims = [cast(int, inputs.static_batch)] + [
            _FREE_SIZES[0] if is_dynamic(d) else cast(int, d) for d in shape[1:]
        ]
        if np.issubdtype(dtype, np.floating):
            value = rng.uniform(0.5, 1.5, dims).astype(dtype)
            other = value.copy()
            other[0] += 1
        elif np.issubdtype(dtype, np.number) or dtype == np.bool_:
            value = np.zeros(dims, dtype)
            other = value.copy()
            other[0] = 1
        else:
            return f"input {name!r} has dtype {dtype}"
        base[name], changed[name] = value, other
    return base, changed


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if np.issubdtype(a.dtype, np.inexact):
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a, b))


def mixed_rows(
    factory: SessionFactory, inputs: GraphInputs, names: Sequence[str]
) -> set[str] | str:
    """For a graph exported for a fixed batch size (over 1): which of ``names`` do not have the
    batch on dimension 0, seen as rows other than row 0 that change when only sample 0 changes.

    Returns those names, or why the graph could not be run (the inferred shapes then decide).
    """
    batch = inputs.static_batch
    feeds = _perturbed_feeds(inputs)
    if isinstance(feeds, str):
        return feeds
    session = _session(factory, list(names), set())
    if isinstance(session, str):
        return session
    session, names = session
    try:
        first, second = [session.run(names, f, _quiet()) if names else [] for f in feeds]
    except Exception as exc:
        return f"onnxruntime failed on the batch size {batch} it was exported for ({_short(exc)})"
    mixed = set()
    for name, a, b in zip(names, first, second):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            mixed.add(name)
        elif a.ndim == 0 or a.shape != b.shape or a.shape[0] != batch or not _same(a[1:], b[1:]):
            mixed.add(name)
    return mixed
