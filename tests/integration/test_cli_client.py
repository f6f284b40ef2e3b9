"""`tiergate ask | explain | health` as a user runs them, against a sidecar subprocess and a fake provider."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar


def tiergate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiergate.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as server:
        yield server


@pytest.fixture(scope="module")
def sidecar(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config: dict[str, Any] = {
        "listen": {"http": None},
        "models": {
            "hosted": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"},
        },
        "routes": {"default": {"chain": ["hosted"]}},
    }
    with run_sidecar(config, tmp_path_factory.mktemp("cli")) as proc:
        yield proc


@pytest.mark.parametrize("mode", [(), ("--no-stream",)])
def test_ask_prints_the_answer_then_the_decision(
    sidecar: SidecarProcess, fake: FakeProvider, mode: tuple[str, ...]
) -> None:
    result = tiergate("ask", "Say hello", "--address", sidecar.address, *mode)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == fake.reply_text
    assert "[hosted via route default: hosted:ok; public;" in result.stderr


def test_ask_failing_closed_exits_non_zero_with_the_status(sidecar: SidecarProcess) -> None:
    result = tiergate("ask", "mail bob@example.com", "--address", sidecar.address)
    assert result.returncode == 1
    assert "FAILED_PRECONDITION" in result.stderr and "bob@example.com" not in result.stderr


def test_explain_prints_the_plan(sidecar: SidecarProcess, fake: FakeProvider) -> None:
    before = len(fake.requests)
    result = tiergate("explain", "Say hello", "--address", sidecar.address)
    assert result.returncode == 0, result.stderr
    assert "route      default" in result.stdout and "hosted" in result.stdout
    assert len(fake.requests) == before


def test_health(sidecar: SidecarProcess) -> None:
    result = tiergate("health", "--address", sidecar.address)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING")
    unreachable = tiergate("health", "--address", "127.0.0.1:1", "--timeout", "0.5")
    assert unreachable.returncode == 1 and "UNAVAILABLE" in unreachable.stderr
