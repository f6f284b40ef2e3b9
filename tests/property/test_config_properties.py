"""Config loading on arbitrary and mutated input: a Config, or a ConfigError whose message names the key.

Phase 1 (`parse`) and phase 2 (`resolve`) see YAML-shaped data (mappings, lists, scalars of every type)
and mutations of a complete valid config: keys deleted, values replaced by anything, unknown keys added.
Whatever comes back is a Config or a ConfigError (never a pydantic ValidationError, KeyError, TypeError...),
and every line of the error starts with the path of a key. A config that resolves then compiles its rules
(`Analyzer`, as `Sidecar.start` does) or fails with RuleError. `load` sees mutated YAML text.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.property.hypothesis_profiles import property_settings
from tiergate._native import RuleError
from tiergate.analysis import Analyzer
from tiergate.config import Config, ConfigError, load, parse, resolve

ENV = {"OPENAI_KEY": "sk-test", "ANTHROPIC_KEY": "sk-ant-test"}

# Every section and most options, each valid.
VALID: dict[str, Any] = {
    "listen": {"grpc": "127.0.0.1:50051", "http": "127.0.0.1:8080"},
    "models": {
        "local": {"provider": "llama_cpp", "path": "embedded", "context_window": 8192, "threads": 2},
        "mini": {
            "provider": "openai",
            "model": "gpt-5-mini",
            "base_url": "https://api.openai.com/v1",
            "api_key": "env:OPENAI_KEY",
            "headers": {"X-Team": "core"},
            "price": {"input_per_mtok": 0.25, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.025},
            "encoding": "o200k_base",
        },
        "sonnet": {
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "api_key": "env:ANTHROPIC_KEY",
            "encoding": "cl100k_base",
            "request_timeout_ms": 60000,
        },
    },
    "rules": [
        {"id": "greeting", "keywords": ["hello", "thanks"], "complexity": "trivial"},
        {"id": "project", "regex": r"\bPRJ-[0-9]{4}\b", "sensitivity": "internal", "case_insensitive": True},
        {"id": "card_ids", "regex": r"[0-9]{16}", "validator": "luhn", "sensitivity": "restricted"},
    ],
    "default_rules": True,
    "disabled_rules": ["ipv6"],
    "routes": {
        "default": {"chain": ["local", "mini", "sonnet"], "objective": "cost", "classify_with": "local"},
        "fast": {"chain": ["mini"], "ttft_ms": 300, "total_ms": 2000, "hedge_after_ms": 800, "retries": 2},
        "extract": {"chain": ["local", "mini"], "validate": "json_schema", "trivial_max_tokens": 20},
    },
    "breaker": {"failure_rate": 50, "slow_call_ms": 10000, "window": 20, "min_calls": 5, "open_ms": 30000},
    "budgets": {"default": {"usd_per_day": 10, "requests_per_minute": 60}, "team-a": {"usd_per_month": 100}},
    "limits": {"max_request_bytes": 1048576, "max_concurrent_requests": 64, "max_output_tokens": 4096},
    "state": "redis://127.0.0.1:6379/0",
    "state_failure": "closed",
    "state_timeout_ms": 250,
    "telemetry": {"decision_log": True, "log_content": False, "service_name": "tiergate"},
}

# Mappings whose keys are names the config chooses (models, routes, tenants, headers), not options.
FREE_KEYS = {"models", "routes", "budgets", "headers"}


def option_names(model: type[BaseModel] = Config) -> set[str]:
    """Every option name and alias of the config schema, nested models included."""
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names |= {name, field.alias or name}
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            for inner in (arg, *getattr(arg, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not model:
                    names |= option_names(inner)
    return names


OPTIONS = sorted(option_names())
NAMES = ["local", "mini", "sonnet", "default", "fast", "extract", "team-a"]
# Scalars that mean something somewhere in the schema, or nearly do.
INTERESTING = [
    *NAMES, "env:OPENAI_KEY", "env:NOPE", "env:", "embedded", "redis://x", "http://x", "o200k_base",
    "p50k", "json_schema", "cost", "latency", "luhn", "iban", "restricted", "trivial", "open", "closed",
    "ipv4", "email", "(", "a*", "", " ", "0", "-1", "1e309", ".nan",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and the infinities included
    st.text(max_size=12),
    st.sampled_from(INTERESTING),
)
# Keys are written into messages as they are, so a key holding a newline would split a message's line. Lone
# surrogates (which YAML's "\ud800" escape produces) are included: they are named too.
KEYS = st.one_of(
    st.sampled_from(OPTIONS + NAMES),
    st.text(st.characters(exclude_characters="\n"), max_size=8),
    st.integers(-2, 2),
)
YAMLISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)


def key_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value below `node` (dict keys and list indices)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key)
            yield from key_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*path, i)
            yield from key_paths(value, (*path, i))


def option_mappings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every mapping of options (a section, a model, a rule...), the top level included."""
    if isinstance(node, dict):
        if not path or path[-1] not in FREE_KEYS:
            yield path
        for key, value in node.items():
            yield from option_mappings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from option_mappings(value, (*path, i))


