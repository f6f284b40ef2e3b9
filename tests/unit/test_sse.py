"""sse.py: the event-stream decoder, line by line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.providers.sse import SSEDecoder, SSEEvent


def decode(text: str) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = []
    for line in text.split("\n"):
        event = decoder.feed_line(line)
        if event is not None:
            events.append(event)
    return events


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('data: {"a": 1}\n\n', [SSEEvent("message", '{"a": 1}')]),
        ('data:{"a": 1}\n\n', [SSEEvent("message", '{"a": 1}')]),  # the space after the colon is optional
        ("data:  two spaces\n\n", [SSEEvent("message", " two spaces")]),  # only one is stripped
        ("event: ping\ndata: {}\n\n", [SSEEvent("ping", "{}")]),
        ("data: a\ndata: b\n\n", [SSEEvent("message", "a\nb")]),
        (": keep-alive comment\n\ndata: x\n\n", [SSEEvent("message", "x")]),
        ("id: 7\nretry: 100\nfoo: bar\ndata: x\n\n", [SSEEvent("message", "x")]),
        ("event: lonely\n\n", []),  # no data: nothing dispatched
        ("event: a\n\ndata: x\n\n", [SSEEvent("message", "x")]),  # the event name does not leak on
        ("data: unfinished", []),  # no blank line: not dispatched
        ("data\n\n", [SSEEvent("message", "")]),  # a field name alone has an empty value
        (
            "event: message_start\ndata: 1\n\nevent: message_stop\ndata: 2\n\n",
            [SSEEvent("message_start", "1"), SSEEvent("message_stop", "2")],
        ),
    ],
)
def test_decoder(text: str, expected: list[SSEEvent]) -> None:
    assert decode(text) == expected


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=30), max_size=8))
def test_every_data_payload_round_trips(payloads: list[str]) -> None:
    text = "".join(f"data: {p}\n\n" for p in payloads)
    assert [e.data for e in decode(text)] == payloads
