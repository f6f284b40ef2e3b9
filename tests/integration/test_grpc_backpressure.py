"""A client that reads a stream slower than the upstream writes it: the gRPC listener's queue fills, the
handler waits for room (it stops reading the upstream meanwhile), and every chunk still arrives, in order,
with the decision on the last one.

The client is written with HTTP/2 frames (the `h2` library) so that it can hold its flow-control window
shut: it announces a 256-byte window and grants more only once the handler has had to wait for room.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from tests.fakes.provider_faults import Fault
from tests.fakes.provider_server import FakeProvider
from tests.integration.inprocess import serve
from tiergate.server.grpc_server import GrpcServer
from tiergate.v1 import tiergate_pb2 as pb

TOKENS = 3000  # ~30 bytes a chunk on the wire: far past the window and the 64-message queue


def config(fake: FakeProvider) -> dict[str, Any]:
    return {
        "models": {
            "m": {"provider": "openai", "base_url": fake.url_openai, "model": "gpt-test", "api_key": "k"}
        },
        "routes": {"default": {"chain": ["m"]}},
    }


def messages(body: bytes) -> list[pb.CompleteChunk]:
    """The length-prefixed gRPC messages of a response body."""
    found, at = [], 0
    while at < len(body):
        compressed, length = struct.unpack(">BI", body[at : at + 5])
        assert compressed == 0
        found.append(pb.CompleteChunk.FromString(body[at + 5 : at + 5 + length]))
        at += 5 + length
    return found


async def test_a_slow_reader_gets_every_chunk_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    waited = asyncio.Event()
    room = GrpcServer._room

    async def watched_room(self: GrpcServer, call: Any) -> None:
        waited.set()
        await room(self, call)

    monkeypatch.setattr(GrpcServer, "_room", watched_room)
    with FakeProvider(reply=("tok",)) as fake:
        fake.script(Fault(tokens=TOKENS))
        async with serve(config(fake)) as side:
            host, port = side.address.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 256})
            stream = conn.get_next_available_stream_id()
            ask = pb.CompleteRequest(
                messages=[pb.Message(role="user", content="go")], max_output_tokens=TOKENS
            )
            request = ask.SerializeToString()
            conn.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/tiergate.v1.Tiergate/StreamComplete"),
                    (":authority", side.address),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                ],
            )
            conn.send_data(stream, struct.pack(">BI", 0, len(request)) + request, end_stream=True)
            writer.write(conn.data_to_send())
            body, trailers, ended, unacknowledged = bytearray(), {}, False, 0
            while not ended:
                if waited.is_set() and unacknowledged:  # the handler has waited: open the window from now on
                    conn.acknowledge_received_data(unacknowledged, stream)
                    conn.increment_flow_control_window(1 << 20)
                    conn.increment_flow_control_window(1 << 20, stream)
                    unacknowledged = 0
                    writer.write(conn.data_to_send())
                read = asyncio.ensure_future(reader.read(65536))
                done, _ = await asyncio.wait([read, asyncio.ensure_future(waited.wait())], timeout=60,
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if read not in done:
                    read.cancel()
                    assert waited.is_set(), "no progress in 60 s: the stream stalled"
                    continue
                data = read.result()
                assert data, "the sidecar closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        unacknowledged += event.flow_controlled_length
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = {k.decode(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                writer.write(conn.data_to_send())
            writer.close()
    assert waited.is_set(), "the handler never had to wait: the test did not exercise backpressure"
    assert trailers.get("grpc-status") == "0", trailers
    chunks = messages(bytes(body))
    assert "".join(c.text for c in chunks) == "tok" * TOKENS
    assert chunks[-1].HasField("decision") and chunks[-1].decision.served_by == "m"
    assert not any(c.HasField("decision") for c in chunks[:-1])
