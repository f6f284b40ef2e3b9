"""Asking an on-device model how hard a request is, for routes with `classify_with` where no rule decided.

The model gets a small time budget; past it the request goes on unclassified. Only an on-device model may be
asked (config enforces it), so classifying never sends the request's text off the box.
"""

from __future__ import annotations

import asyncio

import orjson

from tiergate.providers.base import Provider, ProviderError
from tiergate.request import Message, Request, Sensitivity

LEVELS = ("trivial", "moderate", "complex")
# The answer is constrained to one of the levels (grammar-constrained generation on the local model): a small
# model asked in prose tends to answer the request instead of classifying it.
ANSWER_SCHEMA = orjson.dumps({"type": "string", "enum": list(LEVELS)}).decode()
QUESTION = "Request: {text}\n\nHow hard is this request to answer well: trivial, moderate or complex?"
MAX_PROMPT_CHARS = 1000  # the start of the request says enough; a long prompt would eat the time budget


async def classify(provider: Provider, request: Request, budget_ms: float) -> str:
    """'trivial', 'moderate', 'complex', or '' when the model gave no usable answer within `budget_ms`."""
    question = Request(
        task="classify",
        messages=[Message("user", QUESTION.format(text=request.prompt_text()[:MAX_PROMPT_CHARS]))],
        sensitivity=Sensitivity.RESTRICTED,
        max_output_tokens=8,
        temperature=0.0,
        json_schema=ANSWER_SCHEMA,
    )
    try:
        async with asyncio.timeout(budget_ms / 1000):
            answer = await provider.complete(question)
    except (TimeoutError, ProviderError):
        # Classification is an optimisation: without it the route's own order applies.
        return ""
    return parse_level(answer.text)


def parse_level(text: str) -> str:
    """The level in the model's answer (a JSON string, or a bare word); '' for anything else."""
    word = text.strip().strip('"').strip().lower()
    return word if word in LEVELS else ""
