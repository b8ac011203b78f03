"""fastapi-mail's ``ConnectionConfig``: the same fields, types, defaults and required fields, read from keyword
arguments or the environment like fastapi-mail's (a pydantic-settings model). On top of fastapi-mail's own field
checks, every value and combination is checked by mailsc's ``ConnectionConfig`` (port 465 with STARTTLS, both TLS
flags on, plaintext to a remote host, a CA bundle that does not exist, ...), and all problems are reported at once
in one ``pydantic.ValidationError``, the error class fastapi-mail users already handle.

This is the one place outside ``mailsc.config`` that reads the environment: fastapi-mail's contract is that
``ConnectionConfig()`` picks up ``MAIL_SERVER`` and friends by itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

from jinja2 import Environment
from pydantic import DirectoryPath, EmailStr, Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ...config import ConnectionConfig as SmtpConfig
from ...errors import ConfigError, ConfigProblem
from .templates import environment

# mailsc's field -> the fastapi-mail field a person changes.
_NAMES = {
    "host": "MAIL_SERVER",
    "port": "MAIL_PORT",
    "username": "MAIL_USERNAME",
    "password": "MAIL_PASSWORD",
    "security": "MAIL_STARTTLS/MAIL_SSL_TLS",
    "starttls": "MAIL_STARTTLS",
    "ssl_tls": "MAIL_SSL_TLS",
    "use_credentials": "USE_CREDENTIALS",
    "verify_certs": "VALIDATE_CERTS",
    "ca_file": "CERT_BUNDLE",
    "timeout": "TIMEOUT",
    "mail_from": "MAIL_FROM",
    "mail_from_name": "MAIL_FROM_NAME",
    "local_hostname": "LOCAL_HOSTNAME",
    "allow_insecure": "ALLOW_INSECURE",
    "pool_size": "POOL_SIZE",
}
_DEPRECATED = {"MAIL_TLS": "MAIL_STARTTLS", "MAIL_SSL": "MAIL_SSL_TLS"}

ZeroOrOne = Annotated[int, Field(gt=-1, lt=2)]


class ConnectionConfig(BaseSettings):
    """fastapi-mail's connection settings (``from fastapi_mail import ConnectionConfig``), checked like mailsc's.

    mailsc additions, all optional: ``OUTBOX_URL`` (a database URL such as ``sqlite:///./mailsc.db``: messages are
    then stored durably and delivered by a worker in this process), ``POOL_SIZE`` (persistent SMTP connections) and
    ``ALLOW_INSECURE`` (plaintext SMTP to a host that is not loopback, refused by default).
    """

    # pydantic-settings' defaults, as fastapi-mail uses them: environment variables, case-insensitive, no prefix.
    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False)

    MAIL_USERNAME: str
    MAIL_PASSWORD: SecretStr
    MAIL_PORT: int
    MAIL_SERVER: str
    MAIL_STARTTLS: bool
    MAIL_SSL_TLS: bool
    MAIL_DEBUG: ZeroOrOne = 0
    MAIL_FROM: EmailStr
    MAIL_FROM_NAME: str | None = None
    TEMPLATE_FOLDER: DirectoryPath | None = None
    SUPPRESS_SEND: ZeroOrOne = 0
    USE_CREDENTIALS: bool = True
    VALIDATE_CERTS: bool = True
    TIMEOUT: int = 60  # aiosmtplib's default, as fastapi-mail's
    LOCAL_HOSTNAME: str | None = None
    CERT_BUNDLE: str | None = None
    # fastapi-mail < 1.0 names, accepted with a DeprecationWarning.
    MAIL_TLS: bool | None = Field(default=None, exclude=True)
    MAIL_SSL: bool | None = Field(default=None, exclude=True)
    # mailsc additions.
    OUTBOX_URL: SecretStr | None = None
    POOL_SIZE: int = Field(default=4, ge=1, le=100)
    ALLOW_INSECURE: bool = False

    @model_validator(mode="before")
    @classmethod
    def _old_tls_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        keys = {str(k).upper(): k for k in data}
        for old, new in _DEPRECATED.items():
            if old in keys and data[keys[old]] is not None:
                warnings.warn(
                    f"{old} is deprecated (fastapi-mail 1.0 renamed it); use {new}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                if new not in keys:
                    data[new] = data[keys[old]]
        return data

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        try:
            self.smtp_config()
        except ConfigError as exc:
            # One error per problem, located at fastapi-mail's field; the input is hidden (it holds the password).
            errors: list[InitErrorDetails] = [
                {
                    "type": PydanticCustomError("mailsc_config", "{problem}", {"problem": p.message + _hint(p.hint)}),
                    "loc": tuple(p.variable.split("/")[:1]),
                    "input": None,
                }
                for p in exc.problems
            ]
            raise ValidationError.from_exception_data(type(self).__name__, errors, hide_input=True) from exc

    def smtp_config(self) -> SmtpConfig:
        """mailsc's ``ConnectionConfig`` for these settings; raises ``ConfigError`` naming fastapi-mail's fields.

        Called again at every send, because fastapi-mail applications change fields in place
        (``fm.config.SUPPRESS_SEND = 1`` in their tests)."""
        username = self.MAIL_USERNAME if self.USE_CREDENTIALS and self.MAIL_USERNAME else None
        try:
            return SmtpConfig(
                host=self.MAIL_SERVER,
                port=self.MAIL_PORT,
                username=username,
                password=self.MAIL_PASSWORD if username else None,
                starttls=self.MAIL_STARTTLS,
                ssl_tls=self.MAIL_SSL_TLS,
                use_credentials=self.USE_CREDENTIALS,
                verify_certs=self.VALIDATE_CERTS,
                ca_file=Path(self.CERT_BUNDLE) if self.CERT_BUNDLE else None,
                timeout=self.TIMEOUT,
                pool_size=self.POOL_SIZE,
                mail_from=str(self.MAIL_FROM),
                mail_from_name=self.MAIL_FROM_NAME,
                local_hostname=self.LOCAL_HOSTNAME,
                allow_insecure=self.ALLOW_INSECURE,
                suppress_send=bool(self.SUPPRESS_SEND),
            )
        except ConfigError as exc:
            raise ConfigError(
                [ConfigProblem(_NAMES.get(p.variable, p.variable), p.message, p.hint) for p in exc.problems]
            ) from None

    def template_engine(self) -> Environment:
        """fastapi-mail's Jinja2 environment for ``TEMPLATE_FOLDER`` (autoescape on)."""
        folder = self.TEMPLATE_FOLDER
        if not folder:
            raise ValueError("Class initialization did not include a ``TEMPLATE_FOLDER`` ``PathLike`` object.")
        return environment(Path(folder))


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""
