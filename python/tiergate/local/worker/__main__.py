"""The on-device worker process: one GGUF model, served over a socket to the sidecar that started it.

Started by `tiergate.local.supervisor` as `python -m tiergate.local.worker --fd N`, where N is its end of a
socket pair. It reads frames (`tiergate.local.protocol`) on the main thread and generates on the engine
thread (`engine.py`). It exits as soon as the sidecar is gone: its socket reaches end of file (the sidecar
closed it, or died and the kernel closed it), or the kernel's parent-death signal arrives. Nothing here
outlives the sidecar, and nothing the model does can take the sidecar down with it.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import logging
import os
import random
import signal
import socket
import sys
import threading

from tiergate.local import protocol
from tiergate.local.protocol import Frame
from tiergate.local.worker.engine import Engine, Job
from tiergate.local.worker.model import LoadedModel, LoadFailed, load, system_info
from tiergate.local.worker.sampling import TOP_P, Sampling, json_schema_grammar
from tiergate.providers.base import ProviderError
from tiergate.request import Message

_GRAMMAR_CACHE_SIZE = 64
_PR_SET_PDEATHSIG = 1


class Connection:
    """The worker's end of the socket pair: blocking reads on one thread, locked writes from any."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()

    def read(self) -> Frame | None:
        """The next frame; None at end of file (the sidecar is gone)."""
        header = self._reader.read(protocol.HEADER.size)
        if len(header) < protocol.HEADER.size:
            return None
        body = self._reader.read(protocol.body_length(header))
        return protocol.decode(body)

    def write(self, frame: Frame) -> None:
        data = protocol.encode(frame)
        try:
            with self._lock:
                self._sock.sendall(data)
        except OSError:
            os._exit(0)  # the sidecar is gone: nobody is left to serve


class Worker:
    """Turns `job`, `cancel` and `count` frames into engine calls."""

    def __init__(self, model: LoadedModel, connection: Connection) -> None:
        self._model = model
        self._connection = connection
        self._engine = Engine(model.llm, connection.write)
        self._grammars: dict[str, str] = {}
        self._seeds = random.Random()

    def handle(self, frame: Frame) -> None:
        op = frame["op"]
        if op == "job":
            self._job(frame)
        elif op == "cancel":
            self._engine.cancel(int(frame["id"]))
        elif op == "count":
            tokens = self._engine.count_tokens(str(frame["text"]))
            self._connection.write({"op": "counted", "id": frame["id"], "tokens": tokens})
        else:
            raise protocol.ProtocolError(f"unknown op {op!r}")

    def _job(self, frame: Frame) -> None:
        job_id = int(frame["id"])
        try:
            messages = [Message(m["role"], m["content"]) for m in frame["messages"]]
            prompt = self._model.format.render(messages)
            stops = [str(s) for s in frame.get("stop") or () if s]
            if stops:
                prompt = dataclasses.replace(prompt, stops=(*prompt.stops, *stops))
            schema = frame.get("json_schema")
            grammar = self._grammar(schema) if schema else None
        except ProviderError as exc:
            self._connection.write({"op": "error", "id": job_id, "kind": exc.kind, "message": str(exc)})
            return
        temperature = frame.get("temperature")
        if temperature is None:
            temperature = 0.0 if grammar is not None else self._model.format.default_temperature
        seed = frame.get("seed")
        top_p = frame.get("top_p")
        sampling = Sampling(
            temperature=float(temperature),
            repeat_penalty=self._model.format.repeat_penalty,
            seed=int(seed) if seed is not None else self._seeds.getrandbits(32),
            grammar=grammar,
            top_p=float(top_p) if top_p is not None else TOP_P,
        )
        self._engine.submit(Job(job_id, prompt, sampling, int(frame["max_tokens"])))

    def _grammar(self, schema: str) -> str:
        grammar = self._grammars.get(schema)
        if grammar is None:
            grammar = json_schema_grammar(schema)
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                del self._grammars[next(iter(self._grammars))]
            self._grammars[schema] = grammar
        return grammar


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
    try:
        model = load(str(first["path"]), n_ctx=int(first["n_ctx"]), threads=int(first["threads"]))
    except LoadFailed as exc:
        connection.write({"op": "load_failed", "message": str(exc)})
        return 1
    worker = Worker(model, connection)
    connection.write(
        {"op": "ready", "format": model.format.name, "n_ctx": model.llm.n_ctx(), "system_info": system_info()}
    )
    while (frame := connection.read()) is not None:
        worker.handle(frame)
    # End of file: the sidecar closed the socket or died. Exit at once: the OS frees the model faster than
    # llama.cpp would, and a job still running has nobody left to answer.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
