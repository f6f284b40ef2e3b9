"""Validated cascades (`validate: json_schema`): an answer failing validation escalates to the next model."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import serve
from tiergate.server.grpc import DECISION_TRAILER
from tiergate.v1 import tiergate_pb2 as pb

SCHEMA = orjson.dumps(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
).decode()


def config(first: FakeProvider, second: FakeProvider) -> dict[str, Any]:
    def model(fake: FakeProvider, model_id: str) -> dict[str, Any]:
        return {
            "provider": "openai",
            "base_url": fake.url_openai,
            "model": model_id,
            "api_key": "k",
            "price": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
        }

    return {
        "models": {"first": model(first, "first-model"), "second": model(second, "second-model")},
        "routes": {"extract": {"chain": ["first", "second"], "validate": "json_schema"}},
    }


def ask(schema: str = SCHEMA) -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task="extract", messages=[pb.Message(role="user", content="Ann is 31.")], json_schema=schema
    )


@pytest.mark.parametrize(
    ("first_reply", "reason"),
    [
        (("Sure! ", "Ann", " is 31."), "the answer is not JSON"),
        (('{"name": ', '"Ann"}'), "`required` not satisfied"),
        (('{"name": "Ann", ', '"age": "31"}'), "at $.age: `type` not satisfied"),
    ],
)
async def test_invalid_answer_escalates_and_the_decision_says_why(
    first_reply: tuple[str, ...], reason: str
) -> None:
    good = ('{"name": "Ann", ', '"age": 31}')
    with FakeProvider(reply=first_reply) as first, FakeProvider(reply=good) as second:
        async with serve(config(first, second)) as side:
            response = await side.stub.Complete(ask(), timeout=10)
    assert orjson.loads(response.text) == {"name": "Ann", "age": 31}
    d = response.decision
    assert d.served_by == "second"
    assert [(a.model, a.outcome) for a in d.attempts] == [("first", "rejected"), ("second", "ok")]
    assert reason in d.attempts[0].error
    assert "Ann" not in d.attempts[0].error  # the reason never quotes the answer
    # Both answers were paid for: the request's cost covers the rejected one too.
    assert d.cost_usd > response.usage.cost_usd > 0


async def test_valid_first_answer_is_served_without_escalating() -> None:
    good = ('```json\n{"name": "Ann", "age": 31}\n', "```")
    with FakeProvider(reply=good) as first, FakeProvider() as second:
        async with serve(config(first, second)) as side:
            response = await side.stub.Complete(ask(), timeout=10)
        assert not second.requests
    assert response.decision.served_by == "first"
    assert [(a.model, a.outcome) for a in response.decision.attempts] == [("first", "ok")]


async def test_every_answer_rejected_is_unavailable() -> None:
    with FakeProvider() as first, FakeProvider() as second:
        async with serve(config(first, second)) as side:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await side.stub.Complete(ask(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    decision = pb.Decision.FromString(dict(info.value.trailing_metadata())[DECISION_TRAILER])
    assert [a.outcome for a in decision.attempts] == ["rejected", "rejected"]


async def test_stream_on_a_validating_route_delivers_only_the_validated_answer() -> None:
    good = ('{"name": "Ann", ', '"age": 31}')
    with FakeProvider() as first, FakeProvider(reply=good) as second:
        async with serve(config(first, second)) as side:
            chunks = [c async for c in side.stub.StreamComplete(ask(), timeout=10)]
    assert "".join(c.text for c in chunks) == "".join(good)
    assert chunks[-1].decision.served_by == "second"


@pytest.mark.parametrize("schema", ['{"type": "objekt"}', '{"required": "name"}', "[1, 2]"])
async def test_invalid_schema_is_invalid_argument(schema: str) -> None:
    with FakeProvider() as first, FakeProvider() as second:
        async with serve(config(first, second)) as side:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await side.stub.Complete(ask(schema), timeout=10)
        assert not first.requests
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
