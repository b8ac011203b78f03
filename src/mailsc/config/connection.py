"""One SMTP profile, ``ConnectionConfig``, and the checks shared by every settings model: all problems at once,
with the variable to change and a hint, and never a secret's value."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from ..errors import ConfigError, ConfigProblem, MessageError
from ..message import Address

Security = Literal["starttls", "tls", "none"]
_DEFAULT_PORTS: dict[str, int] = {"tls": 465, "starttls": 587, "none": 25}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (where plaintext SMTP cannot be sniffed)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def problems_of(exc: ValidationError, name_of: dict[str, str], secrets: set[str]) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = name_of.get(field, field)
        msg = str(error["msg"]).removeprefix("Value error, ")
        if field not in secrets and error["type"] not in ("missing", "extra_forbidden"):
            shown = repr(error.get("input"))
            msg = f"{msg} (got {shown[:60]})"
        problems.append(ConfigProblem(variable, msg))
    return problems


def validate_reporting_all(
    data: Any, handler: ValidatorFunctionWrapHandler, name_of: dict[str, str], secrets: set[str]
) -> tuple[Any, list[ConfigProblem]]:
    """Validate; on field errors, validate again without the bad fields so the combination checks that follow
    can still run on the rest. Returns the model (None when even that failed) and the field problems."""
    try:
        return handler(data), []
    except ValidationError as exc:
        problems = problems_of(exc, name_of, secrets)
        if not isinstance(data, dict):
            return None, problems
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        try:
            return handler({k: v for k, v in data.items() if k not in bad}), problems
        except (ValidationError, ConfigError):
            return None, problems


def merge_problems(problems: list[ConfigProblem], more: list[ConfigProblem]) -> list[ConfigProblem]:
    """Add the combination problems, except for variables already refused field by field (such a check ran without
    the refused value, and would only add noise)."""
    refused = {p.variable for p in problems}
    return list(dict.fromkeys([*problems, *(p for p in more if p.variable not in refused)]))


def default_sender(mail_from: str | None, name: str | None) -> Address | None:
    """The configured sender: ``MAIL_FROM`` (``"App <a@example.com>"`` or a bare address), ``MAIL_FROM_NAME`` wins."""
    if not mail_from:
        return None
    address = Address.parse(mail_from)
    return address.model_copy(update={"name": name}) if name else address


class ConnectionConfig(BaseModel):
    """One SMTP profile. Field names or fastapi-mail's names (``MAIL_SERVER``, ``MAIL_PORT``, ...) are accepted.

    ``security`` is inferred when not given: from ``MAIL_STARTTLS``/``MAIL_SSL_TLS`` if set, else implicit TLS on
    port 465 and STARTTLS otherwise; ``port`` then defaults by security (465, 587, or 25 for ``none``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)

    host: str = Field(min_length=1, validation_alias=AliasChoices("host", "MAIL_SERVER"))
    port: int | None = Field(default=None, ge=1, le=65535, validation_alias=AliasChoices("port", "MAIL_PORT"))
    username: str | None = Field(default=None, validation_alias=AliasChoices("username", "MAIL_USERNAME"))
    password: SecretStr | None = Field(default=None, validation_alias=AliasChoices("password", "MAIL_PASSWORD"))
    security: Security | None = None
    starttls: bool | None = Field(default=None, validation_alias=AliasChoices("starttls", "MAIL_STARTTLS"))
    ssl_tls: bool | None = Field(default=None, validation_alias=AliasChoices("ssl_tls", "MAIL_SSL_TLS"))
    use_credentials: bool = Field(default=True, validation_alias=AliasChoices("use_credentials", "USE_CREDENTIALS"))
    verify_certs: bool = Field(default=True, validation_alias=AliasChoices("verify_certs", "VALIDATE_CERTS"))
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout: float = Field(default=30.0, gt=0, validation_alias=AliasChoices("timeout", "TIMEOUT"))
    pool_size: int = Field(default=4, ge=1, le=100)
    mail_from: str | None = Field(default=None, validation_alias=AliasChoices("mail_from", "MAIL_FROM"))
    mail_from_name: str | None = Field(default=None, validation_alias=AliasChoices("mail_from_name", "MAIL_FROM_NAME"))
    local_hostname: str | None = Field(default=None, validation_alias=AliasChoices("local_hostname", "LOCAL_HOSTNAME"))
    allow_insecure: bool = False
    suppress_send: bool = Field(default=False, validation_alias=AliasChoices("suppress_send", "SUPPRESS_SEND"))

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> ConnectionConfig:
        config, problems = validate_reporting_all(data, handler, {}, {"password", "MAIL_PASSWORD"})
        if config is not None:
            assert isinstance(config, ConnectionConfig)
            problems = merge_problems(problems, config._resolve())
        if problems:
            raise ConfigError(problems)
        assert isinstance(config, ConnectionConfig)
        return config

    def _resolve(self) -> list[ConfigProblem]:
        """Check combinations and fill in ``security`` and ``port``; returns the problems found."""
        problems: list[ConfigProblem] = []
        tls_hint = "use STARTTLS (usually port 587) or implicit TLS (port 465), not both"
        if self.starttls and self.ssl_tls:
            problems.append(
                ConfigProblem("starttls", "STARTTLS and implicit TLS (SSL_TLS) are both switched on", tls_hint)
            )
        security = self.security
        if security is None:
            if self.ssl_tls:
                security = "tls"
            elif self.starttls:
                security = "starttls"
            elif self.starttls is False and self.ssl_tls is False:
                security = "none"
            else:
                security = "tls" if self.port == 465 else "starttls"
        elif (self.ssl_tls and security != "tls") or (self.starttls and security != "starttls"):
            problems.append(ConfigProblem("security", f"security={security} contradicts the STARTTLS/SSL_TLS flags"))
        port = self.port or _DEFAULT_PORTS[security]
        if security == "starttls" and port == 465:
            problems.append(
                ConfigProblem(
                    "port",
                    "port 465 speaks implicit TLS from the first byte, but STARTTLS is configured",
                    "set security=tls for port 465, or use port 587 for STARTTLS",
                )
            )
        if security == "tls" and port in (25, 587):
            problems.append(
                ConfigProblem(
                    "port",
                    f"port {port} expects STARTTLS, but implicit TLS is configured",
                    "set security=starttls for port 587, or use port 465 for implicit TLS",
                )
            )
        if security == "none" and not self.allow_insecure and not is_loopback(self.host):
            problems.append(
                ConfigProblem(
                    "security",
                    f"plaintext SMTP (security=none) to {self.host}, which is not a loopback address",
                    "use starttls or tls; if the network really is private, set allow_insecure=true",
                )
            )
        username, password = (self.username, self.password) if self.use_credentials else (None, None)
        if security == "none" and username and not is_loopback(self.host):
            problems.append(
                ConfigProblem(
                    "security",
                    f"credentials would cross the network to {self.host} in clear (security=none)",
                    "use starttls or tls whenever a username and password are set",
                )
            )
        if username and password is None:
            problems.append(ConfigProblem("password", "a username is set but no password"))
        if password is not None and not username:
            problems.append(ConfigProblem("username", "a password is set but no username"))
        if self.client_key and not self.client_cert:
            problems.append(ConfigProblem("client_key", "a client key without a client certificate (client_cert)"))
        for name in ("ca_file", "client_cert", "client_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(ConfigProblem(name, f"file {str(path)!r} does not exist or is not a file"))
        if self.mail_from is not None:
            try:
                Address.parse(self.mail_from)
            except MessageError as exc:
                problems.append(ConfigProblem("mail_from", exc.errors[0]["msg"], "e.g. 'App <noreply@example.com>'"))
        if not problems:
            for name, value in (("security", security), ("port", port), ("username", username), ("password", password)):
                object.__setattr__(self, name, value)
        return problems

    @property
    def sender(self) -> Address | None:
        """The default sender, from ``mail_from`` and ``mail_from_name``."""
        return default_sender(self.mail_from, self.mail_from_name)
