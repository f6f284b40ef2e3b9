"""The config's shape: the pydantic models of the YAML config (phase 1 validates against them), its
constants, and lookups on a loaded `Config`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from tiergate._native import Rule

ENV_PREFIX = "env:"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
EMBEDDED = "embedded"
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
# Default hosted models of the embedded config, used only when the provider's key is in the environment.
DEFAULT_HOSTED = {
    "openai": ("OPENAI_API_KEY", "gpt-5-mini", 0.25, 2.0),
    "anthropic": ("ANTHROPIC_API_KEY", "claude-sonnet-4-5", 3.0, 15.0),
}


# What each provider's models take unless a model says otherwise (`tools`, `vision`, `json_schema` keys).
# `json_object` (any JSON) and `penalties` (presence/frequency) follow from the provider alone: Anthropic has
# no penalties; the on-device model generates JSON from a schema's grammar, and has neither tools nor vision
# (until the on-device worker translates them).
CAPABILITY_DEFAULTS: dict[str, frozenset[str]] = {
    "openai": frozenset({"tools", "vision", "json_schema", "json_object", "penalties"}),
    "anthropic": frozenset({"tools", "vision", "json_schema", "json_object"}),
    "llama_cpp": frozenset({"tools", "json_schema"}),  # tools through a grammar (providers/tool_prompt.py)
}


class ConfigError(ValueError):
    """The config is invalid; the message names the key and says what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveMs = Annotated[float, Field(gt=0)]


class Listen(_Strict):
    grpc: str = "127.0.0.1:50051"  # host:port, or unix:PATH for a Unix domain socket
    http: str | None = "127.0.0.1:8080"
    # Bearer token every gRPC call (metadata `authorization: Bearer T`) and HTTP request to /v1 and /metrics
    # must carry; the health endpoints stay open for probes. "env:NAME" is resolved at load; never logged.
    auth_token: SecretStr | None = None
    tls_cert: str | None = None  # PEM files: with both set, gRPC and HTTP serve TLS only
    tls_key: str | None = None
    shutdown_grace_ms: PositiveMs = 10_000  # on SIGTERM, how long in-flight requests may take to finish

    @field_validator("grpc")
    @classmethod
    def _grpc_address(cls, value: str) -> str:
        if value.startswith("unix:"):
            if not value.removeprefix("unix:").lstrip("/"):
                raise ValueError("unix: needs a socket path, e.g. unix:/run/tiergate/grpc.sock")
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not host:port or unix:PATH")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Listen:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both `tls_cert` and `tls_key`")
        if self.auth_token is not None and not self.auth_token.get_secret_value():
            raise ValueError("`auth_token` is empty")
        return self

    @property
    def tls(self) -> tuple[str, str] | None:
        return (self.tls_cert, self.tls_key) if self.tls_cert and self.tls_key else None


class Price(_Strict):
    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


ON_DEVICE_PROVIDERS = ("llama_cpp", "onnx")


