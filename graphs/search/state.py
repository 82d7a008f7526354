"""What the ``search`` graph returns: ranked gallery items, each with its cloze completion as evidence."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sleuth.agents.cloze import Cloze, Completion
from sleuth.memory.gallery import GalleryItem


class RankedItem(BaseModel):
    item: GalleryItem
    s1: float = Field(description="Retrieval similarity (cosine).")
    rank: int | None = Field(default=None, description="n among the re-ranked top-N (0 best, ties share); None "
                             "outside the top-N.")
    score: float = Field(description="Fused score S = a1*S1 + a2*beta**n (a1*S1 outside the top-N).")
    completion: Completion | None = None


class SearchResult(BaseModel):
    query: str
    gallery: str
    retriever: str = Field(description="The retriever model and the gallery vector it searched.")
    cloze: Cloze | None = None
    results: list[RankedItem] = Field(default_factory=list, description="Fused order, best first.")
    retrieval: list[RankedItem] = Field(default_factory=list, description="The same items in retrieval order.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
