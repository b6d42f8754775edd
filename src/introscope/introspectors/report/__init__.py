"""Dataset report: identifiers, labels, duplicates, projection and familiarity in one table."""

from ._config import ReportConfig
from ._report import DatasetReport

__all__ = ["DatasetReport", "ReportConfig"]
