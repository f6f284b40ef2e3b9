"""Checks of an embedding request at the door: inputs present, non-empty, within the limits."""

from __future__ import annotations

from tiergate.config import LimitsConfig
from tiergate.embeddings.types import EmbedRequest
from tiergate.errors import InvalidRequest

MAX_INPUTS = 2048  # as OpenAI's Embeddings API
MAX_DIMENSIONS = 65_536


def check_embed_request(request: EmbedRequest, limits: LimitsConfig) -> None:
    """Raises InvalidRequest naming the input at fault."""
    if not request.inputs:
        raise InvalidRequest("input: must not be empty (a string, or a list of 1 to 2048 strings)")
    if len(request.inputs) > MAX_INPUTS:
        raise InvalidRequest(f"input: {len(request.inputs)} texts; at most {MAX_INPUTS} per request")
    total = 0
    for i, text in enumerate(request.inputs):
        if not isinstance(text, str):
            raise InvalidRequest(f"input[{i}]: must be a string")
        if not text.strip():
            raise InvalidRequest(f"input[{i}]: must not be empty")
        total += len(text.encode("utf-8", errors="surrogatepass"))
    if total > limits.max_request_bytes:
        raise InvalidRequest(
            f"input: {total} bytes of text; at most {limits.max_request_bytes} (limits.max_request_bytes)"
        )
    if not 0 <= request.dimensions <= MAX_DIMENSIONS:
        raise InvalidRequest(f"dimensions: must be between 1 and {MAX_DIMENSIONS}")
