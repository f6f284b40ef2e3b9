"""Found by the soak: a client's deadline should end in tiergate's own DEADLINE_EXCEEDED, carrying the
decision trailer and counted as `deadline_exceeded`, not in the client's timer firing first.

The grpc-timeout header rounds the client's timeout up (to about three significant digits): with a 1 s
timeout the server's deadline falls ~10 ms after the client's (~100 ms at 30 s). With a fixed 5 ms margin
tiergate's answer came after the client had given up: a bare DEADLINE_EXCEEDED without the decision, and the
request recorded as `cancelled`. The margin now grows with the time remaining (server/grpc.py).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import orjson
import pytest

from tests.fakes.provider_server import FakeProvider
from tests.integration.sidecar_process import run_sidecar
from tiergate.server.grpc import DECISION_TRAILER
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

CLIENT_TIMEOUT_S = 1.0
CALLS = 3  # of each kind, unary and streamed


async def test_a_client_deadline_is_answered_by_tiergate(fake_provider: FakeProvider, tmp_path: Path) -> None:
    config = {
        "models": {
            "slow": {
                "provider": "openai",
                "base_url": fake_provider.url_openai,
                "model": "fault:drip:150;tokens=20",  # ~3 s: well past the client's deadline
                "api_key": "k",
            }
        },
        "routes": {"default": {"chain": ["slow"], "retries": 0}},
    }
    request = pb.CompleteRequest(messages=[pb.Message(role="user", content="Say hello")])
    with run_sidecar(config, tmp_path) as side:  # a real process: its timing, not one shared event loop
        async with grpc.aio.insecure_channel(side.address) as channel:
            stub = pb_grpc.TiergateStub(channel)
            ended_by_tiergate = []
            for i in range(2 * CALLS):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    if i % 2:
                        async for _ in stub.StreamComplete(request, timeout=CLIENT_TIMEOUT_S):
                            pass
                    else:
                        await stub.Complete(request, timeout=CLIENT_TIMEOUT_S)
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                ended_by_tiergate.append(DECISION_TRAILER in dict(info.value.trailing_metadata() or ()))
    records = [orjson.loads(line)["outcome"] for line in side.records]  # all written once it stopped
    assert ended_by_tiergate == [True] * (2 * CALLS)
    assert records == ["deadline_exceeded"] * (2 * CALLS)
