"""tiergate: an LLM routing sidecar. Applications name a task; tiergate picks the model."""

from tiergate._native import count_tokens
from tiergate.config import Config, ConfigError
from tiergate.config import load as load_config

__all__ = ["Config", "ConfigError", "count_tokens", "load_config"]
