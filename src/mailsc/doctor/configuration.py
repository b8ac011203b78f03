"""The doctor's first step: are the settings valid? Every problem is listed (with its variable and hint), and the
summary of a valid SMTP profile names the user and says whether a password is set, never what it is."""

from __future__ import annotations

from typing import Any

from ..config import ConnectionConfig, Security, Settings
from ..errors import ConfigError
from .steps import Step

TITLE = "Configuration is valid"


def with_overrides(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    security: Security | None = None,
    timeout: float | None = None,
) -> ConnectionConfig | None:
    """The SMTP profile to diagnose: the configured one with one-off overrides from the command line (a host given
    on the command line is enough when none is configured). Raises ``ConfigError``."""
    base = settings.smtp
    if host is None and port is None and security is None and timeout is None:
        return base
    if base is None and host is None:
        return None  # nothing to override: no SMTP server is configured
    fields: dict[str, Any] = (
        base.model_dump()
        if base is not None
        else {"mail_from": settings.mail_from, "mail_from_name": settings.mail_from_name}
    )
    if port is not None and security is None:
        fields.pop("security", None)  # infer it again for the new port (465: tls, else starttls)
    overrides = {"host": host, "port": port, "security": security, "timeout": timeout}
    fields.update({name: value for name, value in overrides.items() if value is not None})
    return ConnectionConfig(**fields)  # raises ConfigError listing every problem


def invalid(error: ConfigError) -> Step:
    """The failing configuration step: each problem on its own line, with its variable and hint."""
    problems = [{"variable": p.variable, "message": p.message, "hint": p.hint} for p in error.problems]
    count = len(problems)
    return Step(
        "config",
        TITLE,
        False,
        f"{count} problem{'s' if count != 1 else ''}: "
        + "; ".join(f"{p.variable}: {p.message}" for p in error.problems),
        "; ".join(f"{p.variable}: {p.hint}" for p in error.problems if p.hint)
        or "fix each variable named above (in the environment or .env), then run `mailsc doctor` again",
        {"problems": problems},
    )


def valid(settings: Settings, smtp: ConnectionConfig | None) -> Step:
    if smtp is None:
        return Step("config", TITLE, True, "settings are valid; no SMTP server is configured", "", {"smtp": None})
    credentials = (
        f"user {smtp.username!r} (password set)"
        if smtp.username is not None and smtp.password is not None
        else "no credentials"
    )
    sender = smtp.sender
    detail = (
        f"SMTP {smtp.host}:{smtp.port}, security={smtp.security}, {credentials}, "
        f"sender {sender if sender is not None else '(none configured)'}, timeout {smtp.timeout:g} s"
    )
    if smtp.security != "none" and not smtp.verify_certs:
        detail += "; certificates are NOT verified (MAILSC_SMTP_VERIFY_CERTS=false)"
    if smtp.suppress_send:
        detail += "; SUPPRESS_SEND is on, so mailsc sends nothing: checking the server anyway"
    data = {
        "smtp": {
            "host": smtp.host,
            "port": smtp.port,
            "security": smtp.security,
            "username": smtp.username,
            "password_set": smtp.password is not None,
            "sender": sender.email if sender is not None else None,
            "verify_certs": smtp.verify_certs,
            "timeout": smtp.timeout,
        }
    }
    return Step("config", TITLE, True, detail, "", data)
