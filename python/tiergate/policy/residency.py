"""Residency and approval policy: which models a tenant's (and a request's) data may reach.

Models carry `tags` (`region: eu`, `env: experimental`, ...). A tenant's entry in `tenants` (or, for a tenant
without one, `tenants.default`) and the request itself each set constraints:

- `regions`: the model's `region` tag must be one of these (a model without a `region` tag is left out);
- `models`: the approved models; any other is left out;
- `forbidden_tags`: a model carrying any of these tags (`{env: [experimental]}`) is left out.

A request narrows its tenant's constraints through metadata (`tiergate.regions: eu,ch`,
`tiergate.models: a,b`, `tiergate.forbidden_tags: env=experimental`); it can never widen them, because both
sets of constraints apply, each on its own. Like restricted data, the policy fails closed: every model left
out is a `Skip` naming the rule and who set it, and a request whose constraints leave no model is refused
(`PolicyBlocked`), never sent elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tiergate.config import Config, ModelConfig, TenantPolicyConfig
from tiergate.errors import InvalidRequest
from tiergate.request import Request

DEFAULT_TENANT = "default"
REGION_TAG = "region"
META_REGIONS = "tiergate.regions"
META_MODELS = "tiergate.models"
META_FORBIDDEN_TAGS = "tiergate.forbidden_tags"
# Bounds on what a request may send: the metadata is client input.
MAX_ITEMS = 64


@dataclass(frozen=True, slots=True)
class Constraints:
    """One party's constraints (the tenant's, or the request's); None: no constraint of that kind."""

    who: str  # "tenant 'acme'" or "the request": named in every Skip reason
    regions: frozenset[str] | None = None
    models: frozenset[str] | None = None
    forbidden_tags: frozenset[tuple[str, str]] = frozenset()

    @property
    def empty(self) -> bool:
        return self.regions is None and self.models is None and not self.forbidden_tags

    def refusal(self, name: str, model: ModelConfig) -> str | None:
        """Why these constraints leave `name` out, or None when they allow it."""
        if self.models is not None and name not in self.models:
            return f"not an approved model of {self.who}"
        if self.regions is not None:
            region = model.tags.get(REGION_TAG)
            allowed = ", ".join(sorted(self.regions))
            if region is None:
                return f"has no region tag; {self.who} allows only region {allowed}"
            if region not in self.regions:
                return f"region {region!r} is not among the regions {self.who} allows ({allowed})"
        for key, value in sorted(self.forbidden_tags):
            if model.tags.get(key) == value:
                return f"tag {key}={value} is forbidden by {self.who}"
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    """Every party's constraints on one request; a model must satisfy all of them."""

    parts: tuple[Constraints, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.parts)

    def refusal(self, name: str, model: ModelConfig) -> str | None:
        for part in self.parts:
            why = part.refusal(name, model)
            if why is not None:
                return why
        return None

    def describe(self) -> str:
        return " and ".join(part.who for part in self.parts)


def tenant_constraints(tenants: Mapping[str, TenantPolicyConfig], tenant: str) -> Constraints | None:
    entry = tenants.get(tenant) or tenants.get(DEFAULT_TENANT)
    if entry is None:
        return None
    constraints = Constraints(
        f"tenant {tenant!r}",
        frozenset(entry.regions) if entry.regions is not None else None,
        frozenset(entry.models) if entry.models is not None else None,
        frozenset((key, value) for key, values in entry.forbidden_tags.items() for value in values),
    )
    return None if constraints.empty else constraints


def request_constraints(metadata: Mapping[str, str]) -> Constraints | None:
    """The request's own constraints, from its metadata.

    Raises:
        InvalidRequest: a constraint is malformed (an empty list, a tag without `=`, too many items).
    """
    regions = _items(metadata, META_REGIONS)
    models = _items(metadata, META_MODELS)
    tags = _items(metadata, META_FORBIDDEN_TAGS)
    forbidden: set[tuple[str, str]] = set()
    for item in tags or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidRequest(f"metadata {META_FORBIDDEN_TAGS}: {item!r} is not KEY=VALUE")
        forbidden.add((key.strip(), value.strip()))
    constraints = Constraints("the request", regions, models, frozenset(forbidden))
    return None if constraints.empty else constraints


_NO_POLICY = Policy()


def policy_for(config: Config, request: Request) -> Policy:
    """The constraints that apply to a request: its tenant's, then its own."""
    # Asked for every request: without tenant entries or request metadata there is nothing to build.
    tenant = tenant_constraints(config.tenants, request.tenant or DEFAULT_TENANT) if config.tenants else None
    own = request_constraints(request.metadata) if request.metadata else None
    if tenant is None and own is None:
        return _NO_POLICY
    return Policy(tuple(part for part in (tenant, own) if part is not None))


def _items(metadata: Mapping[str, str], key: str) -> frozenset[str] | None:
    raw = metadata.get(key)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",")]
    if not all(items):
        raise InvalidRequest(f"metadata {key}: {raw[:80]!r} has an empty item (a comma-separated list)")
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"metadata {key}: more than {MAX_ITEMS} items")
    return frozenset(items)
