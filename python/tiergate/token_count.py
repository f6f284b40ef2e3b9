"""`CountTokens`: tokens in a text by an encoding, by a hosted model's encoding, or by an on-device model's
own tokenizer (through its worker)."""

from __future__ import annotations

from collections.abc import Mapping

from tiergate._native import count_tokens
from tiergate.config import Config
from tiergate.errors import AllAttemptsFailed, InvalidRequest
from tiergate.providers.base import Provider, ProviderError

__all__ = ["count_text_tokens"]

DEFAULT_ENCODING = "o200k_base"


async def count_text_tokens(
    config: Config, providers: Mapping[str, Provider], text: str, encoding: str = "", model: str = ""
) -> tuple[int, str]:
    """(tokens, what counted them). InvalidRequest for an unknown model or encoding."""
    if model:
        model_config = config.models.get(model)
        if model_config is None:
            raise InvalidRequest(f"unknown model {model!r} (models: {', '.join(sorted(config.models))})")
        own = getattr(providers[model], "count_tokens", None)
        if model_config.provider == "llama_cpp" and callable(own):
            try:
                return int(await own(text)), f"model:{model}"
            except ProviderError as exc:
                raise AllAttemptsFailed(f"cannot count tokens on {model!r}: {exc}") from None
        encoding = encoding or model_config.encoding
    encoding = encoding or DEFAULT_ENCODING
    try:
        return count_tokens(text, encoding), encoding
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
