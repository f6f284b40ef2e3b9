"""JSON schema -> grammar for local generation (no model needed)."""

from __future__ import annotations

import pytest

from tiergate.local.worker.sampling import json_schema_grammar
from tiergate.providers.base import BadRequest


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"type": "frobnicate"}', "not supported"),
        ('{"$ref": "https://example.com/schema.json"}', "not supported"),
    ],
)
def test_unusable_schemas_are_bad_requests(schema: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        json_schema_grammar(schema)


def test_a_schema_becomes_a_gbnf_grammar_with_its_constraints() -> None:
    grammar = json_schema_grammar('{"type": "object", "properties": {"mood": {"enum": ["up", "down"]}}}')
    assert grammar.startswith("root ::=") or "\nroot ::=" in grammar
    assert '"\\"up\\""' in grammar and '"\\"down\\""' in grammar
