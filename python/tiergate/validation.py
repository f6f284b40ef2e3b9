"""Answer validation for cascade routes (`validate: json_schema`): does an answer meet the request's schema?

A rejected answer escalates to the next model. The reason recorded in the Decision names the failing keyword
and where it failed (a JSON path), never the answer's text.
"""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import exceptions as schema_errors
from jsonschema import validators

from tiergate.errors import InvalidRequest


class AnswerValidator:
    """Compiled once per request; `check(text)` returns None when the answer is acceptable, else why not."""

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
        cls = validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except schema_errors.SchemaError as exc:
            raise InvalidRequest(f"json_schema is not a valid JSON Schema: {exc.message[:200]}") from None
        self._validator = cls(schema)

    def check(self, text: str) -> str | None:
        try:
            answer = orjson.loads(_strip_fence(text))
        except orjson.JSONDecodeError:
            return "the answer is not JSON"
        error = schema_errors.best_match(self._validator.iter_errors(answer))
        if error is None:
            return None
        return f"the answer fails the schema at {error.json_path}: `{error.validator}` not satisfied"


def check_schema(json_schema: str) -> None:
    """Raises InvalidRequest when a request's json_schema is not a usable JSON Schema."""
    AnswerValidator(json_schema)


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; the JSON inside is still the answer."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        newline = stripped.find("\n")
        if newline != -1 and not stripped[:newline].strip().startswith(("{", "[")):
            stripped = stripped[newline + 1 :]
    return stripped
