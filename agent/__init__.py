"""The agent: reads certificate stores, classifies with the policy core, reports, escrows."""

from .errors import AgentError, ConfigError

__all__ = ["AgentError", "ConfigError"]
