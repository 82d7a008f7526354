"""Captioners: the embedded structured describer, a transformers VLM, or a LiteLLM vision endpoint.

:func:`build_captioner` picks one from ``settings.tools.captioner.kind``. Each implementation is
imported only when chosen, so the embedded default never imports transformers or LiteLLM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sleuth.config import Settings
from sleuth.errors import ConfigError
from sleuth.tools.captioners.base import Captioner

if TYPE_CHECKING:
    from sleuth.llm.gateway import Gateway

__all__ = ["Captioner", "build_captioner"]


def build_captioner(settings: Settings, *, gateway: Gateway | None = None) -> Captioner:
    """The captioner the configuration asks for. ``gateway``: share one for the 'litellm' kind."""
    config = settings.tools.captioner
    if config.kind == "structured":
        from sleuth.tools.captioners.structured import StructuredDescriber

        return StructuredDescriber(settings)
    if config.kind == "transformers":
        if not config.model:
            raise ConfigError("the 'transformers' captioner needs a model",
                              hint="set tools.captioner.model (SLEUTH_TOOLS__CAPTIONER__MODEL) to a local "
                              "model folder or a Hugging Face id")
        from sleuth.tools.captioners.vlm_transformers import TransformersCaptioner

        return TransformersCaptioner(config.model, prompt=config.prompt, batch_size=config.batch_size,
                                     max_new_tokens=config.max_new_tokens, device=config.device)
    if config.kind == "litellm":
        if not settings.vlm.model:
            raise ConfigError("the 'litellm' captioner needs a vision model in the 'vlm' role",
                              hint="set vlm.model (SLEUTH_VLM__MODEL) to a LiteLLM model string, and vlm.api_base "
                              "for a self-hosted server")
        from sleuth.llm.gateway import Gateway
        from sleuth.tools.captioners.vlm_litellm import LiteLLMCaptioner

        return LiteLLMCaptioner(gateway or Gateway(settings), prompt=config.prompt,
                                max_tokens=config.max_new_tokens)
    raise ConfigError(f"unknown captioner kind '{config.kind}'",  # unreachable through Settings validation
                      hint="use 'structured', 'transformers' or 'litellm'")
