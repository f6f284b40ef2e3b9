"""The on-device worker process: one model, served over a socket to the sidecar that started it.

Started by `tiergate.local.supervisor` as `python -m tiergate.local.worker --fd N`, where N is its end of a
socket pair. The first frame (`load`) names the model and its `kind`: `chat` (the default; a GGUF model run by
llama.cpp, `chat.py`) or `embedding` (an ONNX sentence-embedding model run by onnxruntime, `embedding.py`).
Only the kind's own runtime is imported: an embedding worker never loads llama.cpp. It exits as soon as the
sidecar is gone: its socket reaches end of file (the sidecar closed it, or died and the kernel closed it), or
the kernel's parent-death signal arrives. Nothing here outlives the sidecar, and nothing the model does can
take the sidecar down with it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

from tiergate.local import protocol
from tiergate.local.worker.connection import Connection

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Asks the kernel for SIGKILL when the sidecar dies, then checks it has not died already."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiergate.local.worker")
    parser.add_argument("--fd", type=int, required=True, help="this worker's end of the socket pair")
    parser.add_argument("--parent", type=int, required=True, help="the sidecar's process id")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    logging.basicConfig(level=logging.WARNING, format="tiergate-worker: %(levelname)s %(message)s")
    connection = Connection(socket.socket(fileno=args.fd))
    first = connection.read()
    if first is None:
        return 0
    if first["op"] != "load":
        raise protocol.ProtocolError(f"expected load, got {first['op']!r}")
    kind = first.get("kind", "chat")
    if kind == "embedding":
        # onnxruntime's official Linux builds send usage events to Microsoft, and keep a device id and an
        # event cache under ~/.cache/Microsoft, unless this is set before it initialises: an on-device model
        # sends nothing, and writes nothing (a read-only root file system works).
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
        from tiergate.local.worker import embedding

        status = embedding.serve(first, connection)
    elif kind == "chat":
        from tiergate.local.worker import chat

        status = chat.serve(first, connection)
    else:
        connection.write({"op": "load_failed", "message": f"unknown worker kind {kind!r}"})
        return 1
    if status:
        return status
    # End of file: the sidecar closed the socket or died. Exit at once: the OS frees the model faster than
    # the runtime would, and a job still running has nobody left to answer.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
