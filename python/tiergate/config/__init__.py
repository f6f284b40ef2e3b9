"""The YAML config: parsed strictly (unknown keys are errors), then resolved into the runtime form.

Phase 1 (`parse`) validates shape and types with pydantic and names the offending key on error.
Phase 2 (`resolve`) checks cross references (routes -> models), resolves `env:NAME` secrets, fills
per-provider defaults and puts the default rule pack (less what `disabled_rules` and `rules` take out) in
front of the config's own rules. `load(path)` does both; `default_config(environ)` builds the embedded
default. The loaded `Config` is passed explicitly to whatever needs it: there is no global config.
"""

from tiergate.config.loading import default_config, load, parse, resolve
from tiergate.config.models import (
    CAPABILITY_DEFAULTS,
    DEFAULT_BASE_URLS,
    DEFAULT_HOSTED,
    EMBEDDED,
    ENV_PREFIX,
    ON_DEVICE_PROVIDERS,
    REDIS_SCHEMES,
    BreakerConfig,
    BudgetConfig,
    CacheConfig,
    CanaryConfig,
    ClassifyExamples,
    Config,
    ConfigError,
    FeedbackConfig,
    LimitsConfig,
    Listen,
    ModelConfig,
    PoolConfig,
    PositiveMs,
    Price,
    RouteConfig,
    RuleConfig,
    SemanticCacheConfig,
    TelemetryConfig,
    TenantPolicyConfig,
    embedding_route,
)

__all__ = [
    "CAPABILITY_DEFAULTS",
    "DEFAULT_BASE_URLS",
    "DEFAULT_HOSTED",
    "EMBEDDED",
    "ENV_PREFIX",
    "ON_DEVICE_PROVIDERS",
    "REDIS_SCHEMES",
    "BreakerConfig",
    "BudgetConfig",
    "CacheConfig",
    "CanaryConfig",
    "ClassifyExamples",
    "Config",
    "ConfigError",
    "FeedbackConfig",
    "LimitsConfig",
    "Listen",
    "ModelConfig",
    "PoolConfig",
    "PositiveMs",
    "Price",
    "RouteConfig",
    "RuleConfig",
    "SemanticCacheConfig",
    "TelemetryConfig",
    "TenantPolicyConfig",
    "default_config",
    "embedding_route",
    "load",
    "parse",
    "resolve",
]
