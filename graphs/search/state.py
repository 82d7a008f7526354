"""What the ``search`` graph returns: ranked gallery items, each with its cloze completion as
evidence; kept in :mod:`sleuth.agents.cloze` so that reports can read them without importing a graph."""

from sleuth.agents.cloze import RankedItem, SearchResult

__all__ = ["RankedItem", "SearchResult"]
