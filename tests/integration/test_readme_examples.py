"""The README's copy-paste examples, run as written (only the address changes) against a live sidecar:
the OpenAI SDK snippet, the grpcurl commands (grpcurl installed with `go install` when Go is there), and
the security config block."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tests.readme_blocks import block
from tiergate.config import parse, resolve

GRPCURL_VERSION = "v1.9.3"


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config: dict[str, Any] = {
        "models": {
            "hosted": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"}
        },
        "routes": {"default": {"chain": ["hosted"]}},
    }
    with run_sidecar(config, tmp_path_factory.mktemp("readme")) as proc:
        yield proc


def test_openai_sdk_example(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    code = block("openai-sdk").replace("127.0.0.1:8080", sidecar.http_address)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md#openai-sdk", "exec"), {})
    printed = out.getvalue()
    assert printed.startswith(fake.reply_text + "\n")
    assert '"served_by":"hosted"' in printed  # the header's Decision
    assert "'served_by': 'hosted'" in printed  # the last chunk's Decision


def test_openai_tools_example(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    """The tool loop: the model (the fake) calls get_weather, the example answers, the model uses it."""
    code = block("openai-tools").replace("127.0.0.1:8080", sidecar.http_address)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md#openai-tools", "exec"), {})
    assert out.getvalue() == "Tool result: 18C and sunny in Paris\n"
    assert fake.requests[-1].body["messages"][-1]["role"] == "tool"


@pytest.fixture(scope="module")
def grpcurl(tmp_path_factory: pytest.TempPathFactory) -> str:
    found = shutil.which("grpcurl")
    if found:
        return found
    go = shutil.which("go")
    if go is None:
        pytest.skip("neither grpcurl nor Go (to install it) is on PATH")
    gobin = Path(
        subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True, check=True).stdout.strip()
    )
    binary = gobin / "bin" / "grpcurl"
    if not binary.exists():  # the module proxy serves it; the Go build cache makes this a one-time cost
        subprocess.run(
            [go, "install", f"github.com/fullstorydev/grpcurl/cmd/grpcurl@{GRPCURL_VERSION}"],
            check=True,
            capture_output=True,
            timeout=900,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
        )
    return str(binary)


@pytest.mark.timeout(900)
def test_grpcurl_example_through_reflection(
    sidecar: SidecarProcess, fake: FakeProvider, grpcurl: str
) -> None:
    commands = block("grpcurl").replace("\\\n", " ").replace("127.0.0.1:50051", sidecar.address).splitlines()
    outputs = []
    for line in filter(None, (c.strip() for c in commands)):
        argv = shlex.split(line)
        assert argv[0] == "grpcurl"
        result = subprocess.run([grpcurl, *argv[1:]], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (line, result.stderr)
        outputs.append(result.stdout)
    services, complete, count = outputs
    assert "tiergate.v1.Tiergate" in services and "grpc.health.v1.Health" in services
    assert f'"text": "{fake.reply_text}"' in complete and '"served_by": "hosted"' in complete
    assert '"tokens": 2' in count


def test_security_config_example(tmp_path: Path) -> None:
    data = yaml.safe_load(block("security-config"))
    data["models"] = {"local": {"provider": "llama_cpp", "path": "embedded"}}
    data["routes"] = {"default": {"chain": ["local"]}}
    for key in ("tls_cert", "tls_key"):  # the README's paths, made real here
        path = tmp_path / Path(data["listen"][key]).name
        path.write_text("PEM")
        data["listen"][key] = str(path)
    config = resolve(parse(data), {"TIERGATE_TOKEN": "t0ken"})
    assert config.listen.grpc.startswith("unix:") and config.listen.tls is not None
    assert config.listen.auth_token is not None and config.listen.auth_token.get_secret_value() == "t0ken"
    assert config.limits.max_concurrent_requests == 64
