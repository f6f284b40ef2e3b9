"""Request validation on arbitrary requests: accepted, or a TiergateError; nothing else escapes.

`check_request` (the door) sees every field at its edges: no messages, unknown roles, empty and huge
contents, lone surrogates, out-of-range numbers (NaN and the infinities too) and json_schema strings that
are not JSON, not objects, or not valid schemas. The same requests then go through `Sidecar.prepare`
(check, analyse, plan; no provider is called), whose only failures are TiergateErrors: InvalidRequest,
UnknownTask, SensitiveDataBlocked... A schema the door accepted must not fail later either: answer
validation (`AnswerValidator.check`) returns None or a reason for any answer.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.property.hypothesis_profiles import property_settings
from tiergate.config import LimitsConfig, parse, resolve
from tiergate.errors import InvalidRequest, TiergateError
from tiergate.request import Message, Request, Sensitivity
from tiergate.request_checks import check_request
from tiergate.sidecar import Sidecar
from tiergate.validation import AnswerValidator

LIMITS = LimitsConfig(max_request_bytes=4096, max_output_tokens=1000)

# -- json_schema -------------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # orjson's range
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
KEYWORDS = [
    "type", "properties", "items", "required", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
    "format", "anyOf", "allOf", "oneOf", "not", "additionalProperties", "minLength", "maxLength",
    "multipleOf", "$defs", "if", "then", "else", "dependentRequired", "prefixItems", "contains",
    "uniqueItems", "propertyNames", "minItems", "maxItems", "title", "default", "$id", "$anchor", "$comment",
]  # fmt: skip
TYPES = st.sampled_from(["object", "array", "string", "number", "integer", "boolean", "null", "strng"])
# Patterns are matched in linear time (the rule engine's regex crate), pathological ones included.
PATTERNS = st.sampled_from(
    ["^a", "[0-9]+", "(", "x|y", r"\d{3}", "", "^(a+)+$", "(a|aa)*b", r"(\w)\1", "(?=a)"]
)
SCHEMA = st.recursive(
    st.one_of(st.booleans(), st.fixed_dictionaries({"type": TYPES})),
    lambda children: (
        st.dictionaries(
            st.sampled_from(KEYWORDS),
            st.one_of(
                children,
                JSON,
                TYPES,
                st.lists(children, max_size=3),
                st.dictionaries(st.text(max_size=4), children),
            ),
            max_size=4,
        )
        | st.fixed_dictionaries({"type": st.just("string"), "pattern": PATTERNS})
    ),
    max_leaves=10,
)
JSON_SCHEMAS = st.one_of(
    st.just(""),
    SCHEMA.map(lambda s: orjson.dumps(s).decode()),
    JSON.map(lambda s: orjson.dumps(s).decode()),
    st.text(max_size=20),
    st.sampled_from(["{", "[]", "null", '"x"', "1e999", "{}", '{"type": "object", "required": ["a"]}']),
    st.sampled_from(['{"$schema": 5}', '{"$schema": "x"}', '{"$ref": "#/nope"}', '{"$ref": "http://h/s"}']),
)

# -- requests ----------------------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
CONTENTS = st.one_of(
    ANY_TEXT,
    st.sampled_from(
        ["", " ", "\n\t", "hello", "my card is 4111 1111 1111 1111", "mail ann@example.com", "hi"]
    ),
    st.integers(0, 100).map(lambda n: "x" * (4096 - n)),  # up to max_request_bytes
)


def mostly(usual: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` seven times in eight, else `anything`: most requests get past the door to the planner."""
    return st.integers(0, 7).flatmap(lambda pick: usual if pick else anything)


MESSAGES = mostly(
    st.lists(
        st.builds(
            Message,
            role=mostly(st.sampled_from(["system", "user", "assistant"]), st.text(max_size=8)),
            content=CONTENTS,
        ),
        min_size=1,
        max_size=3,
    ),
    st.just([]),
)
NUMBERS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 2.0, 2.0000001, -1e-300, 1e308]))
REQUESTS = st.builds(
    Request,
    task=st.one_of(st.sampled_from(["", "default", "cheap", "restricted_only", "nope"]), st.text(max_size=8)),
    messages=MESSAGES,
    sensitivity=st.sampled_from(Sensitivity),
    max_output_tokens=mostly(st.integers(0, 1000), st.integers()),
    temperature=mostly(st.none() | st.floats(0, 2), NUMBERS),
    tenant=st.text(max_size=8),
    metadata=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    json_schema=mostly(st.just(""), JSON_SCHEMAS),
    max_cost_usd=mostly(st.just(0.0) | st.floats(0, 1), NUMBERS),
    stream=st.booleans(),
)


