"""Configuration: the only module that reads the environment.

``Settings`` is the root, read once at an entry point from ``MAILSC_*`` variables, a ``.env`` file and
``<NAME>_FILE`` secret files; ``ConnectionConfig`` is one SMTP profile, also usable on its own from Python (it accepts
fastapi-mail's ``MAIL_*`` field names). Both check every field and every combination at once and raise one
``ConfigError`` listing each problem with the variable to change and a hint. Secrets are ``SecretStr`` and never
appear in a repr, an error or a log line.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError, ConfigProblem, MessageError
from .message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address

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


def _problems_of(exc: ValidationError, name_of: dict[str, str], secrets: set[str]) -> list[ConfigProblem]:
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


def _validate_reporting_all(
    data: Any, handler: ValidatorFunctionWrapHandler, name_of: dict[str, str], secrets: set[str]
) -> tuple[Any, list[ConfigProblem]]:
    """Validate; on field errors, validate again without the bad fields so the combination checks that follow
    can still run on the rest. Returns the model (None when even that failed) and the field problems."""
    try:
        return handler(data), []
    except ValidationError as exc:
        problems = _problems_of(exc, name_of, secrets)
        if not isinstance(data, dict):
            return None, problems
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        try:
            return handler({k: v for k, v in data.items() if k not in bad}), problems
        except (ValidationError, ConfigError):
            return None, problems


def _merge(problems: list[ConfigProblem], more: list[ConfigProblem]) -> list[ConfigProblem]:
    """Add the combination problems, except for variables already refused field by field (such a check ran without
    the refused value, and would only add noise)."""
    refused = {p.variable for p in problems}
    return list(dict.fromkeys([*problems, *(p for p in more if p.variable not in refused)]))


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
        config, problems = _validate_reporting_all(data, handler, {}, {"password", "MAIL_PASSWORD"})
        if config is not None:
            assert isinstance(config, ConnectionConfig)
            problems = _merge(problems, config._resolve())
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
        if not self.mail_from:
            return None
        address = Address.parse(self.mail_from)
        return address.model_copy(update={"name": self.mail_from_name}) if self.mail_from_name else address


_SECRET_FIELDS = ("smtp_url", "smtp_password", "database_url", "api_key")
_FILE_PROBLEMS = "__mailsc_secret_file_problems__"  # carries this source's problems to Settings._validate_all


class _SecretFilesSource(PydanticBaseSettingsSource):
    """``<VARIABLE>_FILE`` (in the environment or ``.env``) names a file whose content is the secret, as Docker and
    Kubernetes mount them. Its problems are handed on, to be listed with every other problem."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._dotenv = dotenv

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        dotenv = {str(k).upper(): v for k, v in getattr(self._dotenv, "env_vars", {}).items() if v is not None}
        environ = {**dotenv, **{k.upper(): v for k, v in os.environ.items()}}
        values: dict[str, Any] = {}
        problems: list[ConfigProblem] = []
        for field in _SECRET_FIELDS:
            names = Settings._variables(field)
            has_alias = Settings.model_fields[field].validation_alias is not None
            for name in names:
                path = environ.get(f"{name}_FILE")
                if path is None:
                    continue
                if name in environ:
                    problems.append(ConfigProblem(f"{name}_FILE", f"both {name} and {name}_FILE are set", "keep one"))
                    break
                try:
                    secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    problems.append(ConfigProblem(f"{name}_FILE", f"cannot read the secret file: {exc.strerror}"))
                    break
                values[names[0] if has_alias else field] = secret
                break
        if problems:
            values[_FILE_PROBLEMS] = problems
        return values


def _env(*names: str) -> Any:
    return AliasChoices(*names)


