"""Configuration of the ``investigate`` agent (every field documents itself)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class InvestigateConfig(BaseModel):
    max_steps: int = Field(default=6, ge=1, description="Tool rounds per question; then the agent must answer.")
    max_tokens: int = Field(default=512, ge=32, description="Answer length limit per model call (tokens).")
    confirm: bool = Field(default=True, description="Pause for the person's approval before a tool that changes "
                          "stored state or starts a long job (detect, explain, calibrate, rule edits).")
    tool_result_chars: int = Field(default=3000, ge=200, description="Tool results longer than this are cut "
                                   "before the model reads them (small context windows).")
    context_videos: int = Field(default=15, ge=0, description="Videos listed in the system prompt.")
    tool_mode: Literal["auto", "schema", "native"] = Field(
        default="auto", description="How the model picks a tool: 'schema' decodes each step as one JSON object under "
        "a schema built from the tools (every call well-formed, every name real), 'native' uses the endpoint's tool "
        "calling, 'auto' picks 'schema' for the embedded llama.cpp endpoint and 'native' elsewhere.")
    step_tokens: int = Field(default=256, ge=32, description="Token limit of one schema-decoded step.")
