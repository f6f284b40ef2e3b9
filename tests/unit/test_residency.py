"""policy/residency.py and its place in the planner: tags, tenant and request constraints, fail closed."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate.analysis import Analysis
from tiergate.config import ConfigError, parse, resolve
from tiergate.errors import InvalidRequest, PolicyBlocked, SensitiveDataBlocked
from tiergate.policy.residency import request_constraints
from tiergate.request import Message, Request, Sensitivity
from tiergate.routing import Planner


def hosted(region: str | None, **tags: str) -> dict[str, Any]:
    all_tags = {**tags, **({"region": region} if region else {})}
    return {"provider": "openai", "model": "m", "api_key": "k", "tags": all_tags}


MODELS: dict[str, Any] = {
    "us": hosted("us"),
    "eu": hosted("eu"),
    "eu_beta": hosted("eu", env="experimental"),
    "ch": hosted("ch"),
    "untagged": hosted(None),
    "local": {"provider": "llama_cpp", "path": "embedded", "tags": {"region": "eu"}},
}
CHAIN = ["us", "eu_beta", "eu", "ch", "untagged", "local"]
TENANTS: dict[str, Any] = {
    "acme": {"regions": ["eu"]},
    "swiss": {"regions": ["ch", "eu"], "forbidden_tags": {"env": ["experimental"]}},
    "bank": {"models": ["eu", "local"]},
    "default": {"forbidden_tags": {"env": ["experimental"]}},
}


def planner(tenants: dict[str, Any] | None = None) -> Planner:
    data = {"models": MODELS, "routes": {"default": {"chain": CHAIN}}, "tenants": TENANTS}
    if tenants is not None:
        data["tenants"] = tenants
    return Planner(resolve(parse(data), {}), {}, lambda _: 0)


def req(tenant: str = "", **metadata: str) -> Request:
    return Request("", [Message("user", "hi")], tenant=tenant, metadata=metadata)


def analysis(sensitivity: Sensitivity = Sensitivity.PUBLIC) -> Analysis:
    return Analysis(10, [], sensitivity, "", "")


@pytest.mark.parametrize(
    ("request_", "kept"),
    [
        (req("acme"), ["eu_beta", "eu", "local"]),
        (req("swiss"), ["eu", "ch", "local"]),
        (req("bank"), ["eu", "local"]),
        # A tenant without an entry gets `default`'s; a request without a tenant counts as `default`.
        (req("someone"), ["us", "eu", "ch", "untagged", "local"]),
        (req(""), ["us", "eu", "ch", "untagged", "local"]),
        # The request narrows its tenant's constraints...
        (req("swiss", **{"tiergate.regions": "ch"}), ["ch"]),
        (req("acme", **{"tiergate.forbidden_tags": "env=experimental"}), ["eu", "local"]),
        (req("bank", **{"tiergate.models": "local"}), ["local"]),
        # ...and cannot widen them: both apply.
        (req("acme", **{"tiergate.regions": "eu,us"}), ["eu_beta", "eu", "local"]),
        (req("bank", **{"tiergate.models": "us,eu"}), ["eu"]),
    ],
)
def test_constraints_filter_the_chain(request_: Request, kept: list[str]) -> None:
    plan = planner().plan(request_, analysis())
    assert [c.name for c in plan.candidates] == kept
    assert sorted(s.model for s in plan.skipped) == sorted(set(CHAIN) - set(kept))


def test_every_skip_names_its_reason_and_who_set_it() -> None:
    plan = planner().plan(req("swiss", **{"tiergate.models": "ch,eu_beta,untagged"}), analysis())
    reasons = {s.model: s.reason for s in plan.skipped}
    assert reasons == {
        "us": "region 'us' is not among the regions tenant 'swiss' allows (ch, eu)",
        "eu_beta": "tag env=experimental is forbidden by tenant 'swiss'",
        "eu": "not an approved model of the request",
        "untagged": "has no region tag; tenant 'swiss' allows only region ch, eu",
        "local": "not an approved model of the request",
    }
    assert [c.name for c in plan.candidates] == ["ch"]
    reasons = {s.model: s.reason for s in planner().plan(req("acme"), analysis()).skipped}
    assert reasons["us"] == "region 'us' is not among the regions tenant 'acme' allows (eu)"


@pytest.mark.parametrize(
    "request_",
    [
        req("acme", **{"tiergate.regions": "us"}),  # the request asks for a region its tenant forbids
        req("bank", **{"tiergate.models": "us"}),
        req("swiss", **{"tiergate.regions": "eu", "tiergate.models": "eu_beta"}),
    ],
)
def test_no_model_left_fails_closed(request_: Request) -> None:
    with pytest.raises(PolicyBlocked) as info:
        planner().plan(request_, analysis())
    assert "was not forwarded" in str(info.value)


def test_restricted_data_is_checked_first() -> None:
    # Restricted data on a tenant whose only allowed models are hosted: the sensitivity error wins.
    with pytest.raises(SensitiveDataBlocked):
        planner().plan(req("bank", **{"tiergate.models": "eu"}), analysis(Sensitivity.RESTRICTED))
    plan = planner().plan(req("acme"), analysis(Sensitivity.RESTRICTED))
    assert [c.name for c in plan.candidates] == ["local"]


def test_no_policy_keeps_everything() -> None:
    plan = planner({}).plan(req("acme"), analysis())
    assert [c.name for c in plan.candidates] == CHAIN and not plan.skipped


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"tiergate.regions": "eu,,us"}, "empty item"),
        ({"tiergate.regions": ""}, "empty item"),
        ({"tiergate.forbidden_tags": "experimental"}, "not KEY=VALUE"),
        ({"tiergate.forbidden_tags": "env="}, "not KEY=VALUE"),
        ({"tiergate.models": ",".join(f"m{i}" for i in range(65))}, "more than 64"),
    ],
)
def test_malformed_request_constraints(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        request_constraints(metadata)


def test_unrelated_metadata_is_no_constraint() -> None:
    assert request_constraints({"conversation": "c1"}) is None


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        ({"acme": {"models": ["nope"]}}, r"tenants.acme.models\[0\]: unknown model 'nope'"),
        ({"acme": {"regions": []}}, "tenants.acme.regions"),
        ({"acme": {"region": ["eu"]}}, "tenants.acme.region: unknown key"),
    ],
)
def test_config_errors(tenants: dict[str, Any], message: str) -> None:
    data = {"models": MODELS, "routes": {"default": {"chain": CHAIN}}, "tenants": tenants}
    with pytest.raises(ConfigError, match=message):
        resolve(parse(data), {})
