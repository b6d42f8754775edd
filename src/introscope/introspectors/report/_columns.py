"""Column names of the dataset report table (the names DNIKit 2.0 and Symphony read)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "ID",
    "clean_name",
    "duplicates_column",
    "projection_columns",
    "familiarity_column",
    "split_familiarity_column",
    "check_distinct_names",
    "check_unique_columns",
]

#: Name of the identifier column.
ID = "id"
DUPLICATES = "duplicates"
PROJECTION = "projection"
FAMILIARITY = "familiarity"
SPLIT_FAMILIARITY = "splitFamiliarity"
BY_ATTR = "byAttr"

_NOT_KEPT = re.compile(r"[^A-Za-z0-9_\-]")


def clean_name(response: str) -> str:
    """A response name as it appears in column names: spaces become ``_``, then only
    ASCII letters, digits, ``-`` and ``_`` are kept."""
    return _NOT_KEPT.sub("", response.replace(" ", "_"))


def duplicates_column(response: str) -> str:
    return f"{DUPLICATES}_{clean_name(response)}"


def projection_columns(response: str) -> tuple[str, str]:
    prefix = f"{PROJECTION}_{clean_name(response)}"
    return f"{prefix}_x", f"{prefix}_y"


def familiarity_column(response: str) -> str:
    return f"{FAMILIARITY}_{clean_name(response)}"


def split_familiarity_column(response: str, label_dimension: str) -> str:
    """Column of per-label familiarity scores; the label dimension is used as given."""
    return f"{SPLIT_FAMILIARITY}_{clean_name(response)}_{BY_ATTR}_{label_dimension}"


def check_distinct_names(responses: Sequence[str], label_dimensions: Sequence[str]) -> None:
    """Raise when two responses share a cleaned name or a label dimension is called ``id``.

    Either would give two report columns one name, so one would silently replace the other.
    """
    from introscope.exceptions import IntroscopeValueError

    seen: dict[str, str] = {}
    for name in responses:
        cleaned = clean_name(name)
        if cleaned in seen:
            raise IntroscopeValueError(
                f"DatasetReport: responses {seen[cleaned]!r} and {name!r} both become "
                f"{cleaned!r} in report column names (only letters, digits, '-' and '_' are "
                f"kept); rename one with introscope.processors.FieldRenamer"
            )
        seen[cleaned] = name
    for dim in label_dimensions:
        if dim == ID:
            raise IntroscopeValueError(
                f"DatasetReport: label dimension {ID!r} clashes with the report's identifier "
                f"column; rename that entry of the Batch.StdKeys.LABELS metadata"
            )


def check_unique_columns(columns: Sequence[str]) -> None:
    """Raise when two report columns would share a name (a label dimension equal to a result
    column), instead of letting one replace the other."""
    from introscope.exceptions import IntroscopeValueError

    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise IntroscopeValueError(
                f"DatasetReport: two report columns are named {name!r}; a label dimension "
                f"takes the name of a result column, rename that entry of the "
                f"Batch.StdKeys.LABELS metadata"
            )
        seen.add(name)
