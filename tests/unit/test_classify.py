"""classify.py: reading the model's one-word answer."""

from __future__ import annotations

import pytest

from tiergate.classify import parse_level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ('"trivial"', "trivial"),
        ("moderate", "moderate"),
        (' "COMPLEX" ', "complex"),
        ('"trivial', "trivial"),  # cut off by the token limit, still unambiguous
        ("It is trivial", ""),  # anything but the word itself is no answer
        ('"trivial, moderate"', ""),
        ("", ""),
        ("easy", ""),
    ],
)
def test_parse_level(text: str, level: str) -> None:
    assert parse_level(text) == level
