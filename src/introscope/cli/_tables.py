"""Tables of ``introscope analyze``: a Parquet table of embeddings (``--data``), and the labels
CSV (``--labels``). Both recognise the same id and label column names."""

from __future__ import annotations

import csv
import io
import pathlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from introscope.exceptions import IntroscopeValueError, require
from introscope.viz._colors import NO_LABEL

from ._models import InputFileError

__all__ = ["ID_COLUMNS", "LABEL_COLUMNS", "NO_LABEL", "label_strings", "load_parquet", "labels_csv"]

#: Column names (any case) of the sample ids and the labels, in a Parquet table or a CSV header.
ID_COLUMNS = ("id", "path", "file", "filename", "name")
LABEL_COLUMNS = ("label", "labels", "class", "category", "y")


def _missing_mask(items: list[Any]) -> list[bool]:
    """Which items are missing (None, NaN, NA, NaT), in one pass of pandas over them all."""
    if not items:
        return []
    from pandas import isna

    flags = isna(np.array(items, dtype=object))
    return cast("list[bool]", flags.tolist())


def label_strings(values: Any) -> list[str]:
    """Labels as text: missing values (None, NaN, NA) are ``NO_LABEL``, and floats that are all
    whole numbers are written as integers (an integer column with a gap reads as float64), so
    the labels are "0", "1", not "0.0", "nan"; other values as ``str`` gives them."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    missing = _missing_mask(items)
    present = [v for v, m in zip(items, missing) if not m]
    whole = bool(present) and all(
        isinstance(v, (float, np.floating)) and float(v).is_integer() for v in present
    )
    return [NO_LABEL if m else str(int(v)) if whole else str(v) for v, m in zip(items, missing)]


def _is_numeric(series: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype)


def _is_vectors(series: Any) -> bool:
    """A column holding one list or array per row (Parquet list columns read as objects)."""
    if series.dtype != object:
        return False
    first = next((v for v in series if v is not None), None)
    return isinstance(first, (list, tuple, np.ndarray))


def _stack(series: Any, name: str, path: pathlib.Path) -> np.ndarray:
    where = f"--data {str(path)!r}: the list column {name!r}"
    empty = [i for i, v in enumerate(series) if v is None]
    if empty:
        raise IntroscopeValueError(
            f"{where} has {len(empty)} empty (null) rows, e.g. row {empty[0]}; give every row "
            f"a vector"
        )
    lengths = [len(v) for v in series]
    counts = Counter(lengths)
    if len(counts) > 1:
        usual = counts.most_common(1)[0][0]
        odd = next(i for i, n in enumerate(lengths) if n != usual)
        seen = ", ".join(f"{n} ({k} rows)" for n, k in counts.most_common(4))
        raise IntroscopeValueError(
            f"{where} holds vectors of different lengths: {seen}{' ...' if len(counts) > 4 else ''}"
            f"; row {odd} has {lengths[odd]} values where most have {usual}; every row needs a "
            f"vector of the same length"
        )
    try:
        return np.stack([np.asarray(v, dtype=np.float32) for v in series])
    except (TypeError, ValueError) as exc:
        raise IntroscopeValueError(f"{where} does not hold numbers ({exc})") from None


def _columns(names: Sequence[str]) -> str:
    names = [str(n) for n in names]
    shown = names if len(names) <= 6 else [*names[:3], "...", names[-1]]
    return f"{len(names)} column{'s' if len(names) != 1 else ''} ({', '.join(shown)})"


def load_parquet(path: pathlib.Path) -> tuple[np.ndarray, Any, Any, list[str]]:
    """(vectors, labels, ids, notes) of a Parquet table: the vectors are the first list column,
    else every numeric column; the id and label columns go by name; other columns (text such
    as a caption or a split) are left out and the notes say so."""
    pq = require("pyarrow.parquet", "report", "reading a Parquet table of embeddings")
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:
        raise InputFileError(f"--data {str(path)!r} is not a readable Parquet file: {exc}") from exc
    lower = {str(c).lower(): c for c in frame.columns}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), None)
    label_col = next((lower[c] for c in LABEL_COLUMNS if c in lower), None)
    rest = [c for c in frame.columns if c not in (id_col, label_col)]
    vectors = [c for c in rest if _is_vectors(frame[c])]
    numeric = [c for c in rest if _is_numeric(frame[c])]
    if vectors:
        used = [vectors[0]]
        x = _stack(frame[vectors[0]], str(vectors[0]), path)
        what = f"the list column {str(vectors[0])!r}"
    elif numeric:
        used = numeric
        x = frame[numeric].to_numpy(dtype=np.float32, na_value=np.nan)
        what = f"the numbers in {_columns(numeric)}"
    else:
        found = ", ".join(f"{c} ({frame[c].dtype})" for c in rest[:6]) or "none"
        raise InputFileError(
            f"--data {str(path)!r}: no embedding column (a list column of vectors, or numeric "
            f"columns, one per dimension); besides id/label columns it has: {found}"
        )
    notes = [f"embeddings from {what}"]
    left_out = [c for c in rest if c not in used]
    if left_out:
        notes.append(f"{_columns(left_out)} left out: not the embedding")
    labels = label_strings(frame[label_col]) if label_col else None
    ids = frame[id_col].astype(str).tolist() if id_col else None
    return x, labels, ids, notes


def _header(row: Sequence[str]) -> tuple[int | None, int | None] | None:
    """(id column, label column) of a header row, or None when ``row`` is not a header."""
    head = [h.strip().lower() for h in row]
    id_i = next((head.index(c) for c in ID_COLUMNS if c in head), None)
    label_i = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
    if id_i is None and label_i is None:
        return None
    if label_i is None and len(head) == 2:  # "filename,target": the other column
        label_i = 1 - id_i  # type: ignore[operator]
    return id_i, label_i


def _id_column(rows: Sequence[Sequence[str]], ids: Sequence[str]) -> int | None:
    """The column of a headerless CSV that holds sample ids (the one with the most distinct
    values among ``ids``, at least one), or None when no column holds any."""
    if not rows or len(rows[0]) < 2:
        return None
    known = set(ids)
    hits = []
    for k in range(len(rows[0])):
        matched = [r[k].strip() for r in rows if len(r) > k and r[k].strip() in known]
        # ids name one sample each: a column whose matches mostly repeat (labels 0/1 that
        # happen to be integer ids) is not the id column; a repeated row or two is (the last
        # one's label is kept, as with a header)
        distinct = len(set(matched))
        hits.append(distinct if 2 * distinct > len(matched) else 0)
    best = max(range(len(hits)), key=hits.__getitem__)
    if hits[best] == 0 or (hits[best] == len(rows) - 1 and rows[0][best].strip() not in known):
        return None  # none, or every row but the first: a header with unknown names
    return best


def labels_csv(path: pathlib.Path, ids: Sequence[str], id_hint: str) -> list[str]:
    """The labels of ``--labels`` for the samples ``ids``: from an id,label CSV (matched by id,
    in any order), or one label per row in sample order. ``id_hint`` says what the ids are."""
    if not path.is_file():
        raise InputFileError(f"--labels {str(path)!r} does not exist")
    where = f"--labels {str(path)!r}"
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") must not hide the id column's name.
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows:
        raise InputFileError(f"{where} is empty")
    header = _header(rows[0])
    # A ';'- or tab-separated file (Excel in many locales) is read as such when its first row
    # is then a header; otherwise errors below say which separator is used.
    other = next((d for d in ";\t" if len(rows[0]) == 1 and d in rows[0][0]), None)
    split = rows
    if other is not None:
        split = [r for r in csv.reader(io.StringIO(text), delimiter=other) if r]
        if header is None and _header(split[0]) is not None:
            rows, header, other = split, _header(split[0]), None
    sep = (
        f" (it is read as comma-separated, but its first row holds {other!r}: if that "
        f"separates the columns, give the file a header row naming them)"
        if other is not None
        else ""
    )
    names = f"an id column ({'/'.join(ID_COLUMNS)}) and a label column ({'/'.join(LABEL_COLUMNS)})"
    if header is not None:
        id_i, label_i = header
        body = rows[1:]
        if label_i is None:
            raise IntroscopeValueError(
                f"{where} has the header {rows[0]} but no label column; name it one of "
                f"{list(LABEL_COLUMNS)}"
            )
        short = next((k for k, r in enumerate(body, 2) if len(r) <= max(label_i, id_i or 0)), None)
        if short is not None:
            raise IntroscopeValueError(f"{where}: row {short} has fewer columns than the header")
        if id_i is not None:
            mapping = {r[id_i]: r[label_i] for r in body}
            missing = [i for i in ids if i not in mapping]
            if missing:
                raise IntroscopeValueError(
                    f"{where} has no label for {len(missing)} of {len(ids)} samples, e.g. "
                    f"{missing[:3]}; {id_hint}"
                )
            return [mapping[i] for i in ids]
        if len(rows[0]) > 1:
            # Labels by row order with an unrecognised id column would silently mislabel a
            # CSV written in another order.
            others = [h for k, h in enumerate(rows[0]) if k != label_i]
            raise IntroscopeValueError(
                f"{where} has columns {others} besides {rows[0][label_i]!r}, none of them an id "
                f"column; name the id column one of {list(ID_COLUMNS)}, or keep only the label "
                f"column to give the labels in sample order"
            )
    else:
        if other is not None and _id_column(split, ids) is not None:
            rows, other = split, None  # "a.png;cat" rows without a header
        id_i = _id_column(rows, ids)
        if id_i is not None:
            # A headerless "path,label" file: matched by its id column, never by row order.
            width = min(len(r) for r in rows)
            label_i = width - 1 if id_i != width - 1 else 0
            mapping = {r[id_i].strip(): r[label_i] for r in rows if len(r) > max(id_i, label_i)}
            missing = [i for i in ids if i not in mapping]
            if missing:
                raise IntroscopeValueError(
                    f"{where} has no header; its column {id_i + 1} holds sample ids, but it has "
                    f"no label for {len(missing)} of {len(ids)} samples, e.g. {missing[:3]}; "
                    f"{id_hint}"
                )
            return [mapping[i] for i in ids]
        if len(rows[0]) > 1 and len(rows) != len(ids) + 1:
            # Several columns, none of them the ids: labels by row order would silently
            # mislabel a file written in another order.
            raise IntroscopeValueError(
                f"{where} has no header and {len(rows[0])} columns (first row {rows[0]}), but "
                f"no column holds the sample ids; {id_hint}; give it a header with {names}, or "
                f"keep only the label column to give the labels in sample order{sep}"
            )
        body, label_i = rows, len(rows[0]) - 1
    labels = [r[min(label_i, len(r) - 1)] for r in body]
    if len(labels) != len(ids):
        looks = header is None and len(labels) == len(ids) + 1
        hint = (
            f"; its first row {rows[0]} looks like a header: name its columns with {names}, or "
            f"remove it"
            if looks
            else "; give one label per sample in order, or a header with " + names
        )
        raise IntroscopeValueError(
            f"{where} has {len(labels)} labels for {len(ids)} samples{hint}{sep}"
        )
    return labels
