"""Server-sent events: bytes or lines in, events out (the WHATWG event-stream format, the subset providers
use).

`SSEDecoder.feed` (bytes as they arrive) and `feed_line` are pure and network-free; `hosted_http.EventStream`
drives `feed` from a response body. Lines end in LF, CRLF or CR; a CR at the end of one piece may be the
first half of a CRLF, so it waits for the next piece. Invalid UTF-8 is replaced, as the format requires.
"""

from __future__ import annotations

from dataclasses import dataclass

# A line longer than this (no terminator yet) is not an event stream a provider would send.
MAX_LINE_BYTES = 8 * 1024 * 1024


class LineTooLong(ValueError):
    """A line of the stream grew past MAX_LINE_BYTES without ending."""


@dataclass(slots=True, frozen=True)
class SSEEvent:
    event: str  # the `event:` field; "message" when absent
    data: str  # the `data:` lines joined with "\n"


class SSEDecoder:
    """Accumulates the fields of one event until its terminating blank line.

    Comment lines (`: ping`) and fields other than `event` and `data` (`id`, `retry`, unknown ones) are
    ignored, as the format requires. An event without any `data` line is not dispatched.
    """

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._pending = b""  # the start of a line whose end has not arrived

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Takes the next piece of the body; returns the events its complete lines finish (often none)."""
        buf = self._pending + data if self._pending else data
        end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        cut = buf.rfind(b"\n", 0, end)
        if b"\r" in buf:
            cut = max(cut, buf.rfind(b"\r", 0, end))
        if cut < 0:
            if len(buf) > MAX_LINE_BYTES:
                raise LineTooLong(f"an event-stream line over {MAX_LINE_BYTES} bytes")
            self._pending = buf
            return []
        complete, self._pending = buf[: cut + 1], buf[cut + 1 :]
        if b"\r" in complete:
            complete = complete.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = complete.split(b"\n")
        lines.pop()  # the empty piece after the last terminator
        events = []
        for line in lines:
            event = self.feed_line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

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
