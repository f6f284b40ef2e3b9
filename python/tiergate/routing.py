"""The policy engine: Request + Analysis + live state -> Plan (ordered attempts and their time limits).

Filters, in order: sensitivity (restricted data only to on-device models; none left fails closed), residency
and approval policy (`policy/residency.py`; none left fails closed too), capability (tools, vision, JSON
output, penalties: what the request needs and the model cannot take), context window, the request's cost
limit. Images count towards the prompt by each provider's published rule of thumb (`IMAGE_TOKENS`), since the
rules' token count sees text only. A chain step that names a pool expands into the members the filters keep,
in the order `policy/pools.py` chooses (the chosen member, then the rest of the pool as the step's own
fallback). Ordering by the route's objective: `chain` (as configured), `cost` (token counts x price table) or
`latency` (live TTFT and tokens/s, and the local model's queue); a pool's members stay together in their own
order. A request the rules call trivial goes to an on-device model of the route first. Circuit breakers are
consulted by dispatch at the moment of each attempt, because asking for permission is what moves an OPEN
breaker to HALF_OPEN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tiergate.analysis import Analysis
from tiergate.config import Config, ModelConfig, RouteConfig
from tiergate.errors import InvalidRequest, PolicyBlocked, SensitiveDataBlocked, UnknownTask
from tiergate.model_stats import ModelStats
from tiergate.policy.canary import BASELINE, CANARY, CanaryController
from tiergate.policy.pools import PoolSelector
from tiergate.policy.residency import policy_for
from tiergate.request import Request, Sensitivity, Skip

# Output length assumed for cost and latency predictions when the request sets no max_output_tokens.
EXPECTED_OUTPUT_TOKENS = 256
# Prompt tokens an image is estimated at, before the provider reports the real count. OpenAI: 85 + 170 per
# 512-px tile, 765 for a 1024x1024 image in high detail (85 in low); Anthropic: width x height / 750, about
# 1600 for the largest image it takes without resizing (1.15 megapixels). Image sizes are not read: these are
# the typical cases, an approximation.
IMAGE_TOKENS = {"openai": 765, "anthropic": 1600, "llama_cpp": 0}
LOW_DETAIL_IMAGE_TOKENS = 85
# Why a request needs each capability, as the Decision's skip reasons say it.
NEEDS = {
    "tools": "tools or tool calls",
    "vision": "images",
    "json_schema": "a json_schema answer",
    "json_object": "a json_object answer",
    "penalties": "presence/frequency penalties",
}


def needs(request: Request) -> list[str]:
    """The capabilities a request needs (keys of `NEEDS`), in a stable order."""
    out = []
    if request.tools:
        out.append("tools")
    else:
        for m in request.messages:  # a loop, not any(genexpr): this runs for every request
            if m.tool_calls or m.role == "tool":
                out.append("tools")
                break
    if request.image_count:
        out.append("vision")
    if request.json_schema:
        out.append("json_schema")
    elif request.json_object:
        out.append("json_object")
    if request.presence_penalty or request.frequency_penalty:
        out.append("penalties")
    return out


def image_tokens(provider: str, request: Request) -> int:
    """The prompt tokens a request's images are estimated at on a provider's models."""
    per_image = IMAGE_TOKENS.get(provider, 0)
    return sum(
        LOW_DETAIL_IMAGE_TOKENS if provider == "openai" and image.detail == "low" else per_image
        for m in request.messages
        for image in m.images
    )


@dataclass(slots=True)
class Candidate:
    name: str
    config: ModelConfig
    est_cost_usd: float
    predicted_ms: float
    step: str = ""  # the chain step it came from: its own name, or its pool's


@dataclass(slots=True)
class Plan:
    route_name: str
    route: RouteConfig
    candidates: list[Candidate]
    skipped: list[Skip] = field(default_factory=list)
    reason: str = ""
    arm: str = ""  # canary rollouts: "canary", "baseline", or "" when the route has none


def estimate_cost(
    model: ModelConfig, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float:
    """USD from the price table. `input_tokens` includes the cached ones, which are priced at
    `cached_input_per_mtok` when the model has one (else like any other input token)."""
    price = model.price
    if cached_input_tokens and price.cached_input_per_mtok is not None:
        cached = min(cached_input_tokens, input_tokens)
        return (
            (input_tokens - cached) * price.input_per_mtok
            + cached * price.cached_input_per_mtok
            + output_tokens * price.output_per_mtok
        ) / 1e6
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1e6


class Planner:
    """Plans requests against one config. Rebuilt (cheaply) when the config is reloaded."""

    def __init__(
        self,
        config: Config,
        stats: Mapping[str, ModelStats],
        jobs_ahead: Callable[[str], int],
        pools: PoolSelector | None = None,
        canaries: CanaryController | None = None,
    ) -> None:
        self._config = config
        self._stats = stats
        self._jobs_ahead = jobs_ahead  # live: requests queued or running on a model (on-device models only)
        self._pools = pools if pools is not None else PoolSelector(config.pools, {}, stats)
        self._canaries = canaries
        # route name -> its (chain step, model) pairs: fixed for this config, so expanded once per route.
        self._route_steps: dict[str, tuple[tuple[str, str], ...]] = {}

    def plan(self, request: Request, analysis: Analysis) -> Plan:
        found = self._config.route(request.task)
        if found is None:
            raise UnknownTask(
                f"task {request.task or 'default'!r} names no route (routes: {self._routes()}); "
                "an empty task means `default`"
            )
        route_name, route = found
        output_tokens = request.max_output_tokens or EXPECTED_OUTPUT_TOKENS
        kept: list[Candidate] = []
        skipped: list[Skip] = []
        restricted = analysis.sensitivity >= Sensitivity.RESTRICTED
        needed = needs(request)
        policy = policy_for(self._config, request)
        policy_skips = 0
        canaries = self._canaries
        arm = canaries.arm(route_name, request) if canaries is not None else ""
        candidate = canaries.candidate(route_name) if canaries is not None and arm else ""
        images = "vision" in needed
        for step, name in self._steps(route_name, route, candidate if arm == CANARY else ""):
            model = self._config.models[name]
            if restricted and not model.is_on_device:
                skipped.append(Skip(name, "restricted data may not leave the device"))
                continue
            refusal = policy.refusal(name, model)
            if refusal is not None:
                skipped.append(Skip(name, refusal))
                policy_skips += 1
                continue
            if needed:
                missing = [NEEDS[n] for n in needed if n not in model.capabilities]
                if missing:
                    skipped.append(Skip(name, f"cannot take {', '.join(missing)}"))
                    continue
            input_tokens = analysis.input_tokens
            if images:
                input_tokens += image_tokens(model.provider, request)
            if input_tokens + (request.max_output_tokens or 1) > model.window:
                skipped.append(
                    Skip(name, f"prompt of {input_tokens} tokens exceeds its {model.window}-token window")
                )
                continue
            cost = estimate_cost(model, input_tokens, output_tokens)
            if request.max_cost_usd > 0 and cost > request.max_cost_usd:
                skipped.append(
                    Skip(name, f"estimated ${cost:.6f} exceeds max_cost_usd ${request.max_cost_usd:.6f}")
                )
                continue
            stats = self._stats.get(name) or ModelStats()
            predicted = stats.predict_ms(output_tokens, self._jobs_ahead(name))
            kept.append(Candidate(name, model, cost, predicted, step))
        why = "; ".join(f"{s.model}: {s.reason}" for s in skipped)
        if restricted and not kept:
            raise SensitiveDataBlocked(
                "the request carries restricted data and no on-device model of route "
                f"{route_name!r} can serve it; it was not forwarded ({why})"
            )
        if policy_skips and not kept:
            raise PolicyBlocked(
                f"the policy of {policy.describe()} leaves no model of route {route_name!r} "
                f"(skipped: {', '.join(s.model for s in skipped)}); the request was not forwarded"
            )
        kept, pool_notes = self._arrange_pools(kept)
        if not kept:  # the request itself rules every model out: asking again cannot help
            raise InvalidRequest(f"no model of route {route_name!r} can take this request ({why})")
        reason = "; ".join([self._order(route, kept, analysis), *pool_notes])
        if arm == CANARY:
            reason, arm = _canary_first(kept, candidate, reason)
        return Plan(route_name, route, kept, skipped, reason, arm)

    def _steps(self, route_name: str, route: RouteConfig, canary: str = "") -> tuple[tuple[str, str], ...]:
        """(chain step, model name) for every model of the route, pool members in config order; a canary
        candidate first."""
        steps = self._route_steps.get(route_name)
        if steps is None:
            steps = tuple((step, name) for step in route.chain for name in self._pools.members(step))
            self._route_steps[route_name] = steps
        return ((canary, canary), *steps) if canary else steps

    def _arrange_pools(self, kept: list[Candidate]) -> tuple[list[Candidate], list[str]]:
        """Each pool's kept members, in the order the pool chooses (they stay where the step is), and a
        note per pool for the Decision's reason."""
        if not self._pools.any:
            return kept, []
        out: list[Candidate] = []
        notes: list[str] = []
        for step, group in _blocks(kept):
            if self._pools.is_pool(step):
                by_name = {c.name: c for c in group}
                group = [by_name[n] for n in self._pools.order(step, [c.name for c in group])]
                notes.append(f"pool {step}: {group[0].name} chosen of {len(group)}")
            out.extend(group)
        return out, notes

    def _order(self, route: RouteConfig, candidates: list[Candidate], analysis: Analysis) -> str:
        reasons = []
        if route.objective == "cost":
            _sort_steps(candidates, lambda c: c.est_cost_usd)  # stable: ties keep chain order
            reasons.append("cheapest first")
        elif route.objective == "latency":
            _sort_steps(candidates, lambda c: c.predicted_ms)
            reasons.append("fastest predicted first")
        else:
            reasons.append("chain order")
        trivial = analysis.complexity == "trivial" or (
            route.trivial_max_tokens is not None and analysis.input_tokens <= route.trivial_max_tokens
        )
        if trivial:
            local = [c for c in candidates if c.config.is_on_device]
            if local:
                candidates[:] = local + [c for c in candidates if not c.config.is_on_device]
                reasons.append("trivial request: on-device first")
        if analysis.sensitivity >= Sensitivity.RESTRICTED:
            reasons.append("restricted data: on-device only")
        return "; ".join(reasons)

    def _routes(self) -> str:
        return ", ".join(sorted(self._config.routes))