_SMTP_FIELDS = {  # Settings field -> ConnectionConfig field
    "smtp_host": "host",
    "smtp_port": "port",
    "smtp_username": "username",
    "smtp_password": "password",
    "smtp_security": "security",
    "smtp_starttls": "starttls",
    "smtp_ssl_tls": "ssl_tls",
    "smtp_use_credentials": "use_credentials",
    "smtp_verify_certs": "verify_certs",
    "smtp_ca_file": "ca_file",
    "smtp_client_cert": "client_cert",
    "smtp_client_key": "client_key",
    "smtp_timeout": "timeout",
    "smtp_pool_size": "pool_size",
    "smtp_allow_insecure": "allow_insecure",
    "smtp_local_hostname": "local_hostname",
    "mail_from": "mail_from",
    "mail_from_name": "mail_from_name",
}


class Settings(BaseSettings):
    """Everything mailsc reads from the environment; build it once at an entry point and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="MAILSC_", env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    smtp_url: SecretStr | None = None
    smtp_host: str | None = Field(
        None, validation_alias=_env("MAILSC_SMTP_HOST", "SMTP_HOST", "SMTP_SERVER", "MAIL_SERVER")
    )
    smtp_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=_env("MAILSC_SMTP_PORT", "SMTP_PORT", "MAIL_PORT")
    )
    smtp_username: str | None = Field(
        None, validation_alias=_env("MAILSC_SMTP_USERNAME", "SMTP_USER", "SMTP_USERNAME", "MAIL_USERNAME")
    )
    smtp_password: SecretStr | None = Field(
        None, validation_alias=_env("MAILSC_SMTP_PASSWORD", "SMTP_PASS", "SMTP_PASSWORD", "MAIL_PASSWORD")
    )
    smtp_security: Security | None = None
    smtp_starttls: bool | None = Field(None, validation_alias=_env("MAILSC_SMTP_STARTTLS", "MAIL_STARTTLS"))
    smtp_ssl_tls: bool | None = Field(None, validation_alias=_env("MAILSC_SMTP_SSL_TLS", "MAIL_SSL_TLS"))
    smtp_use_credentials: bool = Field(True, validation_alias=_env("MAILSC_SMTP_USE_CREDENTIALS", "USE_CREDENTIALS"))
    smtp_verify_certs: bool = Field(True, validation_alias=_env("MAILSC_SMTP_VERIFY_CERTS", "VALIDATE_CERTS"))
    smtp_ca_file: Path | None = None
    smtp_client_cert: Path | None = None
    smtp_client_key: Path | None = None
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_pool_size: int = Field(4, ge=1, le=100)
    smtp_allow_insecure: bool = False
    smtp_local_hostname: str | None = None
    mail_from: str | None = Field(None, validation_alias=_env("MAILSC_MAIL_FROM", "MAIL_FROM"))
    mail_from_name: str | None = Field(None, validation_alias=_env("MAILSC_MAIL_FROM_NAME", "MAIL_FROM_NAME"))
    host: str = "127.0.0.1"
    port: int = Field(8025, ge=1, le=65535)
    database_url: SecretStr = SecretStr("sqlite:///./mailsc.db")
    api_key: SecretStr | None = None
    retry_max_age: timedelta = timedelta(hours=24)
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = None
    templates_dir: Path = Path("templates/email")
    max_message_size: int = Field(DEFAULT_MAX_SIZE, ge=1024)
    max_recipients: int = Field(DEFAULT_MAX_RECIPIENTS, ge=1, le=1000)
    max_request_size: int = Field(10 * 1024 * 1024, ge=1024)
    rate_limit: float = Field(0.0, ge=0)  # requests per second per API key; 0 = unlimited

    _smtp: ConnectionConfig | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _SecretFilesSource(settings_cls, dotenv_settings), dotenv_settings

    @classmethod
    def _variables(cls, field: str) -> tuple[str, ...]:
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(c) for c in alias.choices)
        return (f"MAILSC_{field.upper()}",)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets ``field``, e.g. ``MAILSC_SMTP_HOST``."""
        return cls._variables(field)[0]

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Settings:
        names = {name: cls.variable(name) for name in cls.model_fields}
        names.update({variable: cls.variable(name) for name in cls.model_fields for variable in cls._variables(name)})
        secrets = set(_SECRET_FIELDS) | {v for f in _SECRET_FIELDS for v in cls._variables(f)}
        problems: list[ConfigProblem] = []
        if isinstance(data, dict):
            data = dict(data)
            problems += data.pop(_FILE_PROBLEMS, [])
        settings, field_problems = _validate_reporting_all(data, handler, names, secrets)
        problems += field_problems
        if settings is not None:
            assert isinstance(settings, Settings)
            problems = _merge(problems, settings._build_smtp())
        if problems:
            raise ConfigError(problems)
        assert isinstance(settings, Settings)
        return settings

    def _build_smtp(self) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        if self.mail_from is not None:
            try:
                Address.parse(self.mail_from)
            except MessageError as exc:
                hint = "e.g. 'App <noreply@example.com>'"
                problems.append(ConfigProblem("MAILSC_MAIL_FROM", exc.errors[0]["msg"], hint))
        fields: dict[str, Any] = {}
        from_url: set[str] = set()
        if self.smtp_url is not None:
            try:
                fields = _parse_smtp_url(self.smtp_url.get_secret_value())
            except ValueError as exc:
                hint = "e.g. smtp://user:pass@smtp.example.com:587"
                return [*problems, ConfigProblem("MAILSC_SMTP_URL", str(exc), hint)]
            from_url = set(fields)
            if self.smtp_host is not None:
                hint = "give the server once: the URL, or the fields"
                return [
                    *problems,
                    ConfigProblem("MAILSC_SMTP_HOST", "both MAILSC_SMTP_URL and MAILSC_SMTP_HOST are set", hint),
                ]
        for name, target in _SMTP_FIELDS.items():
            if name in self.model_fields_set:
                fields[target] = getattr(self, name)
                from_url.discard(target)
            elif target not in fields:
                fields[target] = getattr(self, name)
        if problems:
            fields.pop("mail_from", None)  # reported once, above
        if not fields.get("host"):
            stray = [n for n in self.model_fields_set if n.startswith("smtp_") and n != "smtp_host"]
            return problems + [
                ConfigProblem(
                    self.variable(n),
                    "is set, but no SMTP server is configured",
                    "set MAILSC_SMTP_HOST or MAILSC_SMTP_URL",
                )
                for n in sorted(stray)
            ]
        try:
            self._smtp = ConnectionConfig(**fields)
        except ConfigError as exc:
            reverse = {v: k for k, v in _SMTP_FIELDS.items()}
            return problems + [
                ConfigProblem(
                    "MAILSC_SMTP_URL" if p.variable in from_url else self.variable(reverse[p.variable]),
                    p.message,
                    p.hint,
                )
                if p.variable in reverse
                else p
                for p in exc.problems
            ]
        return problems

    @property
    def smtp(self) -> ConnectionConfig | None:
        """The SMTP profile, or ``None`` when no SMTP server is configured (mail is then captured)."""
        return self._smtp

    @property
    def sender(self) -> Address | None:
        """The default sender from ``MAILSC_MAIL_FROM`` / ``MAILSC_MAIL_FROM_NAME``."""
        if self._smtp is not None:
            return self._smtp.sender
        if not self.mail_from:
            return None
        address = Address.parse(self.mail_from)
        return address.model_copy(update={"name": self.mail_from_name}) if self.mail_from_name else address


def _parse_smtp_url(url: str) -> dict[str, Any]:
    """``smtp://user:pass@host:587`` (STARTTLS) or ``smtps://user:pass@host:465`` (implicit TLS)."""
    parts = urlsplit(url)
    security = {"smtp": "starttls", "smtps": "tls"}.get(parts.scheme.lower())
    if security is None:
        raise ValueError("the URL must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port in the URL is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("the URL names no host")
    fields: dict[str, Any] = {"host": parts.hostname, "security": security}
    if port is not None:
        fields["port"] = port
    if parts.username is not None:
        fields["username"] = unquote(parts.username)
    if parts.password is not None:
        fields["password"] = SecretStr(unquote(parts.password))
    return fields
