"""Assemble the report's pandas DataFrame with DNIKit 2.0's columns, order and dtypes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _columns as cols

__all__ = ["build_frame"]


def build_frame(
    ids: Sequence[str],
    labels: Mapping[str, Sequence[str]],
    responses: Sequence[str],
    *,
    duplicates: Mapping[str, np.ndarray] | None = None,
    projections: Mapping[str, np.ndarray] | None = None,
    familiarity: Mapping[str, np.ndarray] | None = None,
    split_labels: Mapping[str, Sequence[str]] | None = None,
    split_scores: Mapping[tuple[str, str], Mapping[str, np.ndarray]] | None = None,
) -> Any:
    """One row per element: ``id``, the label dimensions, then each component's columns.

    Args:
        duplicates: response -> cluster number per element (-1: in no cluster).
        projections: response -> (N, 2) coordinates.
        familiarity: response -> overall familiarity score per element.
        split_labels: label dimension -> the label values that got their own model (possibly
            none); a column per dimension and response holds ``{label: score}`` per element.
        split_scores: (label dimension, label) -> response -> score per element.
    """
    import pandas as pd

    data: dict[str, Any] = {cols.ID: list(ids)}
    for dim, values in labels.items():
        data[dim] = list(values)
    columns = list(data)

    def put(name: str, value: Any) -> None:
        columns.append(name)
        data[name] = value

    if duplicates:
        for response in responses:
            put(cols.duplicates_column(response), pd.Series(duplicates[response], dtype=np.int32))
    if projections:
        for response in responses:
            x, y = cols.projection_columns(response)
            coords = projections[response]
            put(x, pd.Series(coords[:, 0]))
            put(y, pd.Series(coords[:, 1]))
    if familiarity:
        for response in responses:
            scores = familiarity[response]
            put(cols.familiarity_column(response), pd.Series(scores, dtype=np.float64))
    # DNIKit writes split columns only when at least one label value got its own model; then every
    # label dimension has a column, empty dicts for a dimension none of whose values qualified.
    if split_labels and split_scores:
        for dim, dim_labels in split_labels.items():
            for response in responses:
                per_label = [
                    np.asarray(split_scores[(dim, label)][response], dtype=np.float64).tolist()
                    for label in dim_labels
                ]
                cells = (
                    [
                        {label: np.float64(s) for label, s in zip(dim_labels, row)}
                        for row in zip(*per_label)
                    ]
                    if per_label
                    else [{} for _ in range(len(ids))]
                )
                put(cols.split_familiarity_column(response, dim), cells)
    cols.check_unique_columns(columns)
    return pd.DataFrame(data, columns=columns)
