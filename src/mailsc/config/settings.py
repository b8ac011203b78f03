"""``Settings``: the only code that reads the environment.

``Settings`` is the root, read once at an entry point from ``MAILSC_*`` variables, a ``.env`` file and
``<NAME>_FILE`` secret files; ``ConnectionConfig`` is one SMTP profile, also usable on its own from Python (it accepts
fastapi-mail's ``MAIL_*`` field names). Both check every field and every combination at once and raise one
``ConfigError`` listing each problem with the variable to change and a hint. Secrets are ``SecretStr`` and never
appear in a repr, an error or a log line.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ..errors import ConfigError, ConfigProblem, MessageError
from ..message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address
from .connection import ConnectionConfig, Security, default_sender, merge_problems, validate_reporting_all
from .transport_plan import build_transport_plan
from .transports import PROVIDER_SECRET_FIELDS, ProviderSettings, smtp_transport_url

_SECRET_FIELDS = ("smtp_url", "smtp_password", "database_url", "api_key", *PROVIDER_SECRET_FIELDS)
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


class Settings(BaseSettings, ProviderSettings):
    """Everything mailsc reads from the environment; build it once at an entry point and pass it down.

    The HTTP provider and failover variables (``MAILSC_TRANSPORT_URL``, ``MAILSC_TRANSPORTS``, ``AWS_*``, ...) are
    declared in ``config/transports.py``."""

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

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0].lower()
        if scheme not in ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite:/// (a file) or postgresql:// (to scale out)")
        return value

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
        settings, field_problems = validate_reporting_all(data, handler, names, secrets)
        problems += field_problems
        if settings is not None:
            assert isinstance(settings, Settings)
            problems = merge_problems(problems, settings._build_smtp())
            plan, plan_problems = build_transport_plan(settings, smtp_configured=settings._smtp is not None)
            problems = merge_problems(problems, plan_problems)
            settings._transport_plan = plan
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
        smtp_url = self.smtp_url if self.smtp_url is not None else smtp_transport_url(self)
        if smtp_url is not None:
            if self.smtp_url is not None and smtp_transport_url(self) is not None:
                hint = "give the SMTP server once"
                return [*problems, ConfigProblem("MAILSC_TRANSPORT_URL", "both it and MAILSC_SMTP_URL are set", hint)]
            try:
                fields = _parse_smtp_url(smtp_url.get_secret_value())
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
        return default_sender(self.mail_from, self.mail_from_name)


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
