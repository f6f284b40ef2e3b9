"""Shared fixtures. Each fixture below is self-contained; add yours in its own section."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.redis_server import RedisProcess, redis_server_path, run_redis

# -- fake hosted provider ---------------------------------------------------------------------------------


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fresh fake OpenAI/Anthropic server on a free loopback port, stopped after the test."""
    with FakeProvider() as fake:
        yield fake


# -- Redis (fleet-wide budgets and rate limits) -------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """One real redis-server on a free loopback port for the whole run (skips without the binary)."""
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed: `make setup` installs it (apt-get install redis-server)")
    with run_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The shared Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
