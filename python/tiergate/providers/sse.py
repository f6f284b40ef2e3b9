"""Server-sent events: bytes or lines in, events out (the WHATWG event-stream format, the subset providers
use).

The decoder is native (`tiergate._native.SseRelay`, `rust/core/src/relay/sse.rs`): the same object decodes
a provider's stream and relays its plain text deltas (`relay.py`). `SSEDecoder` is its list-of-events face:
pure and network-free. Lines end in LF, CRLF or CR; a CR at the end of one piece may be the first half of a
CRLF, so it waits for the next piece. Invalid UTF-8 is replaced, as the format requires. Comment lines
(`: ping`) and fields other than `event` and `data` (`id`, `retry`, unknown ones) are ignored; an event
without any `data` line is not dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate._native import LineTooLong, SseRelay

__all__ = ["MAX_LINE_BYTES", "LineTooLong", "SSEDecoder", "SSEEvent"]

# A line longer than this (no terminator yet) is not an event stream a provider would send (LineTooLong).
MAX_LINE_BYTES = 8 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class SSEEvent:
    event: str  # the `event:` field; "message" when absent
    data: str  # the `data:` lines joined with "\n"


class SSEDecoder:
    """Accumulates the fields of one event until its terminating blank line."""

    __slots__ = ("_native",)

    def __init__(self) -> None:
        self._native = SseRelay()

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Takes the next piece of the body; returns the events its complete lines finish (often none)."""
        self._native.feed(data)
        return self._take()

    def feed_line(self, line: str) -> SSEEvent | None:
        """Takes one line without its terminator; returns the event a blank line completes, if any."""
        self._native.feed_line(line)
        return self._one()

    def flush(self) -> SSEEvent | None:
        """Completes the pending event (a blank line, or the end of the stream)."""
        self._native.flush()
        return self._one()

    def _take(self) -> list[SSEEvent]:
        events = []
        while (pair := self._native.next_event()) is not None:
            events.append(SSEEvent(*pair))
        return events

    def _one(self) -> SSEEvent | None:
        pair = self._native.next_event()
        return None if pair is None else SSEEvent(*pair)
