"""Views of introspection results (tables, charts, HTML); ``save_figure`` saves any chart."""

from ._figure import save_figure

__all__ = ["save_figure"]
