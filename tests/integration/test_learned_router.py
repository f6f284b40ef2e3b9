"""The learned router end to end: a route that classifies by nearest labelled examples (the on-device
embedding model in its worker), its Decision, and `tiergate accuracy` on a labelled file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import tiergate
from tests.fakes.provider_server import FakeProvider
from tests.readme_blocks import block
from tiergate.config import ConfigError, parse, resolve


async def test_a_route_classifies_by_its_nearest_examples(fake_provider: FakeProvider) -> None:
    config = resolve(
        parse(
            {
                "models": {
                    "hosted": {
                        "provider": "openai",
                        "base_url": fake_provider.url_openai,
                        "model": "m",
                        "api_key": "k",
                    },
                    "local-embed": {"provider": "onnx", "path": "embedded", "threads": 1},
                },
                "routes": {
                    "default": {
                        "chain": ["hosted"],
                        "classify_examples": {"model": "local-embed", "ms": 30_000},
                    }
                },
            }
        ),
        {},
    )
    async with tiergate.AsyncRouter(config) as router:
        easy = await router.complete("What is 6 plus 9?")
        hard = await router.complete(
            "Design a sharded, multi-region ledger with serializable transactions "
            "and prove it never double-spends."
        )
    assert (easy.decision.complexity, easy.decision.complexity_by) == ("trivial", "embeddings")
    assert (hard.decision.complexity, hard.decision.complexity_by) == ("complex", "embeddings")


def test_the_accuracy_command(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    rows = [
        ("Hello, how are you?", "trivial"),
        ("What is 7 times 6?", "trivial"),
        ("Write a friendly email inviting the team to a Friday lunch.", "moderate"),
        ("Explain how a binary search works, with an example in Python.", "moderate"),
        ("Design a fault-tolerant distributed database and prove its consistency guarantees.", "complex"),
        ("Derive the equations of motion for a double pendulum and analyse its chaotic regime.", "complex"),
    ]
    labelled.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    done = subprocess.run(
        [sys.executable, "-m", "tiergate.cli", "accuracy", str(labelled), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{labelled}: 6 labelled requests")
    assert lines[1].startswith("accuracy: ") and "/6 = " in lines[1]
    assert any(line.startswith("time per request: p50 ") for line in lines)


def test_bad_labels_are_a_clear_cli_error(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"text": "hi", "label": "easy"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "tiergate.cli", "accuracy", str(labelled)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "labelled.jsonl:1: needs a non-empty `text` and a `label`" in done.stderr


def test_the_readme_config_loads() -> None:
    config = resolve(parse(yaml.safe_load(block("learned-router-config"))), {"OPENAI_API_KEY": "k"})
    spec = config.routes["default"].classify_examples
    assert spec is not None and (spec.model, spec.examples, spec.k) == ("local-embed", "embedded", 7)
    with pytest.raises(ConfigError, match="is not an on-device embedding model"):
        bad = yaml.safe_load(block("learned-router-config"))
        bad["routes"]["default"]["classify_examples"]["model"] = "local"
        resolve(parse(bad), {"OPENAI_API_KEY": "k"})
