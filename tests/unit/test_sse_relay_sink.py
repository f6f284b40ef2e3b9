"""The HTTP facade's relay sink (`server/sse_relay.py`): text deltas as templated SSE events, in order, and a
client that went away ends the relaying without blaming the provider."""

from __future__ import annotations

import json

import orjson

from tiergate.relay import RELAY_CLOSED, RELAY_EMPTY, RELAY_FULL, RELAY_PARSER, SseRelay
from tiergate.server.sse_relay import SseRelaySink, text_template


def _events(*texts: str, then: bytes = b"") -> SseRelay:
    relay = SseRelay()
    for text in texts:
        relay.feed(b'data: {"choices":[{"delta":{"content":%s}}]}\n\n' % json.dumps(text).encode())
    relay.feed(then)
    return relay


def test_the_template_is_the_event_around_its_text() -> None:
    event = {"model": f"m{SseRelaySink.MARK}", "choices": [{"delta": {"content": SseRelaySink.MARK}}]}
    prefix, suffix = text_template(b"data: " + orjson.dumps(event) + b"\n\n")  # the mark in the model: no cut
    assert prefix.startswith(b"data: {") and suffix == b"}}]}\n\n"
    assert json.loads((prefix + b'"x"' + suffix)[6:])["choices"][0]["delta"]["content"] == "x"


async def test_text_is_written_once_attached_and_stops_at_an_event_for_the_parser() -> None:
    sink = SseRelaySink(b"<", b">")
    events = _events("a", 'b"', then=b"data: [DONE]\n\n")
    assert sink.relay(events) == RELAY_PARSER  # not attached yet: everything goes the parser's way
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)

    sink.attach(write)
    assert sink.relay(events) == RELAY_FULL
    await sink.room()
    assert written == [b'<"a"><"b\\"">']
    assert sink.relay(events) == RELAY_PARSER
    assert events.take_text() == 'ab"'
    assert sink.relay(SseRelay()) == RELAY_EMPTY


async def test_a_client_gone_ends_the_relaying_without_an_error() -> None:
    sink = SseRelaySink(b"", b"")

    async def write(data: bytes) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    sink.attach(write)
    events = _events("a", "b")
    assert sink.relay(events) == RELAY_FULL
    await sink.room()  # does not raise: the listener finds out on its own next write
    assert sink.relay(events) == RELAY_CLOSED
