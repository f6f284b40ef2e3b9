"""Fixtures of the property tests."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load

# -- tiktoken, offline ------------------------------------------------------------------------------------
#
# The same arrangement as tests/unit/conftest.py: the vocabularies the extension embeds (rust/core/data) are
# unpacked into a directory laid out as tiktoken's cache (one file per blob URL, named by the URL's SHA-1).
# tiktoken checks each against its expected SHA-256, and any attempt to download fails the test.

TIKTOKEN_DATA = Path(__file__).resolve().parents[2] / "rust" / "core" / "data"
TIKTOKEN_BLOBS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@pytest.fixture(scope="session")
def offline_tiktoken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tiktoken.Encoding]]:
    """tiktoken's `Encoding` for each of tiergate's encodings, by name, loaded without network access."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, url in TIKTOKEN_BLOBS.items():
        blob = gzip.decompress((TIKTOKEN_DATA / f"{name}.tiktoken.gz").read_bytes())
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(blob)

    def no_download(blobpath: str) -> bytes:
        raise RuntimeError(f"tiktoken tried to download {blobpath}: {TIKTOKEN_DATA} lacks it")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        patch.setattr(tiktoken.load, "read_file", no_download)
        yield {name: tiktoken.get_encoding(name) for name in TIKTOKEN_BLOBS}