class ModelConfig(_Strict):
    provider: Literal["openai", "anthropic", "llama_cpp", "onnx"]
    model: str | None = None  # the upstream model id (hosted)
    base_url: str | None = None
    api_key: SecretStr | None = None  # "env:NAME" is resolved at load; never logged
    headers: dict[str, str] = Field(default_factory=dict)
    path: str | None = None  # llama_cpp: "embedded" or a GGUF file; onnx: "embedded" or a model directory
    on_device: bool | None = None  # default: true for llama_cpp, false otherwise
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int = Field(1024, gt=0)  # used when the request sets none
    price: Price = Field(default_factory=Price)
    encoding: Literal["o200k_base", "cl100k_base"] = "o200k_base"
    connect_timeout_ms: PositiveMs = 5_000
    request_timeout_ms: PositiveMs = 120_000
    # What the model can take (None: what its provider implies, `CAPABILITY_DEFAULTS`); a request that needs
    # one skips the models without it.
    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    # hosted: an HTTP proxy URL (credentials allowed; "env:NAME" is resolved at load) or "direct"; default:
    # HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment
    proxy: SecretStr | None = None
    # llama_cpp only
    threads: int | None = Field(None, gt=0)
    queue_size: int = Field(8, ge=1)
    # Labels for residency and approval policy (`policy/residency.py`), e.g. {region: eu, env: experimental}
    tags: dict[str, str] = Field(default_factory=dict)
    # Embedding models (README: "Embeddings"): `kind: embedding`, the default for `provider: onnx`.
    kind: Literal["chat", "embedding"] | None = None
    dimensions: int | None = Field(None, gt=0)  # the vector size (on-device: as the model reports it)
    adjustable_dimensions: bool = False  # the model returns fewer dimensions on request (text-embedding-3)

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelConfig:
        if self.provider in ON_DEVICE_PROVIDERS:
            if self.path is None:
                what = "a GGUF file" if self.provider == "llama_cpp" else "a directory with model.onnx"
                raise ValueError(f"a {self.provider} model needs `path` ({what}, or `embedded`)")
            for key in ("model", "base_url", "api_key", "proxy"):
                if getattr(self, key) is not None:
                    raise ValueError(f"`{key}` does not apply to a {self.provider} model")
        else:
            if not self.model:
                raise ValueError(f"a {self.provider} model needs `model` (the provider's model id)")
            if self.path is not None:
                raise ValueError("`path` applies only to llama_cpp and onnx models")
        if self.provider == "onnx" and self.kind == "chat":
            raise ValueError("an onnx model is an embedding model (`kind: embedding`)")
        if self.is_embedding and self.provider in ("anthropic", "llama_cpp"):
            raise ValueError(f"{self.provider} models do not embed: use an openai or onnx model")
        if not self.is_embedding and (self.dimensions is not None or self.adjustable_dimensions):
            raise ValueError("`dimensions` and `adjustable_dimensions` apply only to embedding models")
        return self

    @property
    def is_embedding(self) -> bool:
        return self.kind == "embedding" or (self.kind is None and self.provider == "onnx")

    @property
    def is_on_device(self) -> bool:
        return self.provider in ON_DEVICE_PROVIDERS if self.on_device is None else self.on_device

    @property
    def capabilities(self) -> frozenset[str]:
        """What the model can take: its own declarations, else its provider's defaults."""
        implied = CAPABILITY_DEFAULTS[self.provider]
        declared = {"tools": self.tools, "vision": self.vision, "json_schema": self.json_schema}
        out = {name for name, value in declared.items() if (name in implied if value is None else value)}
        return frozenset(out | (implied - declared.keys()))

    @property
    def window(self) -> int:
        if self.context_window is not None:
            return self.context_window
        if self.provider == "onnx":
            return 256  # all-MiniLM-L6-v2's max_seq_length (its own tokenizer's tokens)
        if self.is_embedding:
            return 8192  # OpenAI's embedding models
        return 8192 if self.provider == "llama_cpp" else 128_000


class RuleConfig(_Strict):
    id: str = Field(min_length=1)
    regex: str | None = None
    keywords: list[str] | None = None
    case_insensitive: bool = False
    # The rule engine's validators (rust/core/src/rules/validate.rs): checksums and context checks.
    validator: (
        Literal[
            "luhn",
            "iban",
            "us_ssn",
            "uk_nino",
            "fr_nir",
            "de_tax_id",
            "de_pension_number",
            "es_dni",
            "it_fiscal_code",
            "nl_bsn",
            "br_cpf",
            "br_cnpj",
            "in_aadhaar",
            "jp_my_number",
            "ipv4_public",
            "ipv4_private",
        ]
        | None
    ) = None
    sensitivity: Literal["public", "internal", "restricted"] | None = None
    complexity: Literal["trivial", "moderate", "complex"] | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> RuleConfig:
        if (self.regex is None) == (self.keywords is None):
            raise ValueError("a rule needs exactly one of `regex` or `keywords`")
        if self.keywords is not None and not self.keywords:
            raise ValueError("`keywords` is empty")
        return self

    def native(self) -> Rule:
        """The rule engine's form of this rule (matching only: sensitivity and complexity stay here)."""
        return Rule(
            self.id,
            regex=self.regex,
            keywords=self.keywords,
            case_insensitive=self.case_insensitive,
            validator=self.validator,
        )


class CanaryConfig(_Strict):
    """A canary rollout on a route (`policy/canary.py`): a share of traffic tries `model` first."""

    model: str = Field(min_length=1)  # the candidate; not in the route's chain
    percent: float = Field(ge=0, le=100)
    sticky: str = "tenant"  # "tenant", or "metadata:KEY" (e.g. metadata:conversation_id)
    min_samples: int = Field(50, ge=1)  # per arm, before rollback may judge
    max_error_rate_increase: float = Field(0.05, ge=0, le=1)  # canary error rate - baseline's (absolute)
    max_ttft_increase: float = Field(0.5, ge=0)  # canary mean TTFT / baseline's - 1
    # ...and by at least this much in absolute terms: a few milliseconds either way is noise, not a verdict
    min_ttft_increase_ms: float = Field(50, ge=0)
    max_score_drop: float = Field(0.1, ge=0, le=1)  # baseline mean feedback score - canary's (0..1 scale)

    @field_validator("sticky")
    @classmethod
    def _sticky(cls, value: str) -> str:
        if value != "tenant" and not (value.startswith("metadata:") and len(value) > len("metadata:")):
            raise ValueError(f"{value!r}: use `tenant` or `metadata:KEY`")
        return value


