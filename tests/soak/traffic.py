"""The soak's client: mixed gRPC traffic at a steady rate, and exactly one recorded `Outcome` per request.

Requests start on a fixed schedule (open loop: `rate` per second whatever the answers take), each in its own
task, so a slow or hung answer never slows the traffic down. The mix: unary and streamed calls; several tasks
(routes) and tenants, one of them rate-limited; and a few requests that end on purpose without an answer:
cancelled by the client, past a short client deadline, malformed, or restricted data that no model here may
see.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import grpc

from tiergate.server.grpc import DECISION_TRAILER
from tiergate.v1 import tiergate_pb2 as pb
from tiergate.v1 import tiergate_pb2_grpc as pb_grpc

TIMEOUT_S = 10.0  # the client deadline of ordinary requests: far above every route's total_ms
SHORT_TIMEOUT_S = 1.0  # "deadline" requests, on the slow route (whose answer takes ~3 s)
CANCEL_AFTER_S = 0.3  # "cancel" unary requests are cancelled this long after they start
WATCHDOG_S = TIMEOUT_S + 10.0  # a request still running after this is hung: a bug
# Weighted choices: (value, weight).
CALLS = (("unary", 1), ("stream", 1))
TASKS = (
    ("default", 30),
    ("chat", 30),
    ("search", 20),
    ("extract", 10),
    ("summarise", 10),
)
NO_ROUTE = "summarise"  # names no route: NOT_FOUND (only an empty task means `default`)
TENANTS = (("", 30), ("acme", 25), ("globex", 20), ("initech", 20), ("tiny", 5))  # initech: no budget
# Requests meant to end without an answer; the rest are ordinary.
SPECIALS = (("cancel", 2), ("deadline", 2), ("invalid", 1), ("restricted", 1), ("", 94))


@dataclass(frozen=True, slots=True)
class Planned:
    index: int
    call: str  # unary or stream
    task: str
    tenant: str
    special: str  # "" or one of SPECIALS


@dataclass(slots=True)
class Outcome:
    """How one request ended: an answer (status OK) or an error, and what was wrong with it, if anything."""

    planned: Planned
    status: str  # "OK", a grpc.StatusCode name, or "HUNG"
    route: str = ""
    served_by: str = ""
    from_server: bool = False  # an error that carried tiergate's decision trailer
    detail: str = ""
    problems: list[str] = field(default_factory=list)  # an answer that is not whole, not exactly one...


class Traffic:
    """Plans and sends the soak's requests; `reply` is the text every whole answer must have."""

    def __init__(self, channel: grpc.aio.Channel, reply: str, seed: int = 0) -> None:
        self.stub = pb_grpc.TiergateStub(channel)
        self.reply = reply
        self._random = random.Random(seed)
        self._next = 0

    def plan(self) -> Planned:
        pick = self._pick
        special = pick(SPECIALS)
        task = "slow" if special in ("cancel", "deadline") else pick(TASKS)
        planned = Planned(self._next, pick(CALLS), task, pick(TENANTS), special)
        self._next += 1
        return planned

    def _pick(self, choices: tuple[tuple[str, int], ...]) -> str:
        values, weights = zip(*choices, strict=True)
        return self._random.choices(values, weights)[0]

    async def run(self, seconds: float, rate: float) -> list[Outcome]:
        """Sends `seconds * rate` requests, one every 1/rate s, and returns their outcomes once all ended."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = []
        for i in range(round(seconds * rate)):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.send(self.plan())))
        return list(await asyncio.gather(*tasks))

    async def send(self, planned: Planned) -> Outcome:
        """One request, to its end; a request that does not end within WATCHDOG_S is HUNG."""
        try:
            async with asyncio.timeout(WATCHDOG_S):
                if planned.call == "unary":
                    return await self._unary(planned)
                return await self._stream(planned)
        except TimeoutError:
            return Outcome(planned, "HUNG", problems=[f"no answer and no error within {WATCHDOG_S:g} s"])
        except grpc.aio.AioRpcError as err:
            return _error(planned, err)

    def request(self, planned: Planned) -> pb.CompleteRequest:
        if planned.special == "invalid":
            return pb.CompleteRequest(task=planned.task, tenant=planned.tenant)
        sensitivity = pb.RESTRICTED if planned.special == "restricted" else pb.SENSITIVITY_UNSPECIFIED
        text = f"Please summarise the weekly status notes, item {planned.index}"
        return pb.CompleteRequest(
            task=planned.task,
            tenant=planned.tenant,
            sensitivity=sensitivity,
            messages=[pb.Message(role="user", content=text)],
        )

    def _timeout(self, planned: Planned) -> float:
        return SHORT_TIMEOUT_S if planned.special == "deadline" else TIMEOUT_S

    async def _unary(self, planned: Planned) -> Outcome:
        call = self.stub.Complete(self.request(planned), timeout=self._timeout(planned))
        if planned.special == "cancel":
            await asyncio.sleep(CANCEL_AFTER_S)
            if call.cancel():
                try:
                    await call
                except asyncio.CancelledError:
                    return Outcome(planned, "CANCELLED")
                return Outcome(planned, "OK", problems=["answered after it was cancelled"])
        response = await call
        outcome = _answer(planned, response.decision)
        if response.text != self.reply:
            outcome.problems.append(f"answer text {response.text!r} is not the whole reply")
        return outcome

    async def _stream(self, planned: Planned) -> Outcome:
        call = self.stub.StreamComplete(self.request(planned), timeout=self._timeout(planned))
        if planned.special == "cancel":
            first = await call.read()
            if first is grpc.aio.EOF:
                return Outcome(planned, "OK", problems=["the stream ended before its first chunk"])
            call.cancel()
            return Outcome(planned, "CANCELLED")
        text: list[str] = []
        decisions: list[tuple[int, pb.Decision]] = []
        chunks = 0
        async for chunk in call:
            text.append(chunk.text)
            if chunk.HasField("decision"):
                decisions.append((chunks, chunk.decision))
            chunks += 1
        if not decisions:
            return Outcome(
                planned, "NO_ANSWER", problems=["the stream ended with neither a decision nor an error"]
            )
        outcome = _answer(planned, decisions[-1][1])
        if len(decisions) > 1:
            outcome.problems.append(f"{len(decisions)} decisions in one stream")
        if decisions[-1][0] != chunks - 1:
            outcome.problems.append("chunks after the decision")
        if "".join(text) != self.reply:
            outcome.problems.append(f"streamed text {''.join(text)!r} is not the whole reply")
        return outcome


def _answer(planned: Planned, decision: pb.Decision) -> Outcome:
    outcome = Outcome(planned, "OK", route=decision.route, served_by=decision.served_by)
    if not decision.served_by:
        outcome.problems.append("an answer whose decision names no model")
    return outcome


def _error(planned: Planned, err: grpc.aio.AioRpcError) -> Outcome:
    trailers = dict(err.trailing_metadata() or ())
    route = ""
    raw = trailers.get(DECISION_TRAILER)
    if isinstance(raw, bytes):
        route = pb.Decision.FromString(raw).route
    return Outcome(
        planned,
        err.code().name,
        route=route,
        from_server=raw is not None,
        detail=(err.details() or "")[:300],
    )
