"""The fake provider's HTTP/1.1 framing: response heads, chunked bodies. Bytes only, no I/O."""

from __future__ import annotations

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Error"}


def json_response(
    status: int, payload: bytes, keep_alive: bool, extra: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
    ]
    if not keep_alive:
        lines.append("connection: close")
    if extra:
        lines.extend(f"{k}: {v}" for k, v in extra.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def stream_headers(keep_alive: bool) -> bytes:
    close = b"connection: close\r\n" if not keep_alive else b""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n" + close + b"\r\n"
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
