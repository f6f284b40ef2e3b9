"""server/openai_facade.py through the official `openai` SDK (sync, async, streaming) against a sidecar
subprocess whose upstream is the fake provider; malformed requests over a raw HTTP connection."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar

DECISION_HEADER = "x-tiergate-decision"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    def hosted(model: str) -> dict[str, Any]:
        return {"provider": "openai", "base_url": fake.url_openai, "model": model, "api_key": "k"}

    config: dict[str, Any] = {
        "models": {
            "hosted": hosted("m"),
            "failing": hosted("fault:status:500"),
            "dropping": hosted("fault:drop_mid_stream;after=2"),
            "stalling": hosted("fault:stall_first_byte"),
        },
        "routes": {
            "default": {"chain": ["hosted"]},
            "classify": {"chain": ["hosted"]},
            "broken": {"chain": ["failing"]},
            "interrupted": {"chain": ["dropping"]},
            "stalled": {"chain": ["stalling"], "retries": 0},
        },
    }
    with run_sidecar(config, tmp_path_factory.mktemp("openai")) as proc:
        assert proc.http_address
        yield proc


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"http://{sidecar.http_address}/v1", api_key="unused", max_retries=0) as c:
        yield c


def decision_of(headers: Any) -> dict[str, Any]:
    decision: dict[str, Any] = json.loads(headers[DECISION_HEADER])
    return decision


@pytest.mark.parametrize(("model", "route"), [("default", "default"), ("classify", "classify")])
def test_sync_completion_names_the_route_and_returns_the_decision_header(
    client: openai.OpenAI, fake: FakeProvider, model: str, route: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == fake.reply_text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.model == "hosted"
    decision = decision_of(raw.headers)
    assert (decision["served_by"], decision["route"]) == ("hosted", route)
    assert decision["attempts"][0]["model"] == "hosted" and decision["attempts"][0]["outcome"] == "ok"
    assert {"cost_usd", "overhead_ms"} <= decision.keys()


@pytest.mark.parametrize("include_usage", [True, False])
def test_sync_stream_ends_with_the_decision(
    client: openai.OpenAI, fake: FakeProvider, include_usage: bool
) -> None:
    stream = client.chat.completions.create(
        model="classify",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    with stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake.reply_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert (last.usage is not None) is include_usage
    assert last.choices == [] if include_usage else last.choices[0].finish_reason == "stop"
    assert last.model_extra is not None
    assert last.model_extra["tiergate_decision"]["route"] == "classify"
    assert all("tiergate_decision" not in (c.model_extra or {}) for c in chunks[:-1])


async def test_async_completion_and_stream(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    base_url = f"http://{sidecar.http_address}/v1"
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        completion = await client.chat.completions.create(model="default", messages=HELLO)
        assert completion.choices[0].message.content == fake.reply_text
        stream = await client.chat.completions.create(
            model="default",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(parts) == fake.reply_text


def test_models_lists_the_routes(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == [
        "broken",
        "classify",
        "default",
        "interrupted",
        "stalled",
    ]


def test_unknown_model_is_a_404_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=HELLO)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "nope" in caught.value.message


def test_restricted_data_fails_closed_with_403(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "mail bob@example.com"}]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="default", messages=messages)
    assert caught.value.code == "sensitive_data_blocked"
    assert "bob@example.com" not in caught.value.message
    with pytest.raises(openai.PermissionDeniedError):  # streams fail before any byte, with the same status
        client.chat.completions.create(model="default", messages=messages, stream=True)


def test_all_attempts_failed_is_a_502_with_the_decision(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="broken", messages=HELLO)
    assert caught.value.status_code == 502 and caught.value.code == "all_attempts_failed"
    assert decision_of(caught.value.response.headers)["attempts"][0]["model"] == "failing"


def test_failure_mid_stream_is_an_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="interrupted", messages=HELLO, stream=True)
    with stream, pytest.raises(openai.APIError, match=r"."):
        for _ in stream:
            pass


def raw_post(conn: http.client.HTTPConnection, body: bytes, path: str = "/v1/chat/completions") -> Any:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": []}', "model: required"),
        (b'{"model": 3, "messages": []}', "model: wrong type"),
        (b'{"model": "default", "messages": []}', "messages: must not be empty"),
        (b'{"model": "default", "messages": "hi"}', "messages: wrong type"),
        (b'{"model": "default", "messages": [{"role": "user"}]}', "messages[0].content"),
        (b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "max_tokens": true}',
            "max_tok",
        ),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "n": 2}',
            "n=2 is not supported",
        ),
        (
            b'{"model": "default", "messages": [{"role": "user", "content": "x"}], "sensitivity": "?"}',
            "sensitiv",
        ),
    ],
)
def test_malformed_requests_are_400_and_the_server_keeps_serving(
    sidecar: SidecarProcess, fake: FakeProvider, body: bytes, message: str
) -> None:
    conn = http.client.HTTPConnection(sidecar.http_address, timeout=10)
    try:
        status, error = raw_post(conn, body)
        assert status == 400
        assert error["error"]["type"] == "invalid_request_error" and message in error["error"]["message"]
        assert set(error["error"]) == {"message", "type", "param", "code"}
        # The same keep-alive connection still answers.
        status, ok = raw_post(conn, json.dumps({"model": "default", "messages": HELLO}).encode())
        assert status == 200 and ok["choices"][0]["message"]["content"] == fake.reply_text
    finally:
        conn.close()


def test_wrong_methods_are_405(sidecar: SidecarProcess) -> None:
    conn = http.client.HTTPConnection(sidecar.http_address, timeout=10)
    try:
        conn.request("GET", "/v1/chat/completions")
        response = conn.getresponse()
        assert (response.status, response.getheader("allow")) == (405, "POST")
        response.read()
        status, _ = raw_post(conn, b"{}", path="/v1/models")
        assert status == 405
    finally:
        conn.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_goes_away_cancels_the_upstream_call(
    sidecar: SidecarProcess, fake: FakeProvider, stream: bool
) -> None:
    body = json.dumps({"model": "stalled", "messages": HELLO, "stream": stream}).encode()
    before = len(fake.requests)
    host, port = sidecar.http_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        fake.wait(lambda reqs: len(reqs) > before)
    upstream = fake.requests[before]
    assert upstream.model == "fault:stall_first_byte"
    fake.wait(lambda _: upstream.client_closed_at is not None)  # without the check: never, it stalls forever
