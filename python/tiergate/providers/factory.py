"""Builds the provider for a configured model. Local models start their worker process here, so a missing
or non-GGUF model file fails at start."""

from __future__ import annotations

from tiergate.config import ModelConfig
from tiergate.providers.base import Provider


async def build_provider(name: str, config: ModelConfig) -> Provider:
    if config.provider == "onnx":
        from tiergate.providers.onnx_embedding import OnnxEmbeddingProvider

        return await OnnxEmbeddingProvider.start(name, config)
    if config.provider == "openai" and config.is_embedding:
        from tiergate.providers.openai_embeddings import OpenAIEmbeddingProvider

        return OpenAIEmbeddingProvider(name, config)
    if config.provider == "openai":
        from tiergate.providers.openai import OpenAIProvider

        return OpenAIProvider(name, config)
    if config.provider == "anthropic":
        from tiergate.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, config)
    from tiergate.providers.llama_cpp import LlamaCppProvider

    return await LlamaCppProvider.start(name, config)
