"""Configuration of the ``search`` graph (AnomalyLMM's defaults; every field documents itself)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SearchConfig(BaseModel):
    top_k: int = Field(default=10, ge=1, description="Candidates the retriever returns (the ranked list's length).")
    top_n: int = Field(default=3, ge=0, description="Best retrieved candidates that are cloze-completed and "
                       "re-ranked (AnomalyLMM: 3); 0 turns re-ranking off.")
    beta: float = Field(default=0.5, gt=0, le=1, description="Fusion decay: the candidate ranked n-th by the "
                        "comparison gets a2*beta**n (AnomalyLMM: 0.5).")
    a1: float = Field(default=1.0, ge=0, description="Weight of the retrieval similarity S1 (AnomalyLMM: 1.0).")
    a2: float = Field(default=0.075, ge=0, description="Weight of the re-ranking bonus (AnomalyLMM: 0.075).")
    kinds: list[Literal["person", "object", "frame"]] | None = Field(
        default=None, description="Gallery item kinds searched: person/object crops and whole frames (None: all).")
    completion: Literal["auto", "vlm", "local-vlm", "description"] = Field(
        default="auto", description="Evidence for cloze completion. auto: the crop image to the vision model when "
        "one is configured (vlm role through LiteLLM, else a transformers captioner in this process), otherwise "
        "the LLM reads the candidate's description.")
    image_width: int = Field(default=384, ge=32, description="Crops sent to a VLM are downscaled to this width.")
