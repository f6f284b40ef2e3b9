"""Loading a config: `parse` (phase 1: shape and types), `resolve` (phase 2: cross references, `env:`
secrets, per-provider defaults, the default rule pack), `load` (a file) and `default_config` (the embedded
default)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    SecretStr,
    ValidationError,
)

from tiergate._native import RuleError, RuleSet
from tiergate._native import default_rules as default_rule_pack
from tiergate.config.models import (
    DEFAULT_HOSTED,
    EMBEDDED,
    ENV_PREFIX,
    ON_DEVICE_PROVIDERS,
    Config,
    ConfigError,
    Listen,
    ModelConfig,
    PoolConfig,
    RouteConfig,
    RuleConfig,
)


def parse(data: Any, *, source: str = "config") -> Config:
    """Phase 1: shape and types. Raises ConfigError naming the first bad key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, data)) from None


def _unencodable_key(node: Any, loc: tuple[int | str, ...] = ()) -> tuple[int | str, ...] | None:
    """The location of the first mapping key that is not valid UTF-8 (pydantic reports those without one)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and not key.isascii():
                try:
                    key.encode("utf-8")
                except UnicodeEncodeError:
                    return (*loc, key)
            found = _unencodable_key(value, (*loc, key if isinstance(key, int | str) else str(key)))
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _unencodable_key(value, (*loc, i))
            if found is not None:
                return found
    return None


def resolve(config: Config, environ: Mapping[str, str] | None = None, *, source: str = "config") -> Config:
    """Phase 2: cross references and secrets. Returns the runtime config."""
    env = os.environ if environ is None else environ
    listen = _resolve_listen(config.listen, env, source)
    models = dict(config.models)
    for name, model in config.models.items():
        if model.api_key is not None:
            key = _secret(model.api_key.get_secret_value(), env, f"{source}: models.{name}.api_key")
            models[name] = model.model_copy(update={"api_key": SecretStr(key)})
        elif model.provider not in ON_DEVICE_PROVIDERS:
            raise ConfigError(f"{source}: models.{name}.api_key: missing (use `env:NAME` to read it)")
        if model.proxy is not None:
            proxy = _secret(model.proxy.get_secret_value(), env, f"{source}: models.{name}.proxy")
            if proxy != "direct" and not proxy.startswith(("http://", "https://")):
                raise ConfigError(f"{source}: models.{name}.proxy: expected `direct` or an http(s):// URL")
            models[name] = models[name].model_copy(update={"proxy": SecretStr(proxy)})
    seen_rules: set[str] = set()
    for i, rule in enumerate(config.rules):
        if rule.id in seen_rules:
            raise ConfigError(f"{source}: rules[{i}].id: duplicate rule id {rule.id!r}")
        seen_rules.add(rule.id)
        try:
            RuleSet([rule.native()])  # compiles the pattern alone (~0.4 ms), so its error names the rule
        except RuleError as exc:  # one line: the regex crate's message draws a caret under the pattern
            detail = " ".join(line.strip() for line in str(exc).splitlines() if line.strip(" ^"))
            raise ConfigError(f"{source}: rules[{i}]: {detail}") from None
    rules = _with_default_rules(config, seen_rules, source)
    for route_name, route in config.routes.items():
        _check_chain(f"{source}: routes.{route_name}", route, models, config.pools, embedding=False)
        if route.classify_with is not None and route.classify_with not in models:
            raise ConfigError(
                f"{source}: routes.{route_name}.classify_with: unknown model {route.classify_with!r}"
            )
        examples = route.classify_examples
        if examples is not None and not _on_device_embedding(models, examples.model):
            raise ConfigError(
                f"{source}: routes.{route_name}.classify_examples.model: {examples.model!r} is not an "
                "on-device embedding model (classifying embeds every request's text)"
            )
        if route.classify_with is not None and models[route.classify_with].is_embedding:
            raise ConfigError(
                f"{source}: routes.{route_name}.classify_with: {route.classify_with!r} is an embedding model"
            )
        if route.classify_with is not None and not models[route.classify_with].is_on_device:
            raise ConfigError(
                f"{source}: routes.{route_name}.classify_with: {route.classify_with!r} is not an on-device "
                "model (classifying would send every request's text to it)"
            )
    for route_name, route in config.embedding_routes.items():
        key = f"{source}: embedding_routes.{route_name}"
        _check_chain(key, route, models, {}, embedding=True)
        for field in (
            "ttft_ms",
            "hedge_after_ms",
            "validate_",
            "trivial_max_tokens",
            "classify_with",
            "classify_examples",
            "canary",
        ):
            if getattr(route, field) is not None:
                raise ConfigError(f"{key}.{field.rstrip('_')}: does not apply to an embedding route")
    semantic = config.cache.semantic if config.cache is not None else None
    if semantic is not None and not _on_device_embedding(models, semantic.model):
        raise ConfigError(
            f"{source}: cache.semantic.model: {semantic.model!r} is not an on-device embedding model (a "
            "semantic lookup embeds the request's text, which must not leave the device to find an answer)"
        )
    _check_traffic(config, source)
    return config.model_copy(update={"listen": listen, "models": models, "rules": rules})


def _on_device_embedding(models: Mapping[str, ModelConfig], name: str) -> bool:
    """Whether `name` is a configured on-device embedding model (what may embed a request's text)."""
    model = models.get(name)
    return model is not None and model.is_embedding and model.is_on_device


def _check_chain(
    key: str,
    route: RouteConfig,
    models: Mapping[str, ModelConfig],
    pools: Mapping[str, PoolConfig],
    *,
    embedding: bool,
) -> None:
    """Every step of the chain is a model or a pool; every model appears once and is of the route's kind."""
    seen: set[str] = set()
    for i, step in enumerate(route.chain):
        at = f"{key}.chain[{i}]"
        if step not in models and step not in pools:
            known = ", ".join(sorted(models))
            raise ConfigError(f"{at}: unknown model {step!r} (models: {known})")
        for model_name in pools[step].members if step in pools else (step,):
            if model_name in seen:
                raise ConfigError(f"{at}: model {model_name!r} appears twice in the chain")
            if model_name in models and models[model_name].is_embedding != embedding:
                raise ConfigError(
                    f"{at}: {model_name!r} is an embedding model (list it in `embedding_routes`)"
                    if not embedding
                    else f"{at}: {model_name!r} is a chat model, not an embedding model"
                )
            seen.add(model_name)


def _check_traffic(config: Config, source: str) -> None:
    """Pools and tenant policies name models that exist; a pool's name is not also a model's."""
    known = ", ".join(sorted(config.models))
    for pool_name, pool in config.pools.items():
        if pool_name in config.models:
            raise ConfigError(f"{source}: pools.{pool_name}: a model has the same name")
        for member in pool.members:
            if member not in config.models:
                raise ConfigError(
                    f"{source}: pools.{pool_name}.members: unknown model {member!r} (models: {known})"
                )
    for route_name, route in config.routes.items():
        if route.canary is None:
            continue
        key = f"{source}: routes.{route_name}.canary.model"
        if route.canary.model not in config.models:
            raise ConfigError(f"{key}: unknown model {route.canary.model!r} (models: {known})")
        members: set[str] = set()
        for step in route.chain:
            members.update(config.pools[step].members if step in config.pools else (step,))
        if route.canary.model in members:
            raise ConfigError(f"{key}: {route.canary.model!r} is already in the chain (the baseline)")
    for tenant, policy in config.tenants.items():
        for i, model_name in enumerate(policy.models or ()):
            if model_name not in config.models:
                raise ConfigError(
                    f"{source}: tenants.{tenant}.models[{i}]: unknown model {model_name!r} (models: {known})"
                )


def _resolve_listen(listen: Listen, env: Mapping[str, str], source: str) -> Listen:
    """The auth token's `env:` secret, and TLS files that exist and are readable."""
    update: dict[str, Any] = {}
    if listen.auth_token is not None:
        token = _secret(listen.auth_token.get_secret_value(), env, f"{source}: listen.auth_token")
        update["auth_token"] = SecretStr(token)
    for key in ("tls_cert", "tls_key"):
        path = getattr(listen, key)
        if path is None:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: listen.{key}: cannot read {path}: {exc.strerror}") from None
    return listen.model_copy(update=update) if update else listen


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Reads, parses and resolves a YAML config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for a date that is no date
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    return resolve(parse(data, source=source), environ, source=source)


def default_config(environ: Mapping[str, str] | None = None) -> Config:
    """The embedded default: the bundled local model, plus each hosted provider whose key is set."""
    env = os.environ if environ is None else environ
    models: dict[str, Any] = {"local": {"provider": "llama_cpp", "path": EMBEDDED, "context_window": 8192}}
    for provider, (key_var, model_id, price_in, price_out) in DEFAULT_HOSTED.items():
        if env.get(key_var):
            models[provider] = {
                "provider": provider,
                "model": model_id,
                "api_key": f"{ENV_PREFIX}{key_var}",
                "price": {"input_per_mtok": price_in, "output_per_mtok": price_out},
            }
    chain = list(models)
    data = {"models": models, "routes": {"default": {"chain": chain, "objective": "chain"}}}
    return resolve(parse(data, source="embedded default"), env, source="embedded default")


def _with_default_rules(config: Config, own_ids: set[str], source: str) -> list[RuleConfig]:
    """The rules to compile: the default pack, less `disabled_rules` and the rules `rules` replaces by id,
    then the config's own rules. Resolving the result again changes nothing (its pack rules replace the
    pack's)."""
    if not config.default_rules:
        if config.disabled_rules:
            raise ConfigError(f"{source}: disabled_rules: has no effect with `default_rules: false`")
        return list(config.rules)
    pack = default_rule_pack()
    known = [r.id for r in pack]
    disabled: set[str] = set()
    for i, rule_id in enumerate(config.disabled_rules):
        key = f"{source}: disabled_rules[{i}]"
        if rule_id not in known:
            raise ConfigError(f"{key}: unknown default rule {rule_id!r} (default rules: {', '.join(known)})")
        if rule_id in disabled:
            raise ConfigError(f"{key}: {rule_id!r} is listed twice")
        if rule_id in own_ids:
            raise ConfigError(f"{key}: {rule_id!r} is disabled and also defined in `rules`; keep one of them")
        disabled.add(rule_id)
    kept = [
        RuleConfig(
            id=r.id,
            regex=r.rule.regex,
            case_insensitive=r.rule.case_insensitive,
            validator=r.rule.validator,
            sensitivity="restricted",
        )
        for r in pack
        if r.id not in disabled and r.id not in own_ids
    ]
    return [*kept, *config.rules]


def _secret(value: str, env: Mapping[str, str], key: str) -> str:
    if not value.startswith(ENV_PREFIX):
        return value
    var = value[len(ENV_PREFIX) :]
    resolved = env.get(var)
    if not resolved:
        raise ConfigError(f"{key}: environment variable {var} is not set")
    return resolved


def _describe(exc: ValidationError, source: str, data: Any) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = _path(err["loc"])
        msg = err["msg"]
        if not loc and err["type"] == "string_unicode":  # pydantic cannot name a key that is not UTF-8
            bad_key = _unencodable_key(data)
            if bad_key is not None:
                loc, msg = _path(bad_key), "not valid UTF-8 (a lone surrogate)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
    more = len(exc.errors()) - 5
    if more > 0:
        lines.append(f"... and {more} more")
    return "\n".join(lines)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
