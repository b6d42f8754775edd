"""Introspection on Ray Data: partial states per block on Ray workers, merged on the driver.

Needs the ``ray`` extra (``pip install 'introscope[ray]'``); Ray is imported on first use, and
a missing Ray raises ``MissingDependencyError`` naming the extra.
"""

from ._cluster import init_local
from ._entries import AccumulatorEntry, Entry, FamiliarityEntry, PFAEntry
from ._introspect import RayRunStats, actor_resources, introspect
from ._score import score

__all__ = [
    "AccumulatorEntry",
    "Entry",
    "FamiliarityEntry",
    "PFAEntry",
    "RayRunStats",
    "actor_resources",
    "init_local",
    "introspect",
    "score",
]
