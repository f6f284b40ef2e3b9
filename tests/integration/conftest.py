"""Integration fixtures. Each section below is self-contained; add yours in its own section."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tiergate.providers.llama_cpp import LlamaCppProvider

# -- local model (llama.cpp) ------------------------------------------------------------------------------
# The embedded Gemma 3 270M, loaded once per test run. Imports stay inside the fixtures so that a missing
# llama-cpp-python does not break the collection of unrelated tests.

LOCAL_QUEUE_SIZE = 2
LOCAL_MAX_OUTPUT_TOKENS = 32
LOCAL_CONTEXT_WINDOW = 2048


@pytest.fixture(scope="session")
def local_model_session() -> Iterator[LlamaCppProvider]:
    """The embedded model behind one LlamaCppProvider for the whole run (prefer `local_model`)."""
    from tiergate.config import ModelConfig
    from tiergate.providers.llama_cpp import LlamaCppProvider

    config = ModelConfig(
        provider="llama_cpp",
        path="embedded",
        context_window=LOCAL_CONTEXT_WINDOW,
        queue_size=LOCAL_QUEUE_SIZE,
        max_output_tokens=LOCAL_MAX_OUTPUT_TOKENS,
    )
    provider = LlamaCppProvider("local", config)
    yield provider
    asyncio.run(provider.aclose())


@pytest.fixture
async def local_model(local_model_session: LlamaCppProvider) -> AsyncIterator[LlamaCppProvider]:
    """The shared local provider; the test must leave it idle (nothing queued, nothing generating)."""
    yield local_model_session
    # A stopped job frees the worker at its next token: give it a moment, then insist.
    for _ in range(500):
        state = local_model_session.live_state()
        if state.queue_depth == 0 and state.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"the test left the local model busy: {local_model_session.live_state()}")
