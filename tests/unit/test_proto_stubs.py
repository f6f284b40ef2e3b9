"""The committed stubs in python/tiergate/v1 must be what `make proto` generates from proto/ right now."""

from __future__ import annotations

from pathlib import Path

import pytest

grpc_tools = pytest.importorskip("grpc_tools.protoc")

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("tiergate_pb2.py", "tiergate_pb2.pyi", "tiergate_pb2_grpc.py")


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(ROOT / "proto/tiergate/v1/tiergate.proto"),
    ]
    assert grpc_tools.main(args) == 0
    for name in GENERATED:
        fresh = (tmp_path / "tiergate/v1" / name).read_text()
        committed = (ROOT / "python/tiergate/v1" / name).read_text()
        assert committed == fresh, f"python/tiergate/v1/{name} is stale: run `make proto`"


def test_stub_imports_resolve_inside_the_package() -> None:
    text = (ROOT / "python/tiergate/v1/tiergate_pb2_grpc.py").read_text()
    assert "from tiergate.v1 import tiergate_pb2" in text
