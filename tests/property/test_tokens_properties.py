"""count_tokens equals tiktoken's count on arbitrary text, in both encodings.

tests/unit/test_tokens.py pins a multilingual corpus; here hypothesis generates the text: any code point
(lone surrogates included, which tiktoken repairs through UTF-16), whitespace-heavy text for the emulated
`\\s+(?!\\S)` look-ahead, and long runs from small alphabets, which are single pieces over 64 bytes and so
go through the heap merge instead of the stack one (rust/core/src/tokens.rs).
"""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

from tests.property.hypothesis_profiles import property_settings
from tiergate._native import ENCODINGS, count_tokens

# Every code point, surrogates and unassigned ones included.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=400)

# Every character Python or the regex crate call whitespace, with the characters whitespace runs meet.
SPACES = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
SPACED_TEXT = st.text(
    st.sampled_from([*SPACES, "a", "Z", "1", "!", "'", "é", "中", "\u0301", "😀"]), max_size=200
)

# Single pieces longer than the stack merge's 64 bytes: runs of letters, digits, CJK, punctuation, emoji.
LONG_PIECE = st.one_of(
    st.text(st.sampled_from("ab"), min_size=60, max_size=600),
    st.text(st.sampled_from("aeiouxyzq"), min_size=60, max_size=600),
    st.text(
        st.sampled_from("的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要"),
        min_size=20,
        max_size=300,
    ),
    st.text(st.sampled_from("!?.,;:-=+*/\\|#@$%^&~`"), min_size=60, max_size=400),
    st.text(st.sampled_from("😀👍🏽🦀\u200d\ufe0f"), min_size=16, max_size=200),
    st.text(st.sampled_from("éàüßøñçЖжقك"), min_size=30, max_size=300),
)

TEXTS = st.one_of(
    ANY_TEXT, SPACED_TEXT, LONG_PIECE, st.lists(st.one_of(ANY_TEXT, LONG_PIECE), max_size=4).map("".join)
)


def tiktoken_count(encoding: tiktoken.Encoding, text: str) -> int:
    # Special tokens' text (`<|endoftext|>`) is ordinary text to count_tokens, as to encode_ordinary.
    return len(encoding.encode(text, disallowed_special=()))


@pytest.mark.parametrize("encoding", ENCODINGS)
@property_settings(400)
@given(text=TEXTS)
def test_count_equals_tiktoken(
    tiktoken_encodings: dict[str, tiktoken.Encoding], encoding: str, text: str
) -> None:
    assert count_tokens(text, encoding) == tiktoken_count(tiktoken_encodings[encoding], text)
