"""Configuration: ``Settings`` (the root, the only reader of the environment) and ``ConnectionConfig`` (one SMTP
profile). Both list every problem at once in one ``ConfigError`` and never show a secret."""

from .connection import ConnectionConfig, Security, is_loopback
from .settings import Settings

__all__ = ["ConnectionConfig", "Security", "Settings", "is_loopback"]
