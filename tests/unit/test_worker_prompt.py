"""Prompt formats for local models, and the streaming answer decoder (no model needed)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.local.worker.prompt import (
    CHAT_TEMPLATE_KEY,
    AnswerText,
    ChatTemplateFormat,
    InstructionFormat,
    Prompt,
    format_for,
)
from tiergate.providers.base import BadRequest
from tiergate.request import Message

# -- InstructionFormat --------------------------------------------------------------------------------------

INSTRUCTION_CASES = [
    pytest.param(
        [("user", "What is the capital of France?")],
        "### Instruction:\nWhat is the capital of France?\n\n### Response:\n",
        False,
        id="one question",
    ),
    pytest.param(
        [("system", "Answer with a single word."), ("user", "Capital of France?")],
        "### System:\nAnswer with a single word.\n\n### Instruction:\nCapital of France?\n\n### Response:\n",
        False,
        id="system section first",
    ),
    pytest.param(
        [("user", "My name is Sam."), ("assistant", "Hello Sam."), ("user", "What is my name?")],
        "### Instruction:\nMy name is Sam.\n\n### Response:\nHello Sam.\n\n"
        "### Instruction:\nWhat is my name?\n\n### Response:\n",
        False,
        id="multi-turn transcript",
    ),
    pytest.param(
        [("user", "Name a colour."), ("assistant", "The colour is  ")],
        "### Instruction:\nName a colour.\n\n### Response:\nThe colour is",
        True,
        id="trailing answer is continued",
    ),
    pytest.param(
        [("developer", "Be brief."), ("tool", "42"), ("user", "  spaced  ")],
        "### System:\nBe brief.\n\n### Instruction:\n42\n\n### Instruction:\nspaced\n\n### Response:\n",
        False,
        id="developer is system; other roles are instructions; content trimmed",
    ),
    pytest.param([], "### Response:\n", False, id="no messages"),
]


@pytest.mark.parametrize(("turns", "expected", "continues"), INSTRUCTION_CASES)
def test_instruction_format_renders(turns: list[tuple[str, str]], expected: str, continues: bool) -> None:
    prompt = InstructionFormat().render([Message(role, content) for role, content in turns])
    assert prompt == Prompt(expected, add_bos=True, special=False, stops=("\n###",), continues=continues)


def test_instruction_format_defaults_to_greedy_with_a_mild_repeat_penalty() -> None:
    fmt = InstructionFormat()
    assert (fmt.name, fmt.default_temperature, fmt.repeat_penalty) == ("instruction", 0.0, 1.15)


# -- ChatTemplateFormat -------------------------------------------------------------------------------------

# The shape of Gemma's template: BOS written by the template, strict alternation enforced.
GEMMA_LIKE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_chat_template_renders_with_the_models_tokens() -> None:
    fmt = ChatTemplateFormat(GEMMA_LIKE, bos_token="<bos>", eos_token="<eos>")
    prompt = fmt.render([Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye")])
    assert prompt == Prompt(
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n",
        add_bos=False,  # the template wrote it
        special=True,
        stops=(),
    )


def test_chat_template_rejection_is_a_bad_request() -> None:
    fmt = ChatTemplateFormat(GEMMA_LIKE, bos_token="<bos>", eos_token="<eos>")
    with pytest.raises(BadRequest, match="roles must alternate"):
        fmt.render([Message("user", "a"), Message("user", "b")])


def test_unparseable_chat_template_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="does not parse"):
        ChatTemplateFormat("{% for %}", bos_token="<bos>", eos_token="<eos>")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({CHAT_TEMPLATE_KEY: GEMMA_LIKE, "general.name": "x"}, "chat_template"),
        ({"general.name": "Gemma 3 270m"}, "instruction"),
        ({CHAT_TEMPLATE_KEY: ""}, "instruction"),
    ],
)
def test_format_for_prefers_the_models_template(metadata: dict[str, str], expected: str) -> None:
    assert format_for(metadata, bos_token="<bos>", eos_token="<eos>").name == expected


# -- AnswerText ---------------------------------------------------------------------------------------------

STOPS = ("\n###",)
EMOJI = "🎉".encode()
ANSWER_CASES = [
    pytest.param([b"Par", b"is"], STOPS, ["Par", "is"], "", False, id="plain tokens pass through"),
    pytest.param(
        [b"\n", b" Paris", b"\n", b"\n", b"###", b" Instruction"],
        STOPS,
        ["", "Paris", "", "", "", ""],
        "",
        True,
        id="leading whitespace dropped; stop split over tokens ends the answer, separator trimmed",
    ),
    pytest.param(
        [b"a", b"\n#", b" heading"],
        STOPS,
        ["a", "", "\n# heading"],
        "",
        False,
        id="a held stop prefix that is no stop is released",
    ),
    pytest.param(
        [b"\xe6\x97", b"\xa5\xe6", b"\x9c\xac"],
        STOPS,
        ["", "日", "本"],
        "",
        False,
        id="multi-byte characters split across tokens",
    ),
    pytest.param(
        [EMOJI[:1], EMOJI[1:2], EMOJI[2:3], EMOJI[3:]],
        STOPS,
        ["", "", "", "🎉"],
        "",
        False,
        id="4-byte emoji over four tokens",
    ),
    pytest.param(
        [b"ok", b"\xe6\x97"], STOPS, ["ok", ""], "\ufffd", False, id="cut mid-character at the limit"
    ),
    pytest.param([b"bad \xff byte"], STOPS, ["bad \ufffd byte"], "", False, id="invalid bytes are replaced"),
    pytest.param(
        [b"done", b"  \n"], STOPS, ["done", ""], "", False, id="trailing whitespace trimmed at the end"
    ),
    pytest.param([b"x", b"END", b"y"], ("END", ""), ["x", "", ""], "", True, id="empty stop strings ignored"),
    pytest.param([b"a", b"\n\n", b"b"], (), ["a", "", "\n\nb"], "", False, id="inner whitespace kept"),
]


@pytest.mark.parametrize(("pieces", "stops", "emitted", "tail", "stopped"), ANSWER_CASES)
def test_answer_text(
    pieces: list[bytes], stops: tuple[str, ...], emitted: list[str], tail: str, stopped: bool
) -> None:
    text = AnswerText(stops)
    assert [text.feed(p) for p in pieces] == emitted
    assert text.finish() == tail
    assert text.stopped is stopped


def test_answer_text_keeps_the_leading_space_of_a_continued_answer() -> None:
    text = AnswerText(STOPS, strip_leading=False)
    assert [text.feed(b" blue"), text.feed(b".")] == [" blue", "."]


def _expected_answer(text: str, stops: tuple[str, ...]) -> str:
    """The whole answer, computed in one go: what the streamed pieces must add up to."""
    text = text.lstrip()
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[: min(cuts)].rstrip() if cuts else text.rstrip()


@given(
    # fragments, so that stop sequences and their beginnings turn up often and in every position
    text=st.lists(
        st.sampled_from(["a", "b ", " ", "\n", "#", "##", "\n#", "\n###", "日", "🎉", "é"]), max_size=16
    ).map("".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_streamed_pieces_add_up_to_the_whole_answer(text: str, cuts: list[int]) -> None:
    data = text.encode()
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    answer = AnswerText(STOPS)
    streamed = "".join(answer.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    streamed += answer.finish()
    assert streamed == _expected_answer(text, STOPS)
