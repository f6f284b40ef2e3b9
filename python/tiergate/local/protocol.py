"""The frames the sidecar and an on-device worker process exchange over their socket pair.

A frame is a 4-byte big-endian length, then that many bytes of JSON (one object with an `op`). The sidecar
speaks first (`load`); the worker answers `ready` or `load_failed`, then serves jobs until its socket closes.

    sidecar -> worker                              worker -> sidecar
    load   {kind, path, n_ctx, threads,            ready        {format, n_ctx, system_info,
            tokenizer, sha256}                                   dimensions}
                                                   load_failed  {message}
    job    {id, messages, max_tokens,              start        {id}                 the job left the queue
            temperature, json_schema, seed,        text         {id, text}           one piece of the answer
            stop, top_p}
                                                   done         {id, input_tokens, output_tokens, finish,
                                                                 ttft_ms, tokens_per_s}
                                                   error        {id, kind, message}  kind: ProviderError.kind
    cancel {id}                                    (a queued job is dropped, a running one stops at its
                                                    next token and ends with an error nobody reads)
    count  {id, text}                              counted      {id, tokens}

`kind` is "chat" (the default: a GGUF model, llama.cpp) or "embedding" (an ONNX sentence-embedding model,
onnxruntime; `tokenizer` and `sha256` apply to it only). An embedding worker serves the same frames, but its
`job` is {id, inputs} (a list of texts) and its `done` carries, instead of text frames before it, `vectors`
(base64 of float32 little-endian values, `dimensions` per input, in order) and `input_tokens`.

Both sides import this module; it imports nothing of llama.cpp. No frame ever carries a key, and only `job`
and `text` carry request or answer text, and `done` an embedding's vectors (never logged).
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a frame larger than this is a protocol error, not a request

Frame = dict[str, Any]


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(frame: Frame) -> bytes:
    body = orjson.dumps(frame)
    return HEADER.pack(len(body)) + body


def body_length(header: bytes) -> int:
    """The length a frame header announces. Raises ProtocolError past MAX_FRAME."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes announced (the limit is {MAX_FRAME})")
    return int(length)


def decode(body: bytes) -> Frame:
    try:
        frame = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), str):
        raise ProtocolError("frame is not an object with an op")
    return frame
