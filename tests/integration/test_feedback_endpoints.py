"""Feedback end to end against a sidecar process: the Feedback RPC and POST /v1/feedback rate a served
request by its Decision's request_id; the ratings show in /metrics per route x model x arm; an unknown or
already rated id is NOT_FOUND / 404; nothing of the prompt is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb

PROMPT = "feedback-prompt-marker"


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config: dict[str, Any] = {
        "models": {"gpt": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"}},
        "routes": {"chat": {"chain": ["gpt"]}},
        "feedback": {"labels": ["good", "bad", "off_topic"]},
    }
    with run_sidecar(config, tmp_path_factory.mktemp("feedback")) as proc:
        yield proc


def ask(sidecar: SidecarProcess) -> pb.Decision:
    request = pb.CompleteRequest(task="chat", messages=[pb.Message(role="user", content=PROMPT)])
    decision: pb.Decision = sidecar.stub.Complete(request, timeout=10).decision
    return decision


def metrics(sidecar: SidecarProcess) -> str:
    return httpx.get(f"http://{sidecar.http_address}/metrics", timeout=5).text


def test_the_feedback_rpc_round_trip(sidecar: SidecarProcess) -> None:
    first, second = ask(sidecar), ask(sidecar)
    assert len(first.request_id) == 24 and first.request_id != second.request_id
    answer = sidecar.stub.Feedback(pb.FeedbackRequest(request_id=first.request_id, score=0.25, label="bad"))
    assert (answer.route, answer.model, answer.arm) == ("chat", "gpt", "")
    sidecar.stub.Feedback(pb.FeedbackRequest(request_id=second.request_id, score=0.75))
    text = metrics(sidecar)
    assert 'tiergate_feedback_total{arm="",label="bad",model="gpt",route="chat"} 1.0' in text
    assert 'tiergate_feedback_total{arm="",label="",model="gpt",route="chat"} 1.0' in text
    assert 'tiergate_feedback_score_count{arm="",model="gpt",route="chat"} 2.0' in text
    assert 'tiergate_feedback_score_sum{arm="",model="gpt",route="chat"} 1.0' in text
    # The id is used up.
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Feedback(pb.FeedbackRequest(request_id=first.request_id, score=1.0))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.FeedbackRequest(request_id="never-issued", score=1.0), grpc.StatusCode.NOT_FOUND),
        (pb.FeedbackRequest(request_id="x" * 100_000, label="good"), grpc.StatusCode.NOT_FOUND),
        (pb.FeedbackRequest(request_id="never-issued"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FeedbackRequest(request_id="never-issued", score=2.0), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FeedbackRequest(request_id="never-issued", label="great"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_feedback_rpcs(sidecar: SidecarProcess, request_: pb.FeedbackRequest, code: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sidecar.stub.Feedback(request_, timeout=5)
    assert info.value.code() == code
    assert len(info.value.details() or "") < 300


def test_the_http_endpoint(sidecar: SidecarProcess) -> None:
    base = f"http://{sidecar.http_address}/v1"
    chat = httpx.post(
        f"{base}/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": PROMPT}]},
        timeout=10,
    )
    request_id = json.loads(chat.headers["x-tiergate-decision"])["request_id"]
    rated = httpx.post(f"{base}/feedback", json={"request_id": request_id, "label": "off_topic"}, timeout=5)
    assert rated.status_code == 200 and rated.json() == {"route": "chat", "model": "gpt", "arm": ""}
    again = httpx.post(f"{base}/feedback", json={"request_id": request_id, "label": "good"}, timeout=5)
    assert again.status_code == 404 and again.json()["error"]["type"] == "not_found_error"
    for body, status in [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"score": 1}', 400),
        (b'{"request_id": "r", "score": "high"}', 400),
        (b'{"request_id": "r", "score": true}', 400),
    ]:
        assert httpx.post(f"{base}/feedback", content=body, timeout=5).status_code == status
    assert httpx.get(f"{base}/feedback", timeout=5).status_code == 405
    expected = 'tiergate_feedback_total{arm="",label="off_topic",model="gpt",route="chat"} 1.0'
    assert expected in metrics(sidecar)


def test_no_prompt_text_in_the_answers(sidecar: SidecarProcess) -> None:
    decision = ask(sidecar)
    answer = sidecar.stub.Feedback(pb.FeedbackRequest(request_id=decision.request_id, score=1.0))
    assert PROMPT not in str(answer)
