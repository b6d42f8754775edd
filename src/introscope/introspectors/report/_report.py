"""``DatasetReport``: familiarity, duplicates and a 2-D map of a dataset in one table."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import pathlib
from typing import TYPE_CHECKING, Any, ClassVar, final

import numpy as np

from introscope.base import Producer
from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeValueError, require

from . import _columns as cols
from . import _components as comp
from ._collect import collect
from ._config import ReportConfig
from ._disk import existing_files, load_frame, save_frame

if TYPE_CHECKING:
    import pandas as pd
from ._frame import build_frame

__all__ = ["DatasetReport"]

_logger = logging.getLogger("introscope.introspectors.DatasetReport")


@final
@dataclasses.dataclass(frozen=True)
class DatasetReport:
    """A table with one row per element of a dataset: its identifier and labels, its duplicate
    cluster, its 2-D projection and how familiar it is, overall and among elements sharing each
    of its labels.

    Build it with ``introspect``, or load a saved one with ``from_disk``. ``data``
    has DNIKit 2.0's columns, so code written for DNIKit and Apple's Symphony UI read it
    unchanged (``Symphony(report.data, id_column="id")``).

    Args:
        data: the report table; use ``introspect`` or ``from_disk`` to make one.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> from introscope.introspectors import DatasetReport, DimensionReduction, Familiarity
        >>> from introscope.introspectors import ReportConfig
        >>> rng = np.random.default_rng(0)
        >>> builder = Batch.Builder({"emb": rng.normal(size=(30, 3))})
        >>> builder.metadata[Batch.StdKeys.IDENTIFIER] = list(range(30))
        >>> builder.metadata[Batch.StdKeys.LABELS] = {"color": ["red", "blue"] * 15}
        >>> config = ReportConfig(
        ...     projection=DimensionReduction.Strategy.PCA(2),  # UMAP by default
        ...     familiarity=Familiarity.Strategy.GMM(gaussian_count=1, random_state=0),
        ...     split_familiarity_min=10,
        ... )
        >>> producer = producer_from_batches(builder.make_batch())
        >>> report = DatasetReport.introspect(producer, config=config)
        >>> report.data.shape
        (30, 7)
        >>> list(report.data.columns)[:4]
        ['id', 'color', 'duplicates_emb', 'projection_emb_x']
    """

    data: pd.DataFrame
    """pandas DataFrame: ``id``; one column per label dimension; ``duplicates_<response>`` (the
    element's duplicate cluster, -1 for none); ``projection_<response>_x`` / ``_y``;
    ``familiarity_<response>``; ``splitFamiliarity_<response>_byAttr_<label dimension>``
    (``{label value: score}`` under each label value's own model). Response names keep only
    letters, digits, ``-`` and ``_`` (spaces become ``_``)."""

    _report_save_data_path: ClassVar[pathlib.Path] = pathlib.Path("report_data.parquet")

    def __post_init__(self) -> None:
        pd = require("pandas", "report", "DatasetReport")
        if not isinstance(self.data, pd.DataFrame):
            raise IntroscopeValueError(
                f"DatasetReport(data=...) takes a pandas DataFrame, got {type(self.data).__name__}; "
                f"build a report with DatasetReport.introspect(producer)"
            )

    @staticmethod
    def introspect(
        producer: Producer, *, config: ReportConfig | None = None, batch_size: int = 1024
    ) -> DatasetReport:
        """Build the report from ``producer``, calling it exactly once.

        Every batch needs ``Batch.StdKeys.IDENTIFIER`` metadata; ``Batch.StdKeys.LABELS`` entries
        become label columns (values as ``str``) and drive the per-label familiarity. Responses
        must be 2-D (one vector per element); all of them are held in memory, one array per
        response, since the components need every row at once.

        Args:
            producer: yields batches of model responses (typically an embedding layer).
            config: which components to build; None means ``ReportConfig()`` (everything, with
                the default strategies). Familiarity models are fitted in a fixed order (overall,
                then each label dimension's values in order of first appearance), so a shared
                ``RandomState`` gives reproducible results.
            batch_size: batch size for the pass over ``producer`` and for the components.
        """
        require("pandas", "report", "DatasetReport")
        batch_size = check_batch_size(batch_size)
        if config is not None and not isinstance(config, ReportConfig):
            raise IntroscopeValueError(
                f"DatasetReport.introspect: config must be a ReportConfig, got "
                f"{type(config).__name__}"
            )
        config = ReportConfig() if config is None else config
        collected = collect(producer, batch_size, keep_responses=config.use_dim_reduction)
        names = list(collected.responses)
        cols.check_distinct_names(names, list(collected.labels))
        parts: dict[str, Any] = {}

        if config.use_dim_reduction:
            strategies = config.dim_reduction
            if not strategies:
                strategies = comp.default_dim_reduction(collected.responses)
            reduced = comp.reduce(collected.responses, strategies, batch_size)

            # The projection (UMAP by default, mostly numba code that releases the GIL) runs on
            # a worker thread while duplicates and the familiarity models run here, as DNIKit
            # overlaps its components; each part owns its state, so the results do not depend
            # on the overlap.
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                projection = (
                    pool.submit(comp.project, reduced, config.projection, batch_size)
                    if config.projection
                    else None
                )
                try:
                    if config.duplicates:
                        parts["duplicates"] = comp.find_duplicates(
                            reduced, config.duplicates, batch_size
                        )
                    if config.familiarity:
                        parts.update(_familiarity(reduced, collected.labels, config, batch_size))
                except BaseException:
                    if projection is not None:
                        projection.cancel()  # leaving the block still waits for a running one
                    raise
                if projection is not None:
                    parts["projections"] = projection.result()

        frame = build_frame(collected.ids, collected.labels, names, **parts)
        return DatasetReport(data=frame)

    @staticmethod
    def from_disk(directory: str | pathlib.Path) -> DatasetReport:
        """Load a report saved with ``to_disk``; ``FileNotFoundError`` when there is none."""
        require("pandas", "report", "DatasetReport")
        return DatasetReport(data=load_frame(pathlib.Path(directory).expanduser()))

    def to_disk(
        self, directory: str | pathlib.Path = "./report_save", *, overwrite: bool = False
    ) -> None:
        """Save ``data`` to ``directory`` (created if needed) as Parquet plus a JSON file.

        Raises ``FileExistsError`` when a report is already saved there and ``overwrite`` is
        False. The files are written under temporary names and renamed into place.
        """
        directory = pathlib.Path(directory).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        if not overwrite and existing_files(directory):
            raise FileExistsError(
                f"A report is already saved in {directory}; pass overwrite=True to replace it."
            )
        save_frame(self.data, directory)


def _familiarity(
    reduced: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    config: ReportConfig,
    batch_size: int,
) -> dict[str, Any]:
    strategy = config.familiarity
    overall = comp.fit_and_score_familiarity(reduced, strategy, batch_size)
    split_labels = comp.split_label_values(labels, config.split_familiarity_min)
    split_scores: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for dim, values in split_labels.items():
        column = np.asarray(labels[dim], dtype=object)
        for value in values:
            rows = np.flatnonzero(column == value)
            split_scores[(dim, value)] = comp.fit_and_score_familiarity(
                reduced, strategy, batch_size, rows=rows, what=f"{dim}={value!r}"
            )
    return {"familiarity": overall, "split_labels": split_labels, "split_scores": split_scores}
