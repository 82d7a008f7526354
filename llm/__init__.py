"""The LLM layer: packaged GGUF models, the embedded llama.cpp server and the LiteLLM gateway."""

from sleuth.llm.gateway import CallRecord, ChatResult, Gateway, ToolCall, get_gateway, image_part

__all__ = ["CallRecord", "ChatResult", "Gateway", "ToolCall", "get_gateway", "image_part"]
