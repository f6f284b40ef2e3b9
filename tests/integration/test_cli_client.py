"""`tiergate ask | explain | status | health` as a user runs them, against a sidecar subprocess and a fake
provider (and, marked local_model, the embedded default); the embedded model's first-run progress."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import SidecarProcess, run_sidecar
from tiergate.embedded_model import Progress

TOKEN = "tok-0123456789-never-print-me"


def tiergate(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiergate.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


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


def test_status_prints_a_table_of_every_model(sidecar: SidecarProcess) -> None:
    assert tiergate("ask", "Say hello", "--address", sidecar.address).returncode == 0
    result = tiergate("status", "--address", sidecar.address)
    assert result.returncode == 0, result.stderr
    header, row, footer = result.stdout.splitlines()
    assert header.split() == [
        "model",
        "provider",
        "on-device",
        "breaker",
        "TTFT",
        "ms",
        "tokens/s",
        "samples",
        "queue",
        "worker",
    ]
    name, provider, on_device, breaker, ttft, speed, samples, queue, worker = row.split()
    assert (name, provider, on_device, breaker, queue, worker) == (
        "hosted",
        "openai",
        "no",
        "closed",
        "-",
        "-",
    )
    assert float(ttft) >= 0 and float(speed) > 0 and int(samples) >= 1
    assert footer.startswith("in flight 0, up ") and ", tiergate " in footer


def test_status_of_an_unreachable_sidecar_exits_non_zero() -> None:
    result = tiergate("status", "--address", "127.0.0.1:1", "--timeout", "0.5")
    assert result.returncode == 1 and result.stderr.startswith("tiergate: UNAVAILABLE: ")


def test_the_token_comes_from_the_option_or_the_environment(fake: FakeProvider, tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "listen": {"http": None, "auth_token": TOKEN},
        "models": {
            "hosted": {"provider": "openai", "base_url": fake.url_openai, "model": "m", "api_key": "k"}
        },
        "routes": {"default": {"chain": ["hosted"]}},
    }
    no_token = {"TIERGATE_TOKEN": ""}
    with run_sidecar(config, tmp_path) as proc:
        denied = tiergate("ask", "Say hello", "--address", proc.address, env=no_token)
        assert denied.returncode == 1 and "tiergate: UNAUTHENTICATED: " in denied.stderr
        by_option = tiergate("status", "--address", proc.address, "--token", TOKEN, env=no_token)
        assert by_option.returncode == 0, by_option.stderr
        by_env = tiergate("explain", "Say hello", "--address", proc.address, env={"TIERGATE_TOKEN": TOKEN})
        assert by_env.returncode == 0, by_env.stderr
        wrong = tiergate("status", "--address", proc.address, "--token", "not-it")
        assert wrong.returncode == 1 and "not-it" not in wrong.stderr
        assert all(TOKEN not in r.stdout + r.stderr for r in (denied, by_option, by_env, wrong))


# -- the embedded model's first run --------------------------------------------------------------------------


def test_assembling_the_embedded_model_reports_progress_once(tmp_path: Path) -> None:
    def assemble() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tiergate.embedded_model"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "TIERGATE_CACHE_DIR": str(tmp_path)},
        )

    first = assemble()
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert lines[0].startswith("tiergate: assembling the embedded model into ") and "MB)" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["25%", "50%", "75%", "100%"]
    assert "\r" not in first.stderr  # stderr is a pipe here: plain lines, no bar
    again = assemble()
    assert (again.returncode, again.stderr, again.stdout) == (0, "", first.stdout)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_line_redrawn() -> None:
    out = _Terminal()
    progress = Progress("copying", 4_000_000, out)
    for _ in range(4):
        progress.advance(1_000_000)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("100% (4 MB of 4 MB)\n")
    assert text.split("\r")[1:] == [
        f"tiergate: copying: {p:3d}% ({mb} MB of 4 MB)" for p, mb in ((25, 1), (50, 2), (75, 3))
    ] + ["tiergate: copying: 100% (4 MB of 4 MB)\n"]


# -- the embedded default, no keys: the on-device model alone ------------------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    env = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    with run_sidecar(None, tmp_path_factory.mktemp("embedded"), env, timeout_s=120) as proc:
        yield proc


@pytest.mark.local_model
def test_ask_explain_and_status_on_the_embedded_default(embedded: SidecarProcess) -> None:
    answer = tiergate(
        "ask", "What is the capital of France?", "--max-output-tokens", "8", "--address", embedded.address
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() and "[local via route default: local:ok; public;" in answer.stderr

    plan = tiergate("explain", "mail bob@example.com", "--address", embedded.address)
    assert plan.returncode == 0, plan.stderr
    assert "sensitivity restricted  rules: email" in plan.stdout and "bob@example.com" not in plan.stdout
    assert [line.split()[:2] for line in plan.stdout.splitlines()[3:]] == [["#", "model"], ["1", "local"]]

    status = tiergate("status", "--address", embedded.address)
    assert status.returncode == 0, status.stderr
    row = status.stdout.splitlines()[1].split()
    assert row[:4] == ["local", "llama_cpp", "yes", "closed"] and int(row[6]) >= 1 and row[7:] == ["0", "up"]
