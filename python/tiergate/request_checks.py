"""Validation of a request at the door, before any work is done: every problem is an InvalidRequest."""

from __future__ import annotations

import math

from tiergate.config import LimitsConfig
from tiergate.errors import InvalidRequest
from tiergate.request import Request
from tiergate.validation import answer_validator

ROLES = frozenset({"system", "user", "assistant"})


def check_request(request: Request, limits: LimitsConfig) -> None:
    if not request.messages:
        raise InvalidRequest("messages is empty: send at least one message")
    size = 0
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role: {message.role!r} is not one of {', '.join(sorted(ROLES))}"
            )
        size += len(message.content)
    if size > limits.max_request_bytes:
        raise InvalidRequest(
            f"the messages hold {size} characters, over the limit of {limits.max_request_bytes} "
            "(limits.max_request_bytes)"
        )
    if not any(m.content.strip() for m in request.messages):
        raise InvalidRequest("every message is empty")
    if request.max_output_tokens < 0 or request.max_output_tokens > limits.max_output_tokens:
        raise InvalidRequest(
            f"max_output_tokens {request.max_output_tokens} is out of range "
            f"(0 to {limits.max_output_tokens}, limits.max_output_tokens)"
        )
    if request.temperature is not None and not 0.0 <= request.temperature <= 2.0:
        raise InvalidRequest(f"temperature {request.temperature} is out of range (0 to 2)")
    if not 0 <= request.max_cost_usd < math.inf:  # NaN included: it would read as "no limit"
        raise InvalidRequest(f"max_cost_usd {request.max_cost_usd} is not a cost (0: no limit)")
    if request.json_schema:
        answer_validator(request.json_schema)  # compiled now, kept for the cascade
