"""The README's traffic-control config examples (residency, pools) pass `tiergate check-config` as written,
and mean what the README says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.readme_blocks import block
from tiergate.config import load

ENV = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test", "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("name", ["residency-config", "pools-config", "feedback-config", "canary-config"])
def test_check_config_accepts_the_readme_example(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(block(name))
    result = subprocess.run(
        [sys.executable, "-m", "tiergate.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok")


def test_the_residency_example_says_what_the_readme_says(tmp_path: Path) -> None:
    path = tmp_path / "residency.yaml"
    path.write_text(block("residency-config"))
    config = load(path, ENV)
    assert config.tenants["acme"].regions == ["eu"]
    assert config.models["claude_beta"].tags == {"region": "eu", "env": "experimental"}
    assert yaml.safe_load(block("pools-config"))["pools"]["gpt"]["members"] == {"gpt_a": 70, "gpt_b": 30}
