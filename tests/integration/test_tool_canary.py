"""Canary: personal data that appears only inside a tool result (or a tool call's arguments) never reaches a
hosted model, on either door.

A real `tiergate serve` has two hosted models (the loopback fake, OpenAI and Anthropic wire) and an on-prem
model marked `on_device: true` (the same fake, under its own model id), listed LAST. Hypothesis writes
secrets and personal data (tests/personal_data.py) into a tool result of an otherwise harmless tool loop. The
rules must find it there: the request goes to the on-premises model (route `default`), or, on a route
without one, fails closed (FAILED_PRECONDITION / 403) with nothing forwarded. The same loop without the data
goes to the first hosted model, so the hosted path is shown to be live.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import openai
import pytest
from hypothesis import HealthCheck, given, settings

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.integration.test_sensitive_canary import leaks
from tests.personal_data import prose, secrets
from tiergate.v1 import tiergate_pb2 as pb

HOSTED_IDS = ("gpt-canary", "claude-canary")
TOOL = pb.Tool(
    name="lookup_customer", parameters='{"type": "object", "properties": {"id": {"type": "string"}}}'
)
CANARY = settings(
    max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    def model(provider: str, model_id: str, url: str, **extra: Any) -> dict[str, Any]:
        return {"provider": provider, "base_url": url, "model": model_id, "api_key": "k", **extra}

    config = {
        "models": {
            "gpt": model("openai", "gpt-canary", fake.url_openai),
            "claude": model("anthropic", "claude-canary", fake.url_anthropic),
            "onprem": model("openai", "onprem-model", fake.url_openai, on_device=True),
        },
        "routes": {
            "default": {"chain": ["gpt", "claude", "onprem"], "retries": 0},
            "hosted_only": {"chain": ["gpt", "claude"], "retries": 0},
        },
    }
    with run_sidecar(config, tmp_path_factory.mktemp("tool-canary")) as proc:
        yield proc


def loop(task: str, result: str, arguments: str = '{"id": "c-17"}') -> pb.CompleteRequest:
    return pb.CompleteRequest(
        task=task,
        messages=[
            pb.Message(role="user", content="Who is customer c-17?"),
            pb.Message(
                role="assistant",
                tool_calls=[pb.ToolCall(id="call_1", name="lookup_customer", arguments=arguments)],
            ),
            pb.Message(role="tool", tool_call_id="call_1", content=result),
        ],
        tools=[TOOL],
    )


def hosted_requests(fake: FakeProvider) -> list[Any]:
    return [r for r in fake.requests if r.model in HOSTED_IDS]


@given(before=prose(), value=secrets(), after=prose())
@CANARY
def test_personal_data_in_a_tool_result_stays_on_premises(
    sidecar: SidecarProcess, fake: FakeProvider, before: str, value: tuple[str, str], after: str
) -> None:
    rule, secret = value
    result = json.dumps({"customer": f"{before} {secret} {after}"}, ensure_ascii=False)
    answer = sidecar.stub.Complete(loop("default", result), timeout=10)
    assert answer.decision.served_by == "onprem" and rule in answer.decision.matched_rules
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Complete(loop("hosted_only", result), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The same in the tool call's arguments.
    arguments = json.dumps({"id": secret}, ensure_ascii=False)
    assert sidecar.stub.Complete(loop("default", "{}", arguments), timeout=10).decision.served_by == "onprem"
    assert leaks(hosted_requests(fake), [secret]) == []
    # Without the data, the hosted path is live.
    clean = sidecar.stub.Complete(loop("default", json.dumps({"customer": f"{before} {after}"})), timeout=10)
    assert clean.decision.served_by == "gpt"


@given(value=secrets())
@settings(max_examples=10, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_http_door_blocks_it_too(
    sidecar: SidecarProcess, fake: FakeProvider, value: tuple[str, str]
) -> None:
    _, secret = value
    messages: Any = [
        {"role": "user", "content": "Who is customer c-17?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_customer", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"owner: {secret}"},
    ]
    tools: Any = [
        {"type": "function", "function": {"name": "lookup_customer", "parameters": {"type": "object"}}}
    ]
    with openai.OpenAI(
        base_url=f"http://{sidecar.http_address}/v1", api_key="unused", max_retries=0
    ) as client:
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="hosted_only", messages=messages, tools=tools)
        for stream in (False, True):
            answer = client.chat.completions.with_raw_response.create(
                model="default", messages=messages, tools=tools, stream=stream
            )
            if not stream:
                assert json.loads(answer.headers["x-tiergate-decision"])["served_by"] == "onprem"
    assert leaks(hosted_requests(fake), [secret]) == []
