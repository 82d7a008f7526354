"""Agents: LangGraph nodes that call an LLM/VLM through :mod:`sleuth.llm.gateway` with a prompt
from :mod:`sleuth.prompts` and return validated pydantic objects. They never load weights."""
