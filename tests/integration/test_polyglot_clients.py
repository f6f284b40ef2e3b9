"""The Go and Node example clients (examples/go, examples/node), built and run as a user runs them.

They run against a live sidecar whose model is a loopback fake provider, and against a recording gRPC server
that returns a fixed Decision (the exact printed layout, identical in both languages) and keeps the metadata
each call carried. Without `go`, or `node` and `npm`, on PATH, that language's tests skip. A first run
downloads modules through the Go proxy and packages from the npm registry into their caches; later runs
reuse the Go build cache and reinstall node_modules only when package-lock.json changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
GO_DIR = ROOT / "examples/go"
NODE_DIR = ROOT / "examples/node"
GO_GENERATED = ("tiergate.pb.go", "tiergate_grpc.pb.go")
BUILD_TIMEOUT_S = 540  # a cold module download and compile of grpc-go, or a cold `npm ci`
RUN_TIMEOUT_S = 60

# A first build or install may take minutes; once cached, each test takes well under a second.
slow_first_time = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Client:
    argv: tuple[str, ...]  # the command, before the client's own arguments

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # The developer's own TIERGATE_* settings must not leak into the tests.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        return subprocess.run(
            [*self.argv, *args],
            env={**clean, **(env or {})},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )


def build(argv: list[str], cwd: Path) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH: install Go (1.26+) to build and test examples/go")
    binary = tmp_path_factory.mktemp("go") / "tiergate-example"
    build([go, "build", "-o", str(binary), "."], GO_DIR)
    return Client((str(binary),))


@pytest.fixture(scope="module")
def node_client() -> Client:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node or npm is not on PATH: install Node.js (18.3+) to test examples/node")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules/.tiergate-lock-sha256"
    # Another test run in this checkout may install at the same time: one `npm ci` at a time.
    with lock.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
        if not stamp.is_file() or stamp.read_text() != digest:
            build([npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"], NODE_DIR)
            stamp.write_text(digest)
    return Client((node, str(NODE_DIR / "client.mjs")))


@pytest.fixture(params=["go", "node"])
def client(request: pytest.FixtureRequest) -> Client:
    # Resolved lazily, so that a missing `node` skips only the Node cases.
    fixture: Client = request.getfixturevalue(f"{request.param}_client")
    return fixture


def decision_lines(stderr: str) -> dict[str, list[str]]:
    """The printed Decision as {key: [values]}; `attempt` may repeat."""
    fields: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key, []).append(value.strip())
    return fields


# -- against a live sidecar -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    price = {"input_per_mtok": 1.5, "output_per_mtok": 3.0}
    config: dict[str, Any] = {
        "listen": {"http": None},
        "models": {
            "primary": {"provider": "openai", "base_url": fake.url_openai, "model": "m1", "api_key": "k"},
            "backup": {
                "provider": "openai",
                "base_url": fake.url_openai,
                "model": "m2",
                "api_key": "k",
                "price": price,
            },
        },
        "routes": {"default": {"chain": ["primary", "backup"], "retries": 0}},
        # The answer tests refuse `primary` on purpose: its breaker must stay closed so it is always tried.
        "breaker": {"window": 1000, "min_calls": 1000},
    }
    with run_sidecar(config, tmp_path_factory.mktemp("polyglot")) as proc:
        yield proc


@slow_first_time
@pytest.mark.parametrize("mode", [(), ("--stream",)], ids=["complete", "stream"])
def test_the_client_prints_the_answer_and_the_decision(
    client: Client, sidecar: SidecarProcess, fake: FakeProvider, mode: tuple[str, ...]
) -> None:
    # The first model is refused, so the Decision has two attempts and the fallback's price.
    fake.script("status:401", model="m1")
    result = client.run("--address", sidecar.address, *mode, "Say hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout == fake.reply_text + "\n"
    # The same request from the Python stubs, for the figures the client must print.
    fake.script("status:401", model="m1")
    same = sidecar.stub.Complete(
        pb.CompleteRequest(messages=[pb.Message(role="user", content="Say hello")]), timeout=10
    )
    assert same.decision.served_by == "backup" and same.decision.cost_usd > 0
    printed = decision_lines(result.stderr)
    assert printed["served_by"] == ["backup"]
    assert printed["route"] == [f"default ({same.decision.reason})"]
    assert printed["sensitivity"] == ["PUBLIC"]
    assert [a.split()[:2] for a in printed["attempt"]] == [["primary", "error"], ["backup", "ok"]]
    assert f"error={same.decision.attempts[0].error}" in printed["attempt"][0]
    assert printed["tokens"] == [f"{same.usage.input_tokens} in, {same.usage.output_tokens} out"]
    assert printed["cost_usd"] == [f"{same.decision.cost_usd:.6f}"]
    assert float(printed["overhead_ms"][0]) > 0


@slow_first_time
def test_the_client_calls_a_tool(client: Client, sidecar: SidecarProcess, fake: FakeProvider) -> None:
    """The model (the fake) calls get_weather; the client runs it and sends the result back."""
    result = client.run("--address", sidecar.address, "--tool", "What is the weather in Paris?")
    assert result.returncode == 0, result.stderr
    assert decision_lines(result.stderr)["tool_call"] == ['get_weather {"city":"Paris"}']
    assert result.stdout == 'Tool result: {"city":"Paris","celsius":18}\n'
    sent = fake.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][-1]["role"] == "tool" and sent["messages"][-2]["tool_calls"]


@slow_first_time
@pytest.mark.parametrize("mode", [(), ("--stream",)], ids=["complete", "stream"])
def test_a_grpc_error_exits_1_with_the_status(
    client: Client, sidecar: SidecarProcess, mode: tuple[str, ...]
) -> None:
    result = client.run("--address", sidecar.address, *mode, "mail bob@example.com")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("error: FAILED_PRECONDITION: the request carries restricted data")


@slow_first_time
def test_an_unreachable_sidecar_is_unavailable(client: Client) -> None:
    result = client.run("--address", "127.0.0.1:1", "--timeout", "5", "hi")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE: ")


# -- against a recording server with a fixed Decision --------------------------------------------------------

FIXED_DECISION = pb.Decision(
    route="support",
    served_by="backup",
    reason="fallback after an error",
    sensitivity=pb.INTERNAL,
    matched_rules=["codename", "email"],
    attempts=[
        pb.Attempt(model="primary", outcome="error", latency_ms=12.34, error="server_error: http 503"),
        pb.Attempt(model="backup", outcome="ok", ttft_ms=41.26, latency_ms=230.71, hedged=True),
    ],
    overhead_ms=0.4321,
    cost_usd=0.00123456,
)
FIXED_USAGE = pb.Usage(input_tokens=12, output_tokens=34, cost_usd=0.00123456)
PRINTED_DECISION = """\
served_by:   backup
route:       support (fallback after an error)
sensitivity: INTERNAL
rules:       codename, email
attempt:     primary error ttft=0.0ms latency=12.3ms error=server_error: http 503
attempt:     backup ok ttft=41.3ms latency=230.7ms hedged
tokens:      12 in, 34 out
cost_usd:    0.001235
overhead_ms: 0.43
"""


class RecordingTiergate(pb_grpc.TiergateServicer):
    """Answers "Hello!" with FIXED_DECISION and keeps every call's request and metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, str]]] = []

    def _record(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        self.calls.append((method, request, dict(context.invocation_metadata())))

    def Complete(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._record("Complete", request, context)
        return pb.CompleteResponse(text="Hello!", usage=FIXED_USAGE, decision=FIXED_DECISION)

    def StreamComplete(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        self._record("StreamComplete", request, context)
        yield pb.CompleteChunk(text="Hel")
        yield pb.CompleteChunk(text="lo!")
        yield pb.CompleteChunk(usage=FIXED_USAGE, decision=FIXED_DECISION, finish_reason="stop")


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[RecordingTiergate, str]]:
    servicer = RecordingTiergate()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_TiergateServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


@slow_first_time
@pytest.mark.parametrize(
    ("mode", "method"), [((), "Complete"), (("--stream",), "StreamComplete")], ids=["complete", "stream"]
)
@pytest.mark.parametrize("token", [None, "s3cret-token"], ids=["no-token", "token"])
def test_the_decision_layout_the_address_from_the_env_and_the_token(
    client: Client,
    recorder: tuple[RecordingTiergate, str],
    mode: tuple[str, ...],
    method: str,
    token: str | None,
) -> None:
    servicer, address = recorder
    env = {"TIERGATE_ADDRESS": address} | ({"TIERGATE_TOKEN": token} if token else {})
    before = len(servicer.calls)
    result = client.run("--task", "support", *mode, "Say hello", env=env)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("Hello!\n", PRINTED_DECISION)
    [(called, request, metadata)] = servicer.calls[before:]
    assert called == method
    assert (request.task, [(m.role, m.content) for m in request.messages]) == (
        "support",
        [("user", "Say hello")],
    )
    assert metadata.get("authorization") == (f"Bearer {token}" if token else None)


# -- the committed Go code is what the proto generates -------------------------------------------------------


@slow_first_time
def test_the_committed_go_code_is_fresh(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("go is not on PATH: the generator plugins (protoc-gen-go, protoc-gen-go-grpc) need it")
    result = subprocess.run(
        [str(GO_DIR / "generate.sh"), str(tmp_path)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in GO_GENERATED:
        fresh = (tmp_path / "gen/tiergate/v1" / name).read_text()
        committed = (GO_DIR / "gen/tiergate/v1" / name).read_text()
        assert committed == fresh, f"examples/go/gen/tiergate/v1/{name} is stale: run `make examples-proto`"
