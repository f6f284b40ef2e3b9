"""Shared fixtures. Each fixture below is self-contained; add yours in its own section."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.provider_server import FakeProvider

# -- fake hosted provider ---------------------------------------------------------------------------------


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fresh fake OpenAI/Anthropic server on a free loopback port, stopped after the test."""
    with FakeProvider() as fake:
        yield fake