def _blocks(candidates: list[Candidate]) -> list[tuple[str, list[Candidate]]]:
    """Consecutive candidates of the same chain step, grouped (a pool's members; a model alone)."""
    out: list[tuple[str, list[Candidate]]] = []
    for candidate in candidates:
        if out and out[-1][0] == candidate.step and candidate.step:
            out[-1][1].append(candidate)
        else:
            out.append((candidate.step, [candidate]))
    return out


def _sort_steps(candidates: list[Candidate], key: Callable[[Candidate], float]) -> None:
    """Sorts the chain's steps by `key` of each step's first candidate; a pool keeps its own order."""
    blocks = _blocks(candidates)
    blocks.sort(key=lambda block: key(block[1][0]))
    candidates[:] = [c for _, group in blocks for c in group]


def _canary_first(candidates: list[Candidate], model: str, reason: str) -> tuple[str, str]:
    """The canary arm tries its candidate first, whatever the objective; a candidate the filters left out
    makes it a baseline request. Returns (reason, arm)."""
    for i, candidate in enumerate(candidates):
        if candidate.name == model:
            candidates.insert(0, candidates.pop(i))
            return f"{reason}; canary arm: {model} first", CANARY
    return f"{reason}; canary arm, but {model} was left out: baseline", BASELINE
