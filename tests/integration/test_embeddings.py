"""Embeddings on every door: `POST /v1/embeddings` through the official `openai` SDK (float and base64) and
the Embed RPC, against a sidecar subprocess whose hosted embedding model is the fake provider and whose
on-device one is the embedded all-MiniLM-L6-v2 in its worker process. Restricted text is never forwarded."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
import yaml

import tiergate
import tiergate.errors
from tests.fakes.provider_server import FakeProvider
from tests.fakes.provider_wire import FAKE_EMBEDDING_DIMENSIONS, fake_vector
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.readme_blocks import block
from tiergate.config import parse, resolve
from tiergate.request import Sensitivity
from tiergate.v1 import tiergate_pb2 as pb

CARD = "my card is 4111 1111 1111 1111"  # the default rule pack's payment card: restricted


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    def hosted(model: str, **extra: Any) -> dict[str, Any]:
        return {
            "provider": "openai",
            "kind": "embedding",
            "base_url": fake.url_openai,
            "model": model,
            "api_key": "k",
            "price": {"input_per_mtok": 0.02},
            **extra,
        }

    config: dict[str, Any] = {
        "models": {
            "chat": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"},
            "hosted-embed": hosted("text-embedding-3-small", dimensions=8, adjustable_dimensions=True),
            "failing-embed": hosted("fault:status:500"),
            "local-embed": {"provider": "onnx", "path": "embedded", "threads": 1},
        },
        "routes": {"default": {"chain": ["chat"]}},
        "embedding_routes": {
            "default": {"chain": ["hosted-embed", "local-embed"]},
            "hosted-only": {"chain": ["hosted-embed"]},
            "local": {"chain": ["local-embed"]},
            "fallback": {"chain": ["failing-embed", "local-embed"], "retries": 0},
        },
    }
    with run_sidecar(config, tmp_path_factory.mktemp("embeddings")) as proc:
        assert proc.http_address
        yield proc


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"http://{sidecar.http_address}/v1", api_key="unused", max_retries=0) as c:
        yield c


def forwarded(fake: FakeProvider, text: str) -> bool:
    return any(text in json.dumps(r.body) for r in fake.requests if isinstance(r.body, dict))


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_hosted_embeddings_through_the_sdk(
    client: openai.OpenAI, fake: FakeProvider, encoding_format: Any
) -> None:
    texts = ["the first text", "the second text"]
    raw = client.embeddings.with_raw_response.create(
        model="hosted-only", input=texts, encoding_format=encoding_format
    )
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    for item, text in zip(result.data, texts, strict=True):
        if encoding_format == "base64":  # the SDK hands base64 back as it came
            import base64
            import struct

            raw_vector = base64.b64decode(item.embedding)  # type: ignore[arg-type]
            vector = list(struct.unpack(f"<{len(raw_vector) // 4}f", raw_vector))
        else:
            vector = item.embedding
        assert vector == pytest.approx(fake_vector(text), abs=1e-6)
    assert result.model == "hosted-embed"
    assert result.usage.prompt_tokens == 6 and result.usage.total_tokens == 6
    decision = json.loads(raw.headers["x-tiergate-decision"])
    assert (decision["route"], decision["served_by"]) == ("hosted-only", "hosted-embed")
    assert decision["cost_usd"] == pytest.approx(6 * 0.02 / 1e6)
    sent = [r for r in fake.requests if r.path == "/v1/embeddings"][-1].body
    assert sent["model"] == "text-embedding-3-small" and sent["encoding_format"] == "base64"


def test_sdk_default_is_base64_and_decoded(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="hosted-only", input="one text")
    assert result.data[0].embedding == pytest.approx(fake_vector("one text"), abs=1e-6)


def test_dimensions_reach_a_model_that_can_shorten(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="hosted-only", input="short", dimensions=4, encoding_format="float"
    )
    assert result.data[0].embedding == pytest.approx(fake_vector("short", 4), abs=1e-6)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_on_device_embeddings_through_the_sdk(client: openai.OpenAI, encoding_format: Any) -> None:
    texts = ["How do I reset my password?", "I forgot my password and cannot log in", "Tomato soup recipe"]
    result = client.embeddings.create(model="local", input=texts, encoding_format=encoding_format)
    vectors = [d.embedding for d in result.data]
    if encoding_format == "base64":
        import base64
        import struct

        vectors = [list(struct.unpack("<384f", base64.b64decode(v))) for v in vectors]  # type: ignore[arg-type]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)
    # Paraphrases are closer to each other than to an unrelated text: the model, not noise, answered.
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert result.model == "local-embed"
    assert result.usage.prompt_tokens > 0


def test_restricted_text_is_embedded_on_the_device_only(client: openai.OpenAI, fake: FakeProvider) -> None:
    raw = client.embeddings.with_raw_response.create(model="default", input=["hello", CARD])
    decision = json.loads(raw.headers["x-tiergate-decision"])
    assert decision["served_by"] == "local-embed"
    assert "restricted data: on-device only" in decision["reason"]
    assert len(raw.parse().data) == 2
    assert not forwarded(fake, "4111")


def test_restricted_text_with_no_device_model_is_refused_not_forwarded(
    client: openai.OpenAI, fake: FakeProvider
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.embeddings.create(model="hosted-only", input=CARD)
    assert "not forwarded" in caught.value.message
    assert not forwarded(fake, "4111")


def test_a_client_may_declare_text_restricted(client: openai.OpenAI, fake: FakeProvider) -> None:
    result = client.embeddings.with_raw_response.create(
        model="default", input="quarterly numbers draft", extra_body={"sensitivity": "restricted"}
    )
    assert json.loads(result.headers["x-tiergate-decision"])["served_by"] == "local-embed"
    assert not forwarded(fake, "quarterly numbers draft")


def test_a_failing_hosted_model_falls_back_to_the_device(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="fallback", input="fall back please")
    decision = json.loads(raw.headers["x-tiergate-decision"])
    assert [a["outcome"] for a in decision["attempts"]] == ["error", "ok"]
    assert decision["served_by"] == "local-embed"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "default", "input": []}, 400, "input: must not be empty"),
        ({"model": "default", "input": 5}, 400, "input: required string or list of strings"),
        ({"model": "default", "input": ["ok", 3]}, 400, "input: required string or list of strings"),
        ({"model": "default", "input": [[1, 2, 3]]}, 400, "token arrays are not supported"),
        ({"model": "default", "input": ["", "x"]}, 400, "input[0]: must not be empty"),
        ({"model": "default", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "default", "input": "x", "dimensions": "4"}, 400, "dimensions: must be an integer"),
        ({"model": "local", "input": "x", "dimensions": 128}, 400, "cannot give 128-dimension vectors"),
        ({"model": "nope", "input": "x"}, 404, "does not exist"),
        ({"model": "local", "input": "word " * 400}, 400, "input[0] is 402 tokens"),
    ],
)
def test_bad_input_is_a_clear_error(
    client: openai.OpenAI, body: dict[str, Any], status: int, message: str
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.post("/embeddings", body=body, cast_to=object)
    assert caught.value.status_code == status
    assert message in caught.value.message


def test_the_embed_rpc(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    answer = sidecar.stub.Embed(pb.EmbedRequest(task="hosted-only", input=["via grpc"]), timeout=30)
    assert list(answer.embeddings[0].vector) == pytest.approx(fake_vector("via grpc"), abs=1e-6)
    assert answer.decision.served_by == "hosted-embed" and answer.usage.input_tokens == 2
    local = sidecar.stub.Embed(pb.EmbedRequest(task="default", input=[CARD]), timeout=30)
    assert local.decision.served_by == "local-embed" and len(local.embeddings[0].vector) == 384
    with pytest.raises(grpc.RpcError) as caught:
        sidecar.stub.Embed(pb.EmbedRequest(task="hosted-only", input=[CARD]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as caught:
        sidecar.stub.Embed(pb.EmbedRequest(task="default", input=[]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not forwarded(fake, "4111")


def test_the_readme_examples(fake: FakeProvider, tmp_path: Path) -> None:
    config = yaml.safe_load(block("embeddings-config"))
    for model in config["models"].values():
        if model["provider"] == "openai":
            model["base_url"] = fake.url_openai
    config["models"]["hosted-embed"]["dimensions"] = FAKE_EMBEDDING_DIMENSIONS
    with run_sidecar(config, tmp_path, env={"OPENAI_API_KEY": "k"}) as proc:
        code = block("embeddings-sdk").replace("127.0.0.1:8080", proc.http_address)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md#embeddings-sdk", "exec"), {})
    first, second = out.getvalue().splitlines()
    assert first.startswith("2 384 ")
    assert '"served_by":"local-embed"' in second
    assert not forwarded(fake, "4111")


def test_the_python_client_embeds_over_grpc(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    with tiergate.Client(sidecar.address) as client:
        answer = client.embed(["a", "b"], task="hosted-only")
        assert answer.vectors[1] == pytest.approx(fake_vector("b"), abs=1e-6)
        assert answer.decision.served_by == "hosted-embed"
        with pytest.raises(tiergate.errors.SensitiveDataBlocked):
            client.embed(CARD, task="hosted-only")
    assert not forwarded(fake, "4111")


async def test_the_in_process_router_embeds_on_the_device() -> None:
    config = resolve(
        parse(
            {
                "models": {
                    "chat": {"provider": "openai", "model": "m", "api_key": "k"},
                    "local-embed": {"provider": "onnx", "path": "embedded", "threads": 1},
                },
                "routes": {"default": {"chain": ["chat"]}},
                "embedding_routes": {"default": {"chain": ["local-embed"]}},
            }
        ),
        {},
    )
    async with tiergate.AsyncRouter(config) as router:
        answer = await router.embed([CARD, "hello"])
    assert answer.decision.served_by == "local-embed"
    assert answer.decision.sensitivity == Sensitivity.RESTRICTED
    assert [len(v) for v in answer.vectors] == [384, 384]
