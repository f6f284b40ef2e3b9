"""Shared fixtures. Each fixture below is self-contained; add yours in its own section."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load

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


# -- tiktoken, offline ------------------------------------------------------------------------------------
#
# tiktoken downloads its vocabularies on first use; tests have no network. rust/core/data holds OpenAI's
# public vocab files, gzipped: the very files the extension embeds, so parity with tiktoken also checks what
# is embedded. They are unpacked into a cache directory laid out as tiktoken's own cache: one file per blob
# URL, named by the SHA-1 of the URL that tiktoken_ext/openai_public.py loads. tiktoken still checks each
# file against its expected SHA-256, so a corrupted or outdated file fails loudly instead of silently
# changing the reference counts.

TIKTOKEN_DATA = Path(__file__).resolve().parents[1] / "rust" / "core" / "data"
TIKTOKEN_BLOBS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@pytest.fixture(scope="session")
def tiktoken_encodings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tiktoken.Encoding]]:
    """tiktoken's `Encoding` for each of tiergate's encodings, by name, loaded without network access."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, url in TIKTOKEN_BLOBS.items():
        blob = gzip.decompress((TIKTOKEN_DATA / f"{name}.tiktoken.gz").read_bytes())
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(blob)

    def no_download(blobpath: str) -> bytes:
        raise RuntimeError(f"tiktoken tried to download {blobpath}: {TIKTOKEN_DATA} lacks it")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        # A cache miss (e.g. a tiktoken release that moves its URLs) must fail, not hang on the network.
        patch.setattr(tiktoken.load, "read_file", no_download)
        yield {name: tiktoken.get_encoding(name) for name in TIKTOKEN_BLOBS}
