"""Introspectors: algorithms that consume a producer of model responses or data."""

__all__: list[str] = []
