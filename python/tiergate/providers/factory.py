"""Builds the provider for a configured model. Local models load here, so a bad file fails at start."""

from __future__ import annotations

import asyncio

from tiergate.config import ModelConfig
from tiergate.providers.base import Provider


async def build_provider(name: str, config: ModelConfig) -> Provider:
    if config.provider == "openai":
        from tiergate.providers.openai import OpenAIProvider

        return OpenAIProvider(name, config)
    if config.provider == "anthropic":
        from tiergate.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, config)
    # Imported only when a local model is configured: llama.cpp costs memory and start-up time.
    from tiergate.providers.llama_cpp import LlamaCppProvider

    # Loading a GGUF blocks for a while: keep the event loop free meanwhile.
    return await asyncio.to_thread(LlamaCppProvider, name, config)
