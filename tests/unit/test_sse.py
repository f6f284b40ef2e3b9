"""sse.py: the event-stream decoder, line by line and from bytes as they arrive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.providers.sse import MAX_LINE_BYTES, LineTooLong, SSEDecoder, SSEEvent


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


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
        ),
        max_size=8,
    )
)
def test_every_data_payload_round_trips(payloads: list[str]) -> None:
    text = "".join(f"data: {p}\n\n" for p in payloads)
    assert [e.data for e in decode(text)] == payloads


# -- bytes as they arrive (SSEDecoder.feed) ---------------------------------------------------------------


def feed_all(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b'data: {"a": 1}\n\n'], [SSEEvent("message", '{"a": 1}')]),
        ([b"data: x\r\n\r\n"], [SSEEvent("message", "x")]),  # CRLF
        # CR alone; a CR at the end of a piece may be half a CRLF, so it waits for the next byte
        ([b"data: x\r\r"], []),
        ([b"data: x\r\r", b"d"], [SSEEvent("message", "x")]),
        ([b"data: x\r", b"\n\r\n"], [SSEEvent("message", "x")]),  # a CRLF split between two pieces
        ([b"data: x\r", b"\r", b"\n"], [SSEEvent("message", "x")]),
        ([b"da", b"ta: x", b"\n", b"\n"], [SSEEvent("message", "x")]),  # a line in pieces
        ([b"data: 1\n\ndata: 2\n\nda"], [SSEEvent("message", "1"), SSEEvent("message", "2")]),
        ([b"data: caf\xc3", b"\xa9\n\n"], [SSEEvent("message", "café")]),  # UTF-8 split mid-character
        ([b"data: \xff\n\n"], [SSEEvent("message", "\ufffd")]),  # invalid UTF-8 is replaced
        ([b"event: e\ndata: x\n\n"], [SSEEvent("e", "x")]),
        ([b"data: unfinished"], []),
    ],
)
def test_feed_bytes(pieces: list[bytes], expected: list[SSEEvent]) -> None:
    assert feed_all(pieces) == expected


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30
        ),
        max_size=8,
    ),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_feed_bytes_any_split_and_line_ending(payloads: list[str], eol: bytes, cuts: list[int]) -> None:
    body = b"".join(b"data: " + p.encode() + eol + eol for p in payloads)
    bounds = sorted({min(c, len(body)) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *bounds], [*bounds, len(body)], strict=True)]
    # A final CR might be the first half of a CRLF: a last LF completes it (as one line end, or a blank line).
    events = feed_all([*pieces, b"\n"])
    assert [e.data for e in events] == payloads


def test_a_line_without_end_is_bounded() -> None:
    decoder = SSEDecoder()
    with pytest.raises(LineTooLong):
        for _ in range(MAX_LINE_BYTES // 65536 + 2):
            decoder.feed(b"x" * 65536)
