"""Canary: personal data and secrets in generated prompts never reach a hosted model.

A real `tiergate serve` runs on a config with the embedded on-device model and two hosted models that are
the loopback fake server (OpenAI and Anthropic wire formats); every route lists the hosted models FIRST.
Hypothesis writes conversations that carry personal data and secrets (tests/personal_data.py: valid Luhn
and IBAN checksums, national IDs of ten countries with valid checksums, dates of birth after a birth word in
several languages, passport numbers, real key formats) inside ordinary text, spread over several messages.
Names and street addresses are not among them: the rule pack does not detect them (README, "Names and
addresses"). The config has no
rules of its own: the default rule pack alone must keep each of them away from the hosted models.

Each generated conversation goes through Explain, Complete or StreamComplete; a few really run on the local
model. Every request body the fake server recorded is then searched for every generated value, and so are
the sidecar's decision records and its log. Alongside each conversation, the same text without the personal
data goes through the same route and must be served by the hosted model, so the hosted path is shown to be
live (a broken hosted model would otherwise make "nothing reached it" trivially true).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.provider_server import FakeProvider, RecordedRequest
from tests.integration.inprocess import serve
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.personal_data import prose, secrets
from tiergate.v1 import tiergate_pb2 as pb

pytestmark = pytest.mark.local_model

HOSTED = ["gpt", "claude"]
CANARY_SETTINGS = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def canary_config(fake: FakeProvider) -> dict[str, Any]:
    return {
        "models": {
            "local": {
                "provider": "llama_cpp",
                "path": "embedded",
                "context_window": 2048,
                "max_output_tokens": 4,
                "queue_size": 4,
            },
            "gpt": {"provider": "openai", "base_url": fake.url_openai, "model": "gpt-canary", "api_key": "k"},
            "claude": {
                "provider": "anthropic",
                "base_url": fake.url_anthropic,
                "model": "claude-canary",
                "api_key": "k",
            },
        },
        "routes": {
            "default": {"chain": [*HOSTED, "local"], "retries": 0},
            "hosted_only": {"chain": HOSTED, "retries": 0},
        },
    }


@dataclass(frozen=True)
class Conversation:
    roles: list[str]
    with_data: list[str]  # message contents carrying the personal data
    without_data: list[str]  # the same text with the personal data left out
    items: list[tuple[str, str]]  # (pack rule id, value)

    def request(self, task: str, *, clean: bool = False, max_output_tokens: int = 4) -> pb.CompleteRequest:
        contents = self.without_data if clean else self.with_data
        return pb.CompleteRequest(
            task=task,
            messages=[pb.Message(role=r, content=c) for r, c in zip(self.roles, contents, strict=True)],
            max_output_tokens=max_output_tokens,
        )

    @property
    def values(self) -> list[str]:
        return [value for _, value in self.items]


ROLES = {1: ["user"], 2: ["system", "user"], 3: ["user", "assistant", "user"]}


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    items = draw(st.lists(secrets(), min_size=1, max_size=3))
    count = draw(st.integers(1, 3))
    placed: list[list[str]] = [[] for _ in range(count)]
    for _, value in items:
        placed[draw(st.integers(0, count - 1))].append(value)
    with_data, without_data = [], []
    for values in placed:
        parts = [draw(prose())]
        for value in values:
            parts += [value, draw(prose())]
        with_data.append(" ".join(parts))
        without_data.append(" ".join(p for p in parts if p not in values))
    return Conversation(ROLES[count], with_data, without_data, items)


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON body (keys included), or the raw body decoded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", "replace")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def leaks(requests: Iterable[RecordedRequest], values: Iterable[str]) -> list[tuple[int, str]]:
    """(request index, value) for every value found in a recorded request body."""
    wanted = list(values)
    return [
        (request.index, value)
        for request in requests
        for text in strings(request.body)
        for value in wanted
        if value in text
    ]


def assert_no_leaks_in_output(sidecar: SidecarProcess, values: list[str], records_expected: int) -> None:
    """The decision records (one per Complete / StreamComplete) and the log never hold a generated value."""
    deadline = time.monotonic() + 10
    while len(sidecar.records) < records_expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sidecar.records) >= records_expected
    output = [*sidecar.records, *sidecar.log]
    found = sorted({value for value in values for line in output if value in line})
    assert not found, f"{len(found)} generated values appear in the sidecar's records or log"


def fail_closed_or_answer(sidecar: SidecarProcess, request: pb.CompleteRequest, *, stream: bool) -> Any:
    """The call's error, or its answer when it (wrongly) got one."""
    try:
        if stream:
            return list(sidecar.stub.StreamComplete(request, timeout=10))
        return sidecar.stub.Complete(request, timeout=10)
    except grpc.RpcError as exc:
        return exc


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    with run_sidecar(canary_config(fake), tmp_path_factory.mktemp("canary"), timeout_s=120) as proc:
        yield proc