class ClassifyExamples(_Strict):
    """The learned router: complexity from the nearest labelled examples (`embeddings/nearest.py`)."""

    model: str  # an on-device embedding model
    examples: str = "embedded"  # the shipped set, or a JSONL file of {"text", "label"}
    k: int = Field(7, ge=1, le=100)
    min_confidence: float = Field(0.5, ge=0, le=1)  # below it the rules and the route's order decide
    ms: PositiveMs = 200  # the time budget; past it the request goes on unclassified


class RouteConfig(_Strict):
    chain: list[str] = Field(min_length=1)
    objective: Literal["chain", "cost", "latency"] = "chain"
    ttft_ms: PositiveMs | None = None
    total_ms: PositiveMs | None = None
    hedge_after_ms: PositiveMs | None = None
    retries: int = Field(1, ge=0, le=10)  # extra tries of the same model on retryable errors
    validate_: Literal["json_schema"] | None = Field(None, alias="validate")
    trivial_max_tokens: int | None = Field(None, ge=1)  # short prompts count as trivial
    classify_with: str | None = None  # an on-device model that classifies what no rule decided
    classify_ms: PositiveMs = 500  # its time budget; past it the request goes on unclassified
    # Images cannot be scanned by the rules: a request with images is at least this sensitive.
    image_sensitivity: Literal["public", "internal", "restricted"] = "internal"
    canary: CanaryConfig | None = None  # a candidate model tried first by a sticky share of the traffic
    classify_examples: ClassifyExamples | None = None  # the learned router, tried before classify_with

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BreakerConfig(_Strict):
    failure_rate: float = Field(50.0, gt=0, le=100)
    slow_call_rate: float = Field(100.0, gt=0, le=100)
    slow_call_ms: PositiveMs = 10_000
    window: int = Field(20, ge=1, le=1_000_000)
    min_calls: int = Field(5, ge=1)
    open_ms: PositiveMs = 30_000
    half_open_calls: int = Field(2, ge=1)


class BudgetConfig(_Strict):
    usd_per_day: float | None = Field(None, gt=0)
    usd_per_month: float | None = Field(None, gt=0)
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)


class TenantPolicyConfig(_Strict):
    """Where a tenant's requests may go (`policy/residency.py`). Unset: no constraint of that kind."""

    regions: list[str] | None = Field(None, min_length=1)  # the models' `region` tag must be one of these
    models: list[str] | None = Field(None, min_length=1)  # approved models; any other is left out
    forbidden_tags: dict[str, list[str]] = Field(default_factory=dict)  # e.g. {env: [experimental]}


class PoolConfig(_Strict):
    """Equivalent models that share one step of a chain (`policy/pools.py`)."""

    members: dict[str, float] = Field(min_length=1)  # model name -> weight (> 0)
    slow_start_ms: float = Field(30_000, ge=0)  # a member whose breaker closes again ramps up over this
    latency_tolerance: float = Field(1.5, ge=1)  # the second pick wins when the first is this much slower

    @field_validator("members")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not weight > 0:
                raise ValueError(f"member {name!r}: the weight must be > 0, got {weight}")
        return value


class FeedbackConfig(_Strict):
    """Quality feedback on served requests (`feedback.py`)."""

    ttl_s: float = Field(3600, gt=0)  # how long a served request can be rated
    max_requests: int = Field(50_000, ge=1)  # served requests remembered for rating (least recent dropped)
    labels: list[str] = Field(default_factory=lambda: ["good", "bad"])  # the labels clients may send

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label or len(label) > 64 or not label.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"{label!r}: a label is 1-64 letters, digits, '_' or '-'")
        if len(set(value)) != len(value) or len(value) > 32:
            raise ValueError("labels: at most 32, each once")
        return value