def dotted(path: tuple[Any, ...]) -> str:
    """A path as error messages write it: `rules[0].id`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """VALID after one to four mutations: a value replaced, a key deleted, a key added, a list emptied."""
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(key_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = at(data, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "empty"]))
        if action == "replace":
            parent[last] = draw(YAMLISH)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(YAMLISH)
        elif action == "empty" and isinstance(parent[last], list | dict):
            parent[last] = type(parent[last])()
    return data


def location_prefixes(data: Any) -> set[str]:
    """How an error line may begin: with a schema option or with a key of the input, as `_path` writes it."""
    keys = list(data) if isinstance(data, dict) else []
    return {*OPTIONS, *(f"[{k}]" if isinstance(k, int) else str(k) for k in keys)}


def assert_names_a_key(error: ConfigError, data: Any) -> None:
    prefixes = location_prefixes(data)
    for line in str(error).split("\n"):
        if re.fullmatch(r"\.\.\. and \d+ more", line):
            continue
        location = line.removeprefix("config: ")
        if location.startswith("the top level must be a mapping"):
            assert not isinstance(data, dict)
            continue
        assert any(location.startswith(prefix) for prefix in prefixes), line


def load_data(data: Any) -> Config | None:
    """parse, resolve and compile the rules, as loading does; None for a ConfigError or RuleError."""
    try:
        config = resolve(parse(data), ENV)
    except ConfigError as exc:
        assert_names_a_key(exc, data)
        return None
    assert isinstance(config, Config)
    try:
        Analyzer(config.rules)
    except RuleError as exc:
        assert any(f'"{rule.id}"' in str(exc) for rule in config.rules), str(exc)
    return config


def test_the_valid_config_is_valid() -> None:
    # Otherwise the mutations below would start from an error.
    config = load_data(VALID)
    assert config is not None and set(config.models) == {"local", "mini", "sonnet"}


@property_settings(500)
@given(data=st.one_of(YAMLISH, st.dictionaries(KEYS, YAMLISH, max_size=8)))
def test_any_data_is_a_config_or_a_config_error(data: Any) -> None:
    load_data(data)


@property_settings(500)
@given(data=mutated())
def test_mutated_configs_are_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    load_data(data)


@property_settings(300)
@given(
    data=st.data(), key=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=10)
)
def test_an_unknown_key_anywhere_is_named(data: st.DataObject, key: str) -> None:
    config = copy.deepcopy(VALID)
    path = data.draw(st.sampled_from(list(option_mappings(config))))
    mapping = at(config, path)
    assume(key not in OPTIONS)
    mapping[key] = data.draw(YAMLISH)
    with pytest.raises(ConfigError) as caught:
        resolve(parse(config), ENV)
    assert f"config: {dotted((*path, key))}: unknown key" in str(caught.value).split("\n"), str(caught.value)


# -- YAML text ---------------------------------------------------------------------------------------------

VALID_YAML = yaml.safe_dump(VALID, sort_keys=False)
# YAML that PyYAML itself turns into exceptions other than YAMLError (a date that is no date, deep nesting).
KNOWN_BAD_YAML = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[\[{]{20,}")
YAML_SNIPPETS = st.sampled_from(
    [": ", "- ", "{", "}", "[", "]", "&a ", "*a", "!!str ", "!!int ", "!!binary ", "!!python/none", "? ",
     "|\n", ">\n", "---\n", "...\n", "%YAML 1.1\n", "\t", "'", '"', "#", "\n  ", "0x1F", "0o17", "1_000",
     ".inf", "~", "yes", "no", "<<: *a", "@", "`", "\x00", "\ufeff"]
)  # fmt: skip


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    """The valid config's YAML with a few snippets (YAML syntax, tags, anchors) or random text spliced in."""
    text = VALID_YAML
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        text = text[:start] + draw(st.one_of(YAML_SNIPPETS, st.text(max_size=6))) + text[end:]
    return text


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs")


def load_text(path: Path, text: str) -> Config | None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load(path, ENV)
    except ConfigError as exc:
        # Every message starts with the file's path.
        assert str(exc).startswith(f"{path}: "), str(exc)
        return None


@property_settings(300)
@given(text=mutated_yaml())
def test_mutated_yaml_files_load_or_are_a_config_error(config_dir: Path, text: str) -> None:
    load_text(config_dir / "tiergate.yaml", text)


@pytest.mark.parametrize(
    "text",
    [
        VALID_YAML.replace("state_timeout_ms: 250", "state_timeout_ms: 2024-02-30"),
        VALID_YAML.replace("state_timeout_ms: 250", "state_timeout_ms: 2024-13-01"),
        VALID_YAML + "extra: " + "[" * 2000 + "]" * 2000 + "\n",
    ],
    ids=["day out of range", "month out of range", "deep nesting"],
)
def test_yaml_that_pyyaml_rejects_with_other_exceptions_is_a_config_error(
    config_dir: Path, text: str
) -> None:
    assert KNOWN_BAD_YAML.search(text)
    load_text(config_dir / "bad.yaml", text)


def test_a_missing_secret_names_the_file(config_dir: Path) -> None:
    path = config_dir / "secret.yaml"
    path.write_text(VALID_YAML.replace("env:ANTHROPIC_KEY", "env:UNSET_KEY"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(path, ENV)
    assert str(caught.value) == f"{path}: models.sonnet.api_key: environment variable UNSET_KEY is not set"


def test_a_key_with_a_lone_surrogate_is_named() -> None:
    data = yaml.safe_load('"x\\ud800": 1')
    assert data == {"x\ud800": 1}
    with pytest.raises(ConfigError) as caught:
        parse({**VALID, **data})
    assert_names_a_key(caught.value, {**VALID, **data})
