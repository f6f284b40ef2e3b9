"""Integration fixtures. Each section below is self-contained; add yours in its own section."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.fakes.provider_server import FakeProvider

if TYPE_CHECKING:
    from tiergate.providers.llama_cpp import LlamaCppProvider

# -- local model (llama.cpp) ------------------------------------------------------------------------------
# The embedded Gemma 3 270M, in one worker process for the whole run. Its supervisor lives on an event loop,
# so the tests that use it run on the session's loop: mark them `pytest.mark.asyncio(loop_scope="session")`.

LOCAL_QUEUE_SIZE = 2
LOCAL_MAX_OUTPUT_TOKENS = 32
LOCAL_CONTEXT_WINDOW = 2048


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def local_model_session() -> AsyncIterator[LlamaCppProvider]:
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
    provider = await LlamaCppProvider.start("local", config)
    yield provider
    await provider.aclose()


@pytest_asyncio.fixture(loop_scope="session")
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


# -- TLS ----------------------------------------------------------------------------------------------------
# A self-signed certificate for 127.0.0.1 and localhost, made with the openssl command once per run.


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem); skips the test when openssl is not installed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


# -- the fake provider ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    """A fake OpenAI/Anthropic server on a free loopback port, shared by the tests of one module (whose
    sidecar is usually module-scoped too); `fake_provider` is the per-test one."""
    with FakeProvider() as server:
        yield server
