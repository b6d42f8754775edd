"""Inactive Unit Analysis (IUA)."""

from ._iua import IUA

__all__ = ["IUA"]