@property_settings(500)
@given(request=REQUESTS)
def test_check_request_accepts_or_raises_invalid_request(request: Request) -> None:
    try:
        check_request(request, LIMITS)
    except InvalidRequest:
        return


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    """A Sidecar with no providers: `prepare` plans without calling any."""
    config = resolve(
        parse(
            {
                "models": {
                    "local": {"provider": "llama_cpp", "path": "embedded", "context_window": 2048},
                    "hosted": {
                        "provider": "openai",
                        "model": "m",
                        "api_key": "env:KEY",
                        "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                    },
                },
                "rules": [{"id": "greeting", "keywords": ["hello"], "complexity": "trivial"}],
                "routes": {
                    "default": {"chain": ["hosted", "local"], "objective": "latency"},
                    "cheap": {"chain": ["local", "hosted"], "objective": "cost", "validate": "json_schema"},
                    "restricted_only": {"chain": ["hosted"], "trivial_max_tokens": 5},
                },
                "limits": {"max_request_bytes": 4096, "max_output_tokens": 1000},
            }
        ),
        {"KEY": "k"},
    )
    yield Sidecar(config, {})


@property_settings(300)
@given(request=REQUESTS)
def test_prepare_plans_or_raises_a_tiergate_error(sidecar: Sidecar, request: Request) -> None:
    try:
        run, analysis = sidecar.prepare(request, None)
    except TiergateError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("planned" if run.plan.candidates else "planned, every model skipped")
    # Every model of the route is accounted for: a candidate, or skipped with a reason. (A plan with no
    # candidates is valid: dispatching it fails with the skip reasons.)
    plan = run.plan
    assert sorted([c.name for c in plan.candidates] + [s.model for s in plan.skipped]) == sorted(
        plan.route.chain
    )
    assert all(s.reason for s in plan.skipped)
    assert analysis.input_tokens >= 0


@property_settings(300)
@given(schema=JSON_SCHEMAS, answer=st.one_of(JSON.map(lambda v: orjson.dumps(v).decode()), ANY_TEXT))
def test_answers_to_an_accepted_schema_are_judged_without_exceptions(schema: str, answer: str) -> None:
    try:
        validator = AnswerValidator(schema)
    except InvalidRequest:
        return
    verdict = validator.check(answer)
    assert verdict is None or isinstance(verdict, str)


# -- schemas that once escaped as other exceptions ----------------------------------------------------------


def deep(levels: int) -> str:
    return '{"not": ' * levels + "{}" + "}" * levels


@pytest.mark.parametrize(
    "schema",
    ['{"$schema": 5}', '{"$schema": []}', '{"$schema": "https://example.com/unknown"}', deep(400)],
    ids=["int $schema", "list $schema", "unknown $schema", "400 levels"],
)
def test_any_json_schema_is_accepted_or_an_invalid_request(schema: str) -> None:
    request = Request("default", [Message("user", "hi")], json_schema=schema)
    try:
        check_request(request, LIMITS)
    except InvalidRequest:
        return


@pytest.mark.parametrize("schema", ['{"$ref": "#/nope"}', '{"$ref": "https://example.com/schema.json"}'])
def test_a_ref_to_nothing_is_refused_at_the_door(schema: str) -> None:
    with pytest.raises(InvalidRequest, match=r"\$ref"):  # before a model is paid for, and nothing is fetched
        AnswerValidator(schema)


def test_a_ref_the_door_cannot_follow_is_a_rejection_not_a_crash() -> None:
    # A subschema with its own $id moves the base of its refs: checked when an answer is.
    validator = AnswerValidator('{"properties": {"a": {"$id": "http://h/a", "$ref": "#/nope"}}}')
    assert validator.check('{"a": 1}') == "the schema has a $ref that resolves to nothing"


def test_a_pattern_in_a_schema_is_matched_in_linear_time() -> None:
    # In a child process, killed after 3 s: Python's re holds the GIL, so a thread could not be abandoned.
    code = (
        "from tiergate.validation import AnswerValidator\n"
        'v = AnswerValidator(\'{"type": "string", "pattern": "^(a+)+$"}\')\n'
        "assert v.check('\"' + 'a' * 32 + '!\"') is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=3)


@pytest.mark.parametrize("cost", [math.nan, math.inf, -math.inf])
def test_a_cost_limit_that_is_no_number_is_an_invalid_request(cost: float) -> None:
    # NaN once passed the door (NaN < 0 is false) and the planner read it as no limit (NaN > 0 is false too).
    request = Request("default", [Message("user", "hi")], max_cost_usd=cost)
    try:
        check_request(request, LIMITS)
    except InvalidRequest:
        return
    raise AssertionError(f"max_cost_usd {cost} was accepted")
