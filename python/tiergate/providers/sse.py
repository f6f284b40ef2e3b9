"""Server-sent events: lines in, events out (the WHATWG event-stream format, the subset providers use).

`SSEDecoder.feed_line` is pure and network-free; `hosted_http.post_sse` drives it from a response.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class SSEEvent:
    event: str  # the `event:` field; "message" when absent
    data: str  # the `data:` lines joined with "\n"


class SSEDecoder:
    """Accumulates the fields of one event until its terminating blank line.

    Comment lines (`: ping`) and fields other than `event` and `data` (`id`, `retry`, unknown ones) are
    ignored, as the format requires. An event without any `data` line is not dispatched.
    """

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed_line(self, line: str) -> SSEEvent | None:
        """Takes one line without its terminator; returns the event a blank line completes, if any."""
        if not line:
            return self.flush()
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def flush(self) -> SSEEvent | None:
        """Completes the pending event (a blank line, or the end of the stream)."""
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data))
        self._event = ""
        self._data = []
        return event
