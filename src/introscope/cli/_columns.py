"""Column names of ``dataset_report.parquet``: the response name kept readable and unambiguous.

DatasetReport's columns (DNIKit's names) keep only letters, digits, ``-`` and ``_`` of a
response name, so ``/relu3/Relu_output_0`` becomes ``duplicates_relu3Relu_output_0`` and
``/a/bc`` and ``/ab/c`` would share a column. The Parquet file of ``introscope analyze`` names
them ``<component>_<response>`` with the response name as it is, except that ``%``, whitespace,
control characters and ``,;{}()=`` (which Spark and others refuse in column names) are written
as ``%XX`` (the UTF-8 bytes in hex, as in URLs): ``duplicates_/relu3/Relu_output_0``. Distinct
response names give distinct columns, and :func:`unescape_response` reads the name back. The schema
metadata key ``introscope`` holds, per such column, its component, the original response name
and DNIKit's column name.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from introscope.exceptions import IntroscopeValueError

__all__ = [
    "escape_response",
    "unescape_response",
    "readable_columns",
    "schema_metadata",
    "METADATA_KEY",
]

#: Schema metadata key of ``dataset_report.parquet`` describing its response columns.
METADATA_KEY = b"introscope"
_SPECIAL = frozenset(",;{}()=%")
_PERCENT = re.compile(r"%([0-9A-F]{2})")


def _escaped(ch: str) -> bool:
    return ch in _SPECIAL or unicodedata.category(ch)[0] in "CZ"


def escape_response(name: str) -> str:
    """``name`` for a column name: ``%``, whitespace, control characters and ``,;{}()=`` as
    ``%XX`` (UTF-8 bytes); every other character, ``/`` and ``.`` included, as it is."""
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode("utf-8")) if _escaped(ch) else ch for ch in name
    )


def unescape_response(text: str) -> str:
    """The response name that :func:`escape_response` turned into ``text``."""
    if "%" not in text:
        return text
    data = bytearray()
    i = 0
    while i < len(text):
        m = _PERCENT.match(text, i)
        if m:
            data.append(int(m.group(1), 16))
            i = m.end()
        else:
            data += text[i].encode("utf-8")
            i += 1
    return data.decode("utf-8")


def readable_columns(
    columns: list[str], response: str, dnikit: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """(DNIKit column -> readable column, schema metadata entry) for the columns of one response.

    ``dnikit`` maps a column template (``"duplicates_{}"``, ``"projection_{}_x"``) to the DNIKit
    column DatasetReport gave it; its first ``{}`` is replaced by the escaped response name
    (the rest of a template, such as an escaped label dimension, is kept as it is). Raises when
    a new name is already a column.
    """
    escaped = escape_response(response)
    renames: dict[str, str] = {}
    described: dict[str, Any] = {}
    for template, old in dnikit.items():
        if old not in columns:
            continue
        new = template.replace("{}", escaped, 1)
        renames[old] = new
        described[new] = {
            "component": template.split("_", 1)[0],
            "response": response,
            "dnikit_column": old,
        }
    taken = set(columns) - set(renames)
    clash = sorted(set(renames.values()) & taken)
    if clash or len(set(renames.values())) != len(renames):
        raise IntroscopeValueError(
            f"dataset_report.parquet: the response {response!r} gives the column(s) {clash} "
            f"that the table already has; rename the response (--embedding-layer) or the label "
            f"column"
        )
    return renames, {"format": 1, "columns": described}


def schema_metadata(entry: Mapping[str, Any]) -> dict[bytes, bytes]:
    """The ``introscope`` schema metadata of the Parquet file, as pyarrow takes it."""
    return {METADATA_KEY: json.dumps(entry, ensure_ascii=False).encode("utf-8")}
