"""Answer validation for cascade routes (`validate: json_schema`): does an answer meet the request's schema?

A rejected answer escalates to the next model. The reason recorded in the Decision names the failing keyword
and where it failed (a JSON path), never the answer's text.

A schema comes with the request, so it is checked at the door, before any model is paid for: a known
`$schema` dialect, not nested past what validation can recurse through, `$ref`s that point inside the schema
(nothing is fetched), and regular expressions (`pattern`, `patternProperties`) that the linear-time engine of
the rule set compiles. Those expressions are then matched by that engine, not by Python's backtracking `re`,
which a pattern such as `^(a+)+$` would keep busy for minutes with the whole event loop stalled behind it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson
from jsonschema import exceptions as schema_errors
from jsonschema import validators
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from tiergate._native import Rule, RuleError, RuleSet
from tiergate.errors import InvalidRequest

# Schemas up to this size are kept compiled (`answer_validator`): an application sends the same schema with
# every request, and it is checked at the door and used again by the cascade.
_CACHED_SCHEMA_CHARS = 64 * 1024
_CACHED_SCHEMAS = 128


class AnswerValidator:
    """A compiled schema; `check(text)` returns None when the answer is acceptable, else why not.
    Get one with `answer_validator`, which compiles each schema once."""

    __slots__ = ("_validator",)

    def __init__(self, json_schema: str) -> None:
        # No schema: the answer must still be JSON, since the route asked for JSON validation.
        schema: Any = {}
        if json_schema:
            try:
                schema = orjson.loads(json_schema)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"json_schema is not valid JSON: {exc}") from None
            if not isinstance(schema, dict):
                raise InvalidRequest("json_schema must be a JSON object")
        cls = _dialect(schema)
        try:
            cls.check_schema(schema)
        except schema_errors.SchemaError as exc:
            raise InvalidRequest(f"json_schema is not a valid JSON Schema: {exc.message[:200]}") from None
        except RecursionError:
            raise InvalidRequest("json_schema is nested too deeply") from None
        _check_references(schema, cls)
        for pattern in _patterns(schema):
            try:
                _regex(pattern)
            except RuleError as exc:
                detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip(" ^"))
                raise InvalidRequest(
                    f"json_schema: pattern {pattern[:80]!r} is not supported (linear-time regular "
                    f"expressions only: no look-around or back-references): {detail[:200]}"
                ) from None
        self._validator = _linear(cls)(schema)

    def check(self, text: str) -> str | None:
        try:
            answer = orjson.loads(_strip_fence(text))
        except orjson.JSONDecodeError:
            return "the answer is not JSON"
        try:
            error = schema_errors.best_match(self._validator.iter_errors(answer))
        except RecursionError:
            return "the answer is nested too deeply to validate"
        except Unresolvable:  # a $ref the door could not follow (inside a subschema with its own $id)
            return "the schema has a $ref that resolves to nothing"
        if error is None:
            return None
        return f"the answer fails the schema at {error.json_path}: `{error.validator}` not satisfied"


def answer_validator(json_schema: str) -> AnswerValidator:
    """The request's schema, compiled (InvalidRequest when it is not a usable JSON Schema). A schema seen
    recently is not compiled again: the door's check and the cascade's validation share one."""
    if len(json_schema) > _CACHED_SCHEMA_CHARS:
        return AnswerValidator(json_schema)
    return _compiled(json_schema)


@functools.lru_cache(maxsize=_CACHED_SCHEMAS)
def _compiled(json_schema: str) -> AnswerValidator:
    return AnswerValidator(json_schema)


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; the JSON inside is still the answer."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        newline = stripped.find("\n")
        if newline != -1 and not stripped[:newline].strip().startswith(("{", "[")):
            stripped = stripped[newline + 1 :]
    return stripped


def _dialect(schema: dict[str, Any]) -> type[Validator]:
    """The validator class of the schema's `$schema` (the latest draft without one)."""
    dialect = schema.get("$schema")
    if dialect is None:
        return validators.validator_for(schema)
    if not isinstance(dialect, str):
        raise InvalidRequest("json_schema: `$schema` must be a string naming a JSON Schema draft")
    cls: type[Validator] | None = validators.validator_for(schema, default=None)  # type: ignore[arg-type]
    if cls is None:
        raise InvalidRequest(
            f"json_schema: unknown `$schema` {dialect[:100]!r} (drafts 3 to 2020-12 are known)"
        )
    return cls


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the schema, itself included (so subschemas, and some plain values)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_references(schema: dict[str, Any], cls: type[Validator]) -> None:
    """Every `$ref` points inside the schema (nothing is ever fetched) and, from the root, resolves."""
    refs = [node["$ref"] for node in _walk(schema) if isinstance(node.get("$ref"), str)]
    if not refs:
        return
    nested_ids = any("$id" in node or "id" in node for node in _walk(schema) if node is not schema)
    resource = _specification(cls).create_resource(schema)
    resolver = Registry().with_resource("", resource).resolver()
    for ref in refs:
        if not ref.startswith("#"):
            raise InvalidRequest(
                f"json_schema: $ref {ref[:100]!r} points outside the schema (nothing is fetched)"
            )
        if nested_ids:
            continue  # a subschema's own $id moves the base: such refs are checked when answers are
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise InvalidRequest(
                f"json_schema: $ref {ref[:100]!r} resolves to nothing in the schema"
            ) from None


def _specification(cls: type[Validator]) -> Any:
    from referencing.jsonschema import specification_with

    return specification_with(cls.META_SCHEMA.get("$schema", ""))


def _patterns(schema: dict[str, Any]) -> Iterator[str]:
    for node in _walk(schema):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        if isinstance(node.get("patternProperties"), dict):
            yield from node["patternProperties"]


@functools.lru_cache(maxsize=512)
def _regex(pattern: str) -> RuleSet:
    """A pattern compiled by the rule engine (regex crate: linear time in the text)."""
    return RuleSet([Rule("pattern", regex=pattern)])


def _search(pattern: str, text: str) -> bool:
    return bool(_regex(pattern).matched_ids(text))


# The three keywords that match regular expressions, as jsonschema defines them, with `re.search` replaced.


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield schema_errors.ValidationError(f"does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = [k for k in instance if k not in known and not any(_search(p, k) for p in patterns)]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        yield schema_errors.ValidationError(f"{len(extras)} additional properties are not allowed")


@functools.cache
def _linear(cls: type[Validator]) -> type[Validator]:
    """`cls` with every regular expression matched in linear time."""
    keywords = {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    }
    known = {k: v for k, v in keywords.items() if k in cls.VALIDATORS}
    extended: type[Validator] = validators.extend(cls, known)  # type: ignore[no-untyped-call]
    return extended
