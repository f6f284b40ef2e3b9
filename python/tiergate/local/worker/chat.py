"""The chat kind of worker: one GGUF model run by llama.cpp (`engine.py`), serving `job`, `cancel`, `count`.

Imported only by a worker whose `load` frame asks for a chat model: an embedding worker never loads llama.cpp.
"""

from __future__ import annotations

import dataclasses
import random
import threading

from tiergate.local import protocol
from tiergate.local.protocol import Frame
from tiergate.local.worker.connection import Connection
from tiergate.local.worker.engine import Engine, Job
from tiergate.local.worker.model import LoadedModel, LoadFailed, load, system_info
from tiergate.local.worker.sampling import TOP_P, Sampling, json_schema_grammar
from tiergate.providers.base import ProviderError
from tiergate.request import Message

_GRAMMAR_CACHE_SIZE = 64


class Worker:
    """Turns `job`, `cancel` and `count` frames into engine calls."""

    def __init__(self, model: LoadedModel, connection: Connection) -> None:
        self._model = model
        self._connection = connection
        self._engine = Engine(model.llm, connection.write)
        self._grammars: dict[str, str] = {}
        self._seeds = random.Random()

    @property
    def engine(self) -> Engine:
        return self._engine

    def read_frames(self) -> None:
        """Handles frames until end of file, then stops the engine (the sidecar closed or died)."""
        while (frame := self._connection.read()) is not None:
            self.handle(frame)
        self._engine.close()

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


def serve(first: Frame, connection: Connection) -> int:
    """Loads the model `first` (the `load` frame) names, then serves frames until end of file."""
    try:
        model = load(str(first["path"]), n_ctx=int(first["n_ctx"]), threads=int(first["threads"]))
    except LoadFailed as exc:
        connection.write({"op": "load_failed", "message": str(exc)})
        return 1
    worker = Worker(model, connection)
    connection.write(
        {"op": "ready", "format": model.format.name, "n_ctx": model.llm.n_ctx(), "system_info": system_info()}
    )
    # Frames are read on a thread of their own; the engine runs here, on the main thread (see `Engine`).
    reader = threading.Thread(target=worker.read_frames, name="tiergate-worker-reader", daemon=True)
    reader.start()
    worker.engine.serve()
    return 0