def test_generated_personal_data_never_reaches_a_hosted_model(
    sidecar: SidecarProcess, fake: FakeProvider
) -> None:
    sent: list[str] = []
    records_before = len(sidecar.records)
    calls = {"explain": 0, "complete": 0, "stream": 0}

    @CANARY_SETTINGS
    @given(conversation=conversations(), call=st.sampled_from(["explain", "complete", "stream"]))
    def one_conversation(conversation: Conversation, call: str) -> None:
        sent.extend(conversation.values)
        seen = len(fake.requests)
        # The same text without the personal data: served by the first model of the chain, a hosted one.
        control = sidecar.stub.Complete(conversation.request("default", clean=True), timeout=30)
        assert control.decision.served_by == "gpt"
        assert control.decision.sensitivity == pb.PUBLIC and not control.decision.matched_rules
        calls["complete"] += 1
        expected_rules = {rule_id for rule_id, _ in conversation.items}
        calls[call] += 1
        error: Any = None
        if call == "explain":
            # The plan for the route that has an on-device model: the hosted models are skipped.
            decision = sidecar.stub.Explain(conversation.request("default"), timeout=10)
            assert decision.sensitivity == pb.RESTRICTED
            assert expected_rules <= set(decision.matched_rules)
            assert [a.model for a in decision.attempts] == ["local"]
            assert [s.model for s in decision.skipped] == HOSTED
        else:
            # A route of hosted models only: nothing can serve it, so it must fail closed.
            error = fail_closed_or_answer(
                sidecar, conversation.request("hosted_only"), stream=call == "stream"
            )
        new = fake.requests[seen:]
        assert not leaks(new, conversation.values)  # the canary
        assert [r.model for r in new] == ["gpt-canary"]  # the control request, nothing else
        if call != "explain":
            assert isinstance(error, grpc.RpcError), "a restricted request was answered by a hosted model"
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "restricted data" in (error.details() or "")
            assert not [v for v in conversation.values if v in (error.details() or "")]

    one_conversation()
    assert calls["explain"] and calls["stream"] and calls["complete"] > calls["stream"]
    assert not leaks(fake.requests, sent)
    assert_no_leaks_in_output(sidecar, sent, records_before + calls["complete"] + calls["stream"])


def test_generated_personal_data_is_served_on_device(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    sent: list[str] = []
    records_before = len(sidecar.records)
    seen = len(fake.requests)
    served: list[str] = []

    @settings(CANARY_SETTINGS, max_examples=5)
    @given(conversation=conversations(), stream=st.booleans())
    def one_conversation(conversation: Conversation, stream: bool) -> None:
        sent.extend(conversation.values)
        request = conversation.request("default")
        if stream:
            chunks = list(sidecar.stub.StreamComplete(request, timeout=60))
            decision = chunks[-1].decision
        else:
            decision = sidecar.stub.Complete(request, timeout=60).decision
        assert decision.served_by == "local" and decision.sensitivity == pb.RESTRICTED
        assert [(a.model, a.outcome) for a in decision.attempts] == [("local", "ok")]
        assert [s.model for s in decision.skipped] == HOSTED
        served.append(decision.served_by)

    one_conversation()
    assert len(served) == 5
    assert fake.requests[seen:] == []
    assert_no_leaks_in_output(sidecar, sent, records_before + len(served))


# -- the on-device model is down ----------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


RESTRICTED_PROMPTS = [
    "Please forward the invoice to ann.lee@example.com today.",
    "Card 4111 1111 1111 1111, expiry 12/27: is this a Visa?",
    "Wire it to DE89 3704 0044 0532 0130 00 by Friday.",
    "Why does AKIAIOSFODNN7EXAMPLE get AccessDenied?",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    "Call me on +44 20 7946 0958 after 10:30.",
]


async def test_restricted_data_fails_closed_when_the_on_device_model_is_down(fake: FakeProvider) -> None:
    # The on-device model is a local OpenAI-compatible server (llama.cpp's, say) that is not running.
    config = canary_config(fake)
    config["models"]["local"] = {
        "provider": "openai",
        "on_device": True,
        "base_url": f"http://127.0.0.1:{closed_port()}/v1",
        "model": "local-llm",
        "api_key": "none",
        "connect_timeout_ms": 500,
    }
    # A small breaker window, so that later requests meet an open breaker on the local model.
    config["breaker"] = {"window": 4, "min_calls": 2, "open_ms": 60_000}
    seen = len(fake.requests)
    codes = []
    async with serve(config) as side:
        for text in RESTRICTED_PROMPTS:
            request = pb.CompleteRequest(
                messages=[pb.Message(role="user", content=text)], max_output_tokens=4
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await side.stub.Complete(request, timeout=10)
            codes.append(info.value.code())
            assert text not in (info.value.details() or "")
        assert side.sidecar.breakers["local"].state == "open"
        # Not restricted: the hosted model first, as the route says.
        control = await side.stub.Complete(
            pb.CompleteRequest(messages=[pb.Message(role="user", content="Say hello.")]), timeout=10
        )
    assert set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION}
    assert codes[0] == grpc.StatusCode.UNAVAILABLE  # the local attempt failed, and nothing else was tried
    assert control.decision.served_by == "gpt"
    assert [r.model for r in fake.requests[seen:]] == ["gpt-canary"]
    assert not leaks(fake.requests, RESTRICTED_PROMPTS)
