"""The HTTP facade's relay sink: a stream's text deltas become OpenAI `chat.completion.chunk` events natively.

The facade builds the event's template once per stream (everything but the text: `text_template`); the
listener attaches the response's writer once its head is sent. Until then, nothing is relayed (every event
goes the parser's way), so nothing can overtake the head or the first chunk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from tiergate.relay import RELAY_CLOSED, RELAY_FULL, RELAY_PARSER, SseRelay

__all__ = ["SseRelaySink", "text_template"]

_MARK = "\x00tiergate-relayed-text\x00"


def text_template(event: bytes) -> tuple[bytes, bytes]:
    """An SSE event whose text is `MARK`, cut around it: (prefix, suffix)."""
    prefix, _, suffix = event.rpartition(orjson.dumps(_MARK))
    if not prefix:
        raise ValueError("the event template has no text mark")
    return prefix, suffix


class SseRelaySink:
    """Relayed text deltas as SSE events on an HTTP response, written in order with everything else."""

    MARK = _MARK

    __slots__ = ("_gone", "_pending", "_prefix", "_suffix", "_write")

    def __init__(self, prefix: bytes, suffix: bytes) -> None:
        self._prefix = prefix
        self._suffix = suffix
        self._write: Callable[[bytes], Awaitable[None]] | None = None
        self._pending = b""
        self._gone = False

    def attach(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """The response's writer, once its head has been sent."""
        self._write = write

    def relay(self, events: SseRelay) -> int:
        if self._gone:
            return RELAY_CLOSED
        if self._pending:
            return RELAY_FULL
        if self._write is None:
            return RELAY_PARSER
        data, status = events.relay_sse(self._prefix, self._suffix)
        if data:
            self._pending = data
            return RELAY_FULL
        return status

    async def room(self) -> None:
        """Writes what `relay` made (the response's writer waits while the client's socket is full).

        A client that went away ends the relaying; the listener finds out on its own next write, as it would
        without the relay (the error is the client's, not the provider's, so it is not raised here).
        """
        data, self._pending = self._pending, b""
        if data and self._write is not None:
            try:
                await self._write(data)
            except ConnectionError:  # aiohttp's ClientConnectionResetError is one
                self._gone = True
