"""config.py: strict parsing, errors naming the key, env: secrets, cross references, the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tiergate._native import default_rules as default_rule_pack
from tiergate.config import ConfigError, default_config, load, parse, resolve

ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}


def base() -> dict[str, Any]:
    return {
        "models": {
            "local": {"provider": "llama_cpp", "path": "embedded"},
            "mini": {"provider": "openai", "model": "gpt-5-mini", "api_key": "env:OPENAI_API_KEY"},
        },
        "routes": {"default": {"chain": ["local", "mini"]}},
    }


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = base()
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_change("models.mini.bogus", 1), "models.mini.bogus: unknown key"),
        (with_change("routes.default.chain", []), "routes.default.chain"),
        (with_change("routes.default.ttft_ms", "fast"), "routes.default.ttft_ms"),
        (with_change("routes.default.ttft_ms", -5), "routes.default.ttft_ms"),
        (with_change("routes.default.objective", "vibes"), "routes.default.objective"),
        (with_change("models.mini.provider", "cohere"), "models.mini.provider"),
        (with_change("models.local.path", None), "needs `path`"),
        (with_change("models.mini.model", None), "needs `model`"),
        (with_change("breaker.failure_rate", 150), "breaker.failure_rate"),
        (with_change("listen.grpcc", "x"), "listen.grpcc: unknown key"),
        ({**base(), "rules": [{"id": "r", "regex": "a", "keywords": ["b"]}]}, "exactly one of"),
        ({**base(), "extra_top": 1}, "extra_top: unknown key"),
    ],
)
def test_parse_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_change("routes.default.chain", ["local", "nope"]),
            "routes.default.chain[1]: unknown model 'nope'",
        ),
        (with_change("routes.default.chain", ["mini", "mini"]), "appears twice"),
        (with_change("models.mini.api_key", "env:MISSING_KEY"), "MISSING_KEY is not set"),
        (with_change("models.mini.api_key", None), "models.mini.api_key: missing"),
        (with_change("models.mini.proxy", "socks5://127.0.0.1:1080"), "models.mini.proxy: expected"),
        (with_change("models.mini.proxy", "env:MISSING_PROXY"), "MISSING_PROXY is not set"),
        (
            {**base(), "rules": [{"id": "a", "regex": "x"}, {"id": "a", "keywords": ["y"]}]},
            "rules[1].id: duplicate rule id 'a'",
        ),
    ],
)
def test_resolve_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(parse(data), ENV)
    assert message in str(info.value)


def test_env_secret_is_resolved_and_never_printed() -> None:
    config = resolve(parse(base()), ENV)
    key = config.models["mini"].api_key
    assert key is not None and key.get_secret_value() == "sk-test-openai"
    assert "sk-test-openai" not in repr(config)
    assert "sk-test-openai" not in str(config.models["mini"])


@pytest.mark.parametrize("proxy", ["http://u:pw-secret@proxy:3128", "env:PROXY_URL", "direct"])
def test_model_proxy_is_resolved_and_never_printed(proxy: str) -> None:
    config = resolve(parse(with_change("models.mini.proxy", proxy)), {**ENV, "PROXY_URL": "http://p:3128"})
    value = config.models["mini"].proxy
    assert value is not None
    assert value.get_secret_value() == {"env:PROXY_URL": "http://p:3128"}.get(proxy, proxy)
    assert "pw-secret" not in repr(config)


def test_missing_key_error_does_not_echo_other_secrets() -> None:
    data = with_change("models.mini.api_key", "env:MISSING_KEY")
    with pytest.raises(ConfigError) as info:
        resolve(parse(data), ENV)
    assert "sk-" not in str(info.value)


def test_load_reads_yaml_and_reports_file(tmp_path: Path) -> None:
    path = tmp_path / "tiergate.yaml"
    path.write_text(
        "models:\n  m: {provider: openai, model: x, api_key: k, colour: red}\n"
        "routes: {default: {chain: [m]}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path, ENV)
    assert str(path) in str(info.value) and "models.m.colour: unknown key" in str(info.value)


def test_load_rejects_non_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad, ENV)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yaml", ENV)


def test_architecture_example_parses(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "tiergate.yaml"
    config = load(example, ENV)
    assert config.routes["draft_reply"].hedge_after_ms == 800
    assert config.routes["extract"].validate_ == "json_schema"
    assert config.models["local"].is_on_device and not config.models["mini"].is_on_device


@pytest.mark.parametrize(
    ("env", "models"),
    [
        ({}, ["local"]),
        ({"OPENAI_API_KEY": "k"}, ["local", "openai"]),
        ({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k2"}, ["local", "openai", "anthropic"]),
    ],
)
def test_default_config_adds_hosted_providers_with_keys(env: dict[str, str], models: list[str]) -> None:
    config = default_config(env)
    assert list(config.models) == models
    assert config.routes["default"].chain == models


def test_route_lookup_only_empty_task_means_default() -> None:
    config = resolve(parse(base()), ENV)
    assert config.route("") == ("default", config.routes["default"])
    assert config.route("unknown") is None
    no_default = resolve(parse(with_change("routes", {"only": {"chain": ["mini"]}})), ENV)
    assert no_default.route("unknown") is None


# -- observability and governance keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "value", "message"),
    [
        ("state", "http://cache:6379", "state: Value error, 'http://cache:6379' is not a redis://"),
        ("state_failure", "maybe", "state_failure: Input should be 'open' or 'closed'"),
        ("state_timeout_ms", 0, "state_timeout_ms: Input should be greater than 0"),
        ("telemetry.bogus", True, "telemetry.bogus: unknown key"),
        ("budgets.acme.usd_per_week", 1, "budgets.acme.usd_per_week: unknown key"),
        ("budgets.acme.requests_per_minute", -1, "budgets.acme.requests_per_minute: Input should be greater"),
        ("listen.http", 8080, "listen.http: Input should be a valid string"),
    ],
)
def test_observability_and_governance_keys_are_strict(change: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_change(change, value))
    assert message in str(caught.value)


def test_observability_and_governance_defaults() -> None:
    config = resolve(parse(base()), ENV)
    assert config.listen.http == "127.0.0.1:8080"
    assert (config.state, config.state_failure, config.state_timeout_ms) == (None, "open", 250)
    assert config.telemetry.decision_log is True and config.telemetry.log_content is False
    off = resolve(parse(with_change("listen.http", None)), ENV)
    assert off.listen.http is None
    fleet = resolve(parse(with_change("state", "redis://10.0.0.5:6379/2")), ENV)
    assert fleet.state == "redis://10.0.0.5:6379/2"


# -- the default rule pack ----------------------------------------------------------------------------------


def rule_ids(config_data: dict[str, Any]) -> list[str]:
    return [r.id for r in resolve(parse(config_data), ENV).rules]


def test_default_rules_come_first_and_are_restricted() -> None:
    config = resolve(parse({**base(), "rules": [{"id": "greeting", "keywords": ["hello"]}]}), ENV)
    ids = [r.id for r in config.rules]
    assert ids[0] == "email" and ids[-1] == "greeting" and len(ids) == len(default_rule_pack()) + 1
    assert {r.sensitivity for r in config.rules[:-1]} == {"restricted"}
    assert "email" in [r.id for r in default_config({}).rules]


@pytest.mark.parametrize(
    ("top", "without", "replaced"),
    [
        ({"default_rules": False}, "all", None),
        ({"disabled_rules": ["phone", "ipv4"]}, {"phone", "ipv4"}, None),
        ({"rules": [{"id": "email", "regex": "@corp", "sensitivity": "internal"}]}, set(), "email"),
    ],
)
def test_default_rules_off_disabled_or_replaced(
    top: dict[str, Any], without: Any, replaced: str | None
) -> None:
    everything = rule_ids(base())
    ids = rule_ids({**base(), **top})
    if without == "all":
        assert ids == []
        return
    kept = [i for i in everything if i not in without and i != replaced]
    assert ids == kept + ([replaced] if replaced else [])
    config = resolve(parse({**base(), **top}), ENV)
    if replaced:
        (rule,) = [r for r in config.rules if r.id == replaced]
        assert (rule.regex, rule.sensitivity) == ("@corp", "internal")


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            {"disabled_rules": ["phone", "ssn"]},
            "config: disabled_rules[1]: unknown default rule 'ssn' (default rules: email, phone, ",
        ),
        ({"disabled_rules": ["phone", "phone"]}, "config: disabled_rules[1]: 'phone' is listed twice"),
        (
            {"disabled_rules": ["email"], "rules": [{"id": "email", "regex": "@"}]},
            "config: disabled_rules[0]: 'email' is disabled and also defined in `rules`",
        ),
        (
            {"default_rules": False, "disabled_rules": ["email"]},
            "config: disabled_rules: has no effect with `default_rules: false`",
        ),
    ],
)
def test_default_rule_settings_are_validated(top: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(parse({**base(), **top}), ENV)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("default_rules", "yes please", "default_rules: Input should be a valid boolean"),
        ("disabled_rules", "email", "disabled_rules: Input should be a valid list"),
    ],
)
def test_default_rule_keys_are_typed(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse({**base(), key: value})
    assert message in str(info.value)


@pytest.mark.parametrize(
    "top",
    [{}, {"disabled_rules": ["jwt"]}, {"default_rules": False}, {"rules": [{"id": "ipv4", "regex": "x"}]}],
)
def test_resolving_twice_changes_nothing(top: dict[str, Any]) -> None:
    once = resolve(parse({**base(), **top}), ENV)
    assert resolve(once, ENV).rules == once.rules


# -- listeners: addresses, auth, TLS, shutdown ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "value", "message"),
    [
        ("listen.grpc", "50051", "listen.grpc: Value error, '50051' is not host:port or unix:PATH"),
        ("listen.grpc", "host:99999", "is not host:port"),
        ("listen.grpc", "unix:", "unix: needs a socket path"),
        ("listen.tls_cert", "cert.pem", "listen: Value error, TLS needs both `tls_cert` and `tls_key`"),
        ("listen.auth_token", "", "`auth_token` is empty"),
        ("listen.shutdown_grace_ms", 0, "listen.shutdown_grace_ms: Input should be greater than 0"),
        ("limits.max_concurrent_requests", 0, "limits.max_concurrent_requests: Input should be greater"),
    ],
)
def test_listen_keys_are_checked(change: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_change(change, value))
    assert message in str(caught.value)


def test_auth_token_from_the_environment_is_never_printed() -> None:
    data = parse(with_change("listen.auth_token", "env:TG_TOKEN"))
    config = resolve(data, {**ENV, "TG_TOKEN": "s3cr3t-t0ken"})
    assert config.listen.auth_token is not None
    assert config.listen.auth_token.get_secret_value() == "s3cr3t-t0ken"
    assert "s3cr3t-t0ken" not in repr(config) and "s3cr3t-t0ken" not in str(config.listen)
    with pytest.raises(ConfigError, match=r"listen.auth_token: environment variable TG_TOKEN is not set"):
        resolve(parse(with_change("listen.auth_token", "env:TG_TOKEN")), ENV)


def test_tls_files_must_be_readable(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    data = with_change("listen.tls_cert", str(cert))
    data["listen"]["tls_key"] = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"listen.tls_key: cannot read .*missing.pem: No such file"):
        resolve(parse(data), ENV)
