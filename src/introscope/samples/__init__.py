"""Sample producers, the bundled digits data and a tiny CNN."""

__all__: list[str] = []
