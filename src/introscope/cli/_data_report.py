"""The data sections of the report: run DatasetReport, and turn its table into plain rows.

``run_dataset_report`` runs familiarity, duplicates and the 2-D map (``projection_strategy``);
``report_table`` names the table's columns for ``dataset_report.parquet``; ``data_section``
turns it into the :class:`DataSection` that ``viz`` draws, with bounded thumbnails, and
``RowDigests`` tells exact copies from near duplicates.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from introscope.exceptions import IntroscopeError

if TYPE_CHECKING:
    from introscope.base import Batch, Producer

__all__ = [
    "run_dataset_report",
    "data_section",
    "report_table",
    "projection_strategy",
    "PROJECTIONS",
    "projection_needs",
    "RowDigests",
]


def run_dataset_report(
    producer: Any,
    components: Sequence[str],
    batch_size: int,
    *,
    projection: str = "umap",
    seed: int = 0,
    total: int | None = None,
    split: bool = True,
) -> Any:
    """DatasetReport with the chosen data components (familiarity, duplicates, projection), and
    no familiarity per label unless ``split``. Responses wider than 40 are reduced to 40 dimensions
    with PCA first (DatasetReport's default); with fewer than 40 samples, to as many as there are."""
    try:
        from introscope.introspectors.report import DatasetReport, ReportConfig
    except ImportError as exc:
        raise IntroscopeError(
            "the data sections need DatasetReport, which this installation does not have"
        ) from exc
    kwargs: dict[str, Any] = {n: None for n in ("familiarity", "duplicates") if n not in components}
    kwargs.update({} if split else {"split_familiarity_min": sys.maxsize})  # no group that large
    kwargs["projection"] = (
        projection_strategy(projection, seed) if "projection" in components else None
    )
    if total is not None and total < 40:
        from introscope.base import peek_first_batch
        from introscope.introspectors.dimension_reduction import DimensionReduction

        fields = peek_first_batch(producer, 1).fields
        kwargs["dim_reduction"] = {
            name: DimensionReduction.Strategy.PCA(total, warn_precision=False)
            for name, value in fields.items()
            if value.shape[1] > total
        } or None
    return DatasetReport.introspect(producer, config=ReportConfig(**kwargs), batch_size=batch_size)


class RowDigests:
    """A digest of every sample's response, in order, to tell exact copies from near duplicates.

    ``wrap(producer)`` passes the batches on unchanged; each call of the wrapped producer starts
    again (DatasetReport may look at a first batch before its pass). ``field`` None reads the
    batches' only field (its name is then in ``field_seen``); ``digest=False`` only notes it.
    """

    def __init__(self, field: str | None = None, digest: bool = True) -> None:
        self.field = field
        self.digest = digest
        self.field_seen: str | None = field
        self.digests: list[bytes] = []

    def wrap(self, producer: Callable[[int], Iterable[Batch]]) -> Producer:
        import hashlib

        def produce(batch_size: int) -> Iterator[Batch]:
            self.digests = []
            for batch in producer(batch_size):
                names = list(batch.fields)
                name = self.field if self.field is not None else names[0]
                self.field_seen = name if self.field is not None or len(names) == 1 else None
                if self.digest and self.field_seen is not None:
                    rows = np.ascontiguousarray(batch.fields[name])
                    rows = rows.reshape(len(rows), -1)
                    self.digests += [
                        hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows
                    ]
                yield batch

        return produce

    def copies(
        self, groups: Sequence[Sequence[int]], n: int, inputs: RowDigests | None = None
    ) -> list[int] | None:
        """Per group, how many of its members are exact copies of another member: identical
        responses, or identical inputs by ``inputs`` (a model may answer one input with
        last-bit differences from one batch to another); None when the digests do not cover
        the ``n`` samples."""
        from collections import Counter

        tables = [d.digests for d in (self, inputs) if d is not None and len(d.digests) == n]
        if not tables:
            return None
        out = []
        for g in groups:
            counts = [Counter(t[int(i)] for i in g) for t in tables]
            out.append(sum(1 for i in g if any(c[t[int(i)]] > 1 for c, t in zip(counts, tables))))
        return out

    def exact(
        self, groups: Sequence[Sequence[int]], n: int, inputs: RowDigests | None = None
    ) -> list[bool] | None:
        """Per group, whether all its members are one sample copied: a single response digest,
        or a single input digest by ``inputs``, across all of them (two pairs of copies of two
        different samples are not); None when the digests do not cover the ``n`` samples."""
        tables = [d.digests for d in (self, inputs) if d is not None and len(d.digests) == n]
        if not tables:
            return None
        return [any(len({t[int(i)] for i in g}) == 1 for t in tables) for g in groups]


#: ``--projection`` methods: the 2-D map of the data section.
PROJECTIONS = ("umap", "tsne", "pacmap", "pca")


def projection_needs(method: str) -> list[tuple[str, str, str]]:
    """The optional packages ``--projection method`` needs, as ``require_all`` takes them."""
    if method == "umap":
        return [("umap", "dimreduction", "the UMAP map")]
    if method == "pacmap":
        return [("pacmap", "dimreduction", "the PaCMAP map")]
    return []


def projection_strategy(method: str, seed: int = 0) -> Any:
    """A seeded 2-D DimensionReduction strategy for ``--projection``."""
    from introscope.introspectors.dimension_reduction import DimensionReduction

    strategy = DimensionReduction.Strategy
    if method == "umap":
        return strategy.UMAP(2, random_state=seed, n_jobs=1)
    if method == "tsne":
        return strategy.TSNE(2, random_state=seed, init="pca")
    if method == "pacmap":
        return strategy.PaCMAP(2, random_state=seed)
    if method == "pca":
        return strategy.PCA(2, warn_precision=False)  # a map to look at; no precision option
    raise IntroscopeError(f"--projection must be one of {PROJECTIONS}, got {method!r}")


def _column(frame: Any, prefix: str, suffix: str = "") -> str | None:
    for c in frame.columns:
        if c.startswith(prefix) and c.endswith(suffix):
            return cast("str | None", c)
    return None


def report_table(frame: Any, response: str | None = None) -> Any:
    """The DatasetReport table for ``dataset_report.parquet``: ``response``'s columns named as
    :mod:`introscope.cli._columns` says (the response name readable and unambiguous, DNIKit's
    names in the schema metadata, in ``frame.attrs``), plus ``projection_x``/``projection_y``
    (Embedding Atlas' names)."""
    from ._columns import escape_response, readable_columns

    out = frame.copy()
    px = _column(frame, "projection_", "_x")
    py = _column(frame, "projection_", "_y")
    if px and py and "projection_x" not in out:
        out["projection_x"] = out[px].astype("float32")
        out["projection_y"] = out[py].astype("float32")
    if response is not None:
        from introscope.introspectors.report import _columns as dn

        x, y = dn.projection_columns(response)
        templates = {
            "duplicates_{}": dn.duplicates_column(response),
            "projection_{}_x": x,
            "projection_{}_y": y,
            "familiarity_{}": dn.familiarity_column(response),
        }
        for c in frame.columns:
            dim = str(c).partition("_byAttr_")[2]
            if dim and c == dn.split_familiarity_column(response, dim):
                # the label dimension is user text: escaped as the response is
                templates["splitFamiliarity_{}_byAttr_" + escape_response(dim)] = c
        renames, entry = readable_columns(list(out.columns), response, templates)
        out = out.rename(columns=renames)
        out.attrs["introscope"] = entry
    return out


def data_section(
    frame: Any,
    source: Any,
    response: str,
    *,
    max_thumbnails: int,
    seed: int = 0,
    projection_name: str = "UMAP",
    digests: RowDigests | None = None,
    input_digests: RowDigests | None = None,
) -> Any:
    """Turn the DatasetReport table into a :class:`DataSection` with bounded thumbnails."""
    from introscope.viz._report_page import DataSection, ranked_groups
    from introscope.viz._thumbs import THUMBNAIL_MAX_PX, thumbnail_uri

    n = len(frame)
    px, py = _column(frame, "projection_", "_x"), _column(frame, "projection_", "_y")
    fam_col = _column(frame, "familiarity_")
    dup_col = _column(frame, "duplicates_")
    x = frame[px].to_numpy(np.float32) if px else None
    y = frame[py].to_numpy(np.float32) if py else None
    fam = frame[fam_col].to_numpy(np.float32) if fam_col else None
    groups: list[list[int]] | None = None
    if dup_col:
        codes = frame[dup_col].to_numpy()
        groups = [
            [int(i) for i in np.flatnonzero(codes == g)] for g in np.unique(codes[codes >= 0])
        ]
    copies = exact = None
    if groups and digests is not None:
        copies = digests.copies(groups, n, input_digests)
        exact = digests.exact(groups, n, input_digests)
    label_col = "label" if "label" in frame.columns else None
    labels = frame[label_col].astype(str).tolist() if label_col else ["(no label)"] * n
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [str(i) for i in range(n)]
    section = DataSection(
        response=response,
        ids=ids,
        labels=labels,
        x=x,
        y=y,
        familiarity=fam,
        duplicate_groups=groups,
        duplicate_copies=copies,
        duplicate_exact=exact,
        projection_name=projection_name,
    )
    # Thumbnails: the galleries and duplicate groups first, then a seeded sample of the rest.
    wanted: list[int] = []
    if fam is not None:
        order = np.argsort(fam, kind="stable")
        k = section.gallery_size
        wanted += [int(i) for i in order[:k]] + [int(i) for i in order[::-1][:k]]
    if groups:
        for d in ranked_groups(section)[: section.max_groups]:
            wanted += [int(i) for i in list(d.members)[: section.group_size]]
    wanted = list(dict.fromkeys(wanted))[:max_thumbnails]
    budget = max(0, max_thumbnails - len(wanted))
    rest = np.setdiff1d(np.arange(n), np.asarray(wanted, dtype=np.int64), assume_unique=False)
    if len(rest) > budget:
        rest = np.sort(np.random.default_rng(seed).choice(rest, size=budget, replace=False))
    thumbs: dict[int, str] = {}
    for i in [*wanted, *(int(r) for r in rest)]:
        image = source.raw_image(i) if source is not None else None
        uri = thumbnail_uri(image) if image is not None else None
        if uri is not None:
            thumbs[i] = uri
    section.thumbnails = thumbs
    if thumbs:
        section.thumbnail_note = (
            f"Thumbnails: {len(thumbs)} of {n} samples embedded, at most {THUMBNAIL_MAX_PX} px on "
            f"the longest side (PNG for small or grey images, JPEG otherwise); gallery and "
            f"duplicate samples first, then a seeded sample, up to --max-thumbnails "
            f"({max_thumbnails})."
        )
    elif max_thumbnails == 0:
        section.thumbnail_note = "No thumbnails: --max-thumbnails 0 turned them off."
    elif source is not None and (source.kind == "images" or _image_arrays(source)):
        section.thumbnail_note = (
            f"No thumbnails: none of the {len(wanted) + len(rest)} samples tried could be shown "
            f"as an image (unreadable, or under 2 px on a side)."
        )
    else:
        section.thumbnail_note = "The samples are vectors, not images: there are no thumbnails."
    return section


def _image_arrays(source: Any) -> bool:
    """Whether an array source holds images (samples of 2 or 3 dimensions)."""
    array = getattr(source, "array", None)
    return source.kind == "arrays" and array is not None and array.ndim in (3, 4)
