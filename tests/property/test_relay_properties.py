"""The native relay's reading of an OpenAI stream event agrees with the Python parser, which is the authority.

For any event, `SseRelay` either leaves it to the parser, or claims it is plain text T (the parser must
return exactly `Chunk(text=T)` and keep no state), or nothing for the client (the parser must return None and
keep no state). The events are drawn around the real chunk shape: every field present, absent, null, or of
another type, with escapes and non-ASCII text.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.property.hypothesis_profiles import property_settings
from tiergate.providers.anthropic import StreamParser as AnthropicParser
from tiergate.providers.anthropic import answer_tool
from tiergate.providers.http_errors import ErrorMapper
from tiergate.providers.openai import StreamParser
from tiergate.relay import RELAY_EMPTY, RELAY_PARSER, SseRelay
from tiergate.request import Chunk, Message, Request

_ABSENT = object()
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
odd = st.sampled_from([None, False, 0, 1, "", "x", [], {}, [1], {"a": 1}])


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), st.none(), values, odd)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not _ABSENT}
    )


tool_calls = st.one_of(st.just([]), st.lists(st.fixed_dictionaries({"index": st.integers(0, 2)}), max_size=2))


def text_chunk(content: str) -> dict[str, Any]:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": None, "logprobs": None}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "usage": None, "choices": [choice]}


def at(chunk: dict[str, Any], place: tuple[Any, ...]) -> Any:
    """The object at `place` in `chunk`, or None when an earlier change removed or replaced it."""
    target: Any = chunk
    for key in place:
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and isinstance(key, int) and key < len(target):
            target = target[key]
        else:
            return None
    return target


# Where one field of a plain text chunk may be changed (None = removed), and to what.
PLACES = [(), ("choices", 0), ("choices", 0, "delta")]
FIELDS = ["content", "refusal", "tool_calls", "role", "finish_reason", "delta", "usage", "error", "choices"]
values = st.one_of(st.just(None), odd, text, tool_calls, st.sampled_from(["stop", "assistant"]))


@st.composite
def near_event(draw: st.DrawFn) -> dict[str, Any]:
    """A plain text chunk (half the time as is), or one with one field removed, nulled or changed."""
    chunk = text_chunk(draw(text))
    for _ in range(draw(st.integers(0, 2))):
        target: Any = chunk
        for key in draw(st.sampled_from(PLACES)):
            target = (
                target[key]
                if isinstance(target, (dict, list))
                and key in (target if isinstance(target, dict) else range(len(target)))
                else None
            )
        if not isinstance(target, dict):
            continue
        name = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = draw(values)
    return chunk


# Anything of the shape.
delta = obj(content=text, refusal=text, tool_calls=tool_calls, role=st.just("assistant"))
choice = obj(index=st.just(0), delta=delta, finish_reason=st.sampled_from(["stop", "length"]))
any_event = obj(
    id=st.just("chatcmpl-1"),
    choices=st.lists(choice, max_size=2),
    usage=st.fixed_dictionaries({"prompt_tokens": st.integers(0, 9)}),
    error=st.fixed_dictionaries({"message": text}),
)
event = st.one_of(near_event(), any_event)


# Anthropic: a text_delta event, or one with one field of it (or of its delta) removed or changed.
ANTHROPIC_FIELDS = ["type", "index", "delta", "text"]
anthropic_values = st.one_of(
    odd, text, st.sampled_from(["content_block_delta", "text_delta", "input_json_delta", "ping", "error"])
)


@st.composite
def anthropic_event(draw: st.DrawFn) -> dict[str, Any]:
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": draw(text)}}
    for _ in range(draw(st.integers(0, 2))):
        target = at(event, draw(st.sampled_from([(), ("delta",)])))
        if not isinstance(target, dict):
            continue
        name = draw(st.sampled_from(ANTHROPIC_FIELDS))
        if draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = draw(anthropic_values)
    return event


def _state(parser: Any) -> tuple[Any, ...]:
    """What a parser keeps between events (private: the point is that relaying must not change it)."""
    names = [n for n in parser.__slots__ if n not in ("_errors", "_answer")]
    return tuple(repr(getattr(parser, n)) for n in names)


def _check(wire: str, data: str, parser: Any) -> str | None:
    """The relay's claim on `data` holds for `parser`; returns the claimed text (None: the parser's)."""
    relay = SseRelay(wire)
    relay.feed(b"data: " + data.encode() + b"\n\n")
    out, status = relay.relay_sse(b"", b"")
    before = _state(parser)
    if status == RELAY_PARSER:
        assert out == b""
        return None  # the parser reads it: nothing claimed
    assert status == RELAY_EMPTY
    got = parser.feed(data)
    assert _state(parser) == before
    if not out:
        assert got is None
        return ""
    claimed = json.loads(out)
    assert got == Chunk(text=claimed)
    assert relay.take_text() == claimed
    return str(claimed)


@property_settings(400)
@given(event=event, ascii_only=st.booleans())
def test_openai_relay_claims_only_what_the_parser_agrees_with(
    event: dict[str, Any], ascii_only: bool
) -> None:
    _check("openai", json.dumps(event, ensure_ascii=ascii_only), StreamParser(ErrorMapper("openai")))


@property_settings(400)
@given(event=anthropic_event(), ascii_only=st.booleans())
def test_anthropic_relay_claims_only_what_the_parser_agrees_with(
    event: dict[str, Any], ascii_only: bool
) -> None:
    parser = AnthropicParser(ErrorMapper("anthropic"))
    assert parser.relays == "anthropic"
    _check("anthropic", json.dumps(event, ensure_ascii=ascii_only), parser)


def test_a_forced_answer_tool_is_never_relayed() -> None:
    """With a JSON answer forced through a tool, the text around it is not the answer: no relaying."""
    request = Request(task="default", messages=[Message("user", "x")], json_object=True)
    answer, _ = answer_tool(request)
    assert answer is not None
    assert AnthropicParser(ErrorMapper("anthropic"), answer).relays is None
