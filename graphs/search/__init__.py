"""The ``search`` graph (AnomalyLMM): text query -> retrieval -> cloze re-ranking -> ranked gallery items.

``sleuth index`` builds a gallery (:mod:`sleuth.graphs.search.index`); :func:`search` queries it.
"""

from sleuth.graphs.search.configuration import SearchConfig
from sleuth.graphs.search.graph import build_graph, search
from sleuth.graphs.search.state import RankedItem, SearchResult

__all__ = ["RankedItem", "SearchConfig", "SearchResult", "build_graph", "search"]
