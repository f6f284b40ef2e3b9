"""Real hosted providers: run only with real keys in the environment (skipped otherwise)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.integration.inprocess import serve
from tiergate.v1 import tiergate_pb2 as pb

pytestmark = pytest.mark.hosted

PROVIDERS = [
    ("openai", "OPENAI_API_KEY", "gpt-5-mini"),
    ("anthropic", "ANTHROPIC_API_KEY", "claude-sonnet-4-5"),
]


@pytest.mark.parametrize(("provider", "key_var", "model"), PROVIDERS)
async def test_complete_and_stream_against_the_real_provider(provider: str, key_var: str, model: str) -> None:
    if not os.environ.get(key_var):
        pytest.skip(f"{key_var} is not set")
    config: dict[str, Any] = {
        "models": {"hosted": {"provider": provider, "model": model, "api_key": f"env:{key_var}"}},
        "routes": {"default": {"chain": ["hosted"], "ttft_ms": 20000, "total_ms": 60000}},
    }
    async with serve(config, os.environ) as side:
        request = pb.CompleteRequest(messages=[pb.Message(role="user", content="Reply with the word: pong")])
        response = await side.stub.Complete(request, timeout=60)
        assert response.text and response.decision.served_by == "hosted"
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        chunks = [c async for c in side.stub.StreamComplete(request, timeout=60)]
        assert "".join(c.text for c in chunks) and chunks[-1].decision.served_by == "hosted"
