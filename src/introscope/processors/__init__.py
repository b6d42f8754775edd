"""Pipeline stages that transform batches."""

__all__: list[str] = []