class TelemetryConfig(_Strict):
    decision_log: bool = True  # one JSON line per request on the `tiergate.decisions` logger
    log_content: bool = False  # opt-in: also log prompt and answer text in decision records
    otlp_endpoint: str | None = None  # OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318 (extra: otel)
    service_name: str = Field("tiergate", min_length=1)  # the traces' service.name
    # Share of new traces recorded (trace id ratio). With `trace_parent_based`, a request that joins the
    # caller's trace follows the caller's sampled flag instead (OpenTelemetry's parentbased_traceidratio).
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    trace_parent_based: bool = True


class LimitsConfig(_Strict):
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_concurrent_requests: int = Field(256, ge=1)
    max_output_tokens: int = Field(32_768, ge=1)
    # In-process state keyed by tenant names clients send (limits counted under `budgets.default`): at most
    # this many tenants are held, the least recently seen dropped first.
    max_tenants: int = Field(100_000, ge=1)


class SemanticCacheConfig(_Strict):
    """Semantic matching (`cache/semantic.py`): on an exact miss, the answer to a paraphrase of the last user
    message, in the same scope (tenant, route, every other field of the request)."""

    model: str  # an on-device embedding model: looking a request up embeds its last user message
    threshold: float = Field(0.95, gt=0, le=1)  # the cosine similarity a hit needs
    max_entries: int = Field(10_000, ge=1)  # vectors held in this process, all scopes together
    max_per_scope: int = Field(1_000, ge=1)  # ... and in one scope (the oldest out first)
    timeout_ms: PositiveMs = 100  # embedding the lookup's text; past it the lookup is a miss

    @model_validator(mode="after")
    def _bounds(self) -> SemanticCacheConfig:
        if self.max_per_scope > self.max_entries:
            raise ValueError("`max_per_scope` cannot exceed `max_entries`")
        return self


class CacheConfig(_Strict):
    """The response cache (README: "Response cache"); present = on for every chat route."""

    ttl_s: float = Field(300.0, gt=0)
    max_entries: int = Field(10_000, ge=1)  # in this process's memory, least recently used out first
    max_entry_bytes: int = Field(256 * 1024, ge=1)  # larger answers are not cached
    store: Literal["memory", "redis"] = "memory"  # redis: the `state` URL, shared by the fleet
    semantic: SemanticCacheConfig | None = None  # absent: exact matches only


class Config(_Strict):
    listen: Listen = Field(default_factory=Listen)
    models: dict[str, ModelConfig] = Field(min_length=1)
    rules: list[RuleConfig] = Field(default_factory=list)
    # The built-in pack of personal-data and secret rules (README: "Sensitive data"), each setting
    # sensitivity restricted. A rule in `rules` with a pack rule's id replaces it.
    default_rules: bool = True
    disabled_rules: list[str] = Field(default_factory=list)  # pack rule ids to leave out
    routes: dict[str, RouteConfig] = Field(min_length=1)
    # Routes of embedding requests (the Embed RPC, POST /v1/embeddings): chains of embedding models only.
    embedding_routes: dict[str, RouteConfig] = Field(default_factory=dict)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    budgets: dict[str, BudgetConfig] = Field(default_factory=dict)
    # Residency and approval policy per tenant; `default` applies to tenants without an entry of their own.
    tenants: dict[str, TenantPolicyConfig] = Field(default_factory=dict)
    # Named pools of equivalent models: a route's chain may name a pool where it would name a model.
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    state: str | None = None  # "redis://..." for fleet-wide budgets; default in-process
    state_failure: Literal["open", "closed"] = "open"  # Redis unreachable: serve without limits, or refuse
    state_timeout_ms: PositiveMs = 250  # per Redis operation, connecting included
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    cache: CacheConfig | None = None  # the response cache; absent: off

    @model_validator(mode="after")
    def _cache_store(self) -> Config:
        if self.cache is not None and self.cache.store == "redis" and self.state is None:
            raise ValueError("cache.store: redis needs `state` (a redis:// URL)")
        return self

    @field_validator("state")
    @classmethod
    def _state_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError(f"{value!r} is not a redis:// (or rediss://, unix://) URL")
        return value

    def route(self, task: str) -> tuple[str, RouteConfig] | None:
        """The route a task names; an empty task means `default`. None: no such route (never a silent
        fallback to `default`, which would send a misspelt task's data where the caller did not ask)."""
        name = task or "default"
        if name in self.routes:
            return name, self.routes[name]
        return None


def embedding_route(config: Config, task: str) -> tuple[str, RouteConfig] | None:
    """The embedding route for a task: its own, else `default`, else None."""
    name = task or "default"
    if name in config.embedding_routes:
        return name, config.embedding_routes[name]
    if "default" in config.embedding_routes:
        return "default", config.embedding_routes["default"]
    return None
