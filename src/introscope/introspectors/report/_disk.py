"""Save and load the report table: Parquet (pyarrow) for the data, JSON for what it needs to
come back exactly. No pickle."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import numpy as np

from introscope._atomic import atomic_path
from introscope.exceptions import IntroscopeError, require

__all__ = ["DATA_FILE", "META_FILE", "LEGACY_FILE", "save_frame", "load_frame", "existing_files"]

DATA_FILE = "report_data.parquet"
META_FILE = "report_meta.json"
#: DNIKit 2.0's save file (a pickle, never read here).
LEGACY_FILE = "report_save_data.pkl"
_FORMAT = "introscope.DatasetReport"
_VERSION = 1


def existing_files(directory: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in (directory / DATA_FILE, directory / META_FILE) if p.exists()]


def _is_score_map_column(series: Any) -> bool:
    """True for an object column whose cells are all ``{str: number}`` dicts (split familiarity)."""
    if series.dtype != object or len(series) == 0:
        return False
    for cell in series:
        if not isinstance(cell, dict):
            return False
        for key, value in cell.items():
            if not isinstance(key, str) or not isinstance(value, (float, int, np.number)):
                return False
    return True


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_frame(frame: Any, directory: pathlib.Path) -> None:
    """Write ``frame`` as Parquet + JSON; each file goes to a temporary name and is renamed.

    The JSON, renamed last, records the Parquet file's size and SHA-256, so a save interrupted
    between the two renames is detected on load rather than read as complete.
    """
    pa = require("pyarrow", "report", "saving a DatasetReport")
    pq = require("pyarrow.parquet", "report", "saving a DatasetReport")

    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns) or list(frame.columns) != columns:
        raise IntroscopeError(
            "DatasetReport.to_disk: the report's columns must have distinct str names, got "
            f"{list(frame.columns)}"
        )
    map_columns = [c for c in columns if _is_score_map_column(frame[c])]
    plain = frame.drop(columns=map_columns)
    try:
        table = pa.Table.from_pandas(plain, preserve_index=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise IntroscopeError(
            f"DatasetReport.to_disk: a column cannot be stored in Parquet ({exc}); report "
            f"columns hold strings, numbers or {{label: score}} dicts"
        ) from None
    map_type = pa.map_(pa.string(), pa.float64())
    for name in map_columns:
        cells = [[(k, float(v)) for k, v in cell.items()] for cell in frame[name]]
        table = table.append_column(name, pa.array(cells, type=map_type))

    data_path = directory / DATA_FILE
    meta_path = directory / META_FILE
    # Through introscope._atomic: the permissions of the files replaced (or the umask's),
    # links written through. Both files are written before either is renamed into place (the
    # data first, then the JSON that vouches for it), so a failed write leaves the old report.
    with atomic_path(meta_path) as tmp_meta:
        with atomic_path(data_path) as tmp_data:
            pq.write_table(table, tmp_data)
            meta = {
                "format": _FORMAT,
                "version": _VERSION,
                "rows": len(frame),
                "columns": columns,
                "score_map_columns": map_columns,
                "data_file": DATA_FILE,
                "data_bytes": tmp_data.stat().st_size,
                "data_sha256": _sha256(tmp_data),
            }
            with open(tmp_meta, "x", encoding="utf-8") as handle:
                json.dump(meta, handle, indent=1)


def load_frame(directory: pathlib.Path) -> Any:
    """Read a table written by ``save_frame``, with its columns, order and dtypes."""
    pq = require("pyarrow.parquet", "report", "loading a DatasetReport")
    meta_path = directory / META_FILE
    data_path = directory / DATA_FILE
    if not meta_path.exists() or not data_path.exists():
        hint = "Save the report with report.to_disk(directory)."
        if (directory / LEGACY_FILE).exists():
            hint = (
                f"{LEGACY_FILE} is a DNIKit 2.0 save (a pickle, which introscope never loads: "
                f"unpickling runs arbitrary code). If you trust it, load it with "
                f"pandas.read_pickle and save it again with DatasetReport(data=frame).to_disk()."
            )
        missing = [p.name for p in (data_path, meta_path) if not p.exists()]
        raise FileNotFoundError(f"{directory} is missing the report file(s) {missing}. {hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise IntroscopeError(
            f"DatasetReport.from_disk: {meta_path} is unreadable ({exc})"
        ) from None
    if not isinstance(meta, dict):
        raise IntroscopeError(
            f"DatasetReport.from_disk: {meta_path} is not an introscope report description (it "
            f"holds a JSON {type(meta).__name__}, not an object); save the report again"
        )
    if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
        raise IntroscopeError(
            f"DatasetReport.from_disk: {meta_path} describes {meta.get('format')!r} version "
            f"{meta.get('version')!r}; this introscope reads {_FORMAT!r} version {_VERSION}"
        )
    absent = [
        k for k in ("data_bytes", "data_sha256", "score_map_columns", "columns") if k not in meta
    ]
    if absent:
        raise IntroscopeError(
            f"DatasetReport.from_disk: {meta_path} lacks {absent} (edited or cut short); save "
            f"the report again"
        )
    if data_path.stat().st_size != meta["data_bytes"] or _sha256(data_path) != meta["data_sha256"]:
        raise IntroscopeError(
            f"DatasetReport.from_disk: {data_path} does not match {meta_path} (an interrupted or "
            f"concurrent save?); save the report again with to_disk(overwrite=True)"
        )
    table = pq.read_table(data_path)
    map_columns = meta["score_map_columns"]
    frame = table.drop_columns(map_columns).to_pandas()
    for name in map_columns:
        frame[name] = [
            {k: np.float64(v) for k, v in cell} if cell is not None else None
            for cell in table.column(name).to_pylist()
        ]
    return frame[meta["columns"]]
