"""HTTP provider profiles and the transport order: ``ProviderConfig``, transport URLs and the ``MAILSC_TRANSPORTS``
failover list.

A profile is named by its kind (``ses``, ``sendgrid``, ``mailgun``, ``postmark``, ``resend``, and ``smtp`` for the
SMTP profile of ``settings.py``). Each comes from a URL in the style of Symfony Mailer's DSNs
(``MAILSC_TRANSPORT_URL=postmark://TOKEN@`` for the only transport, or ``MAILSC_POSTMARK_URL`` for one of several) or
variable by variable (``MAILSC_POSTMARK_TOKEN``, ``AWS_ACCESS_KEY_ID``, ...). ``ProviderSettings`` holds those
variables and is mixed into ``Settings``; ``transport_plan.build_transport_plan`` turns them into profiles and lists
every problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import AliasChoices, BaseModel, Field, PrivateAttr, SecretStr

ProviderKind = Literal["ses", "sendgrid", "mailgun", "postmark", "resend"]
PROVIDER_KINDS: tuple[str, ...] = get_args(ProviderKind)
TRANSPORT_NAMES: tuple[str, ...] = ("smtp", *PROVIDER_KINDS)

_MB = 1024 * 1024
# The largest stored message (MIME bytes) each provider takes. SES and Resend count 40 MB after base64.
MAX_SIZES: dict[str, int] = {
    "ses": 40 * _MB * 3 // 4,
    "sendgrid": 30 * _MB,
    "mailgun": 25 * _MB,
    "postmark": 10 * _MB,
    "resend": 40 * _MB * 3 // 4,
}


def _env(*names: str) -> Any:
    return AliasChoices(*names)


PROVIDER_SECRET_FIELDS = (
    "transport_url",
    "ses_url",
    "sendgrid_url",
    "mailgun_url",
    "postmark_url",
    "resend_url",
    "aws_secret_access_key",
    "aws_session_token",
    "sendgrid_api_key",
    "mailgun_api_key",
    "postmark_token",
    "resend_api_key",
)


@dataclass(frozen=True)
class ProviderConfig:
    """One HTTP provider profile, resolved and checked. Secrets stay ``SecretStr``."""

    kind: str
    endpoint: str
    api_key: SecretStr | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    region: str | None = None
    domain: str | None = None
    configuration_set: str | None = None
    message_stream: str | None = None
    timeout: float = 30.0
    pool_size: int = 10
    http2: bool = True
    ca_file: Path | None = None
    max_size: int = 10 * _MB

    @property
    def name(self) -> str:
        return self.kind


@dataclass(frozen=True)
class TransportPlan:
    """The transports to use, in failover order (profile names), and the provider profiles among them."""

    order: tuple[str, ...]
    providers: dict[str, ProviderConfig]


class ProviderSettings(BaseModel):
    """The provider and failover variables; mixed into ``Settings`` (which reads them from the environment)."""

    transport_url: SecretStr | None = None
    transports: str | None = None
    ses_url: SecretStr | None = None
    ses_region: str | None = None
    ses_configuration_set: str | None = None
    ses_endpoint: str | None = None
    aws_access_key_id: str | None = Field(None, validation_alias=_env("AWS_ACCESS_KEY_ID", "MAILSC_AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=_env("AWS_SECRET_ACCESS_KEY", "MAILSC_AWS_SECRET_ACCESS_KEY")
    )
    aws_session_token: SecretStr | None = Field(
        None, validation_alias=_env("AWS_SESSION_TOKEN", "MAILSC_AWS_SESSION_TOKEN")
    )
    aws_region: str | None = Field(None, validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))
    sendgrid_url: SecretStr | None = None
    sendgrid_api_key: SecretStr | None = None
    sendgrid_endpoint: str | None = None
    mailgun_url: SecretStr | None = None
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    mailgun_region: str | None = None
    mailgun_endpoint: str | None = None
    postmark_url: SecretStr | None = None
    postmark_token: SecretStr | None = None
    postmark_message_stream: str | None = None
    postmark_endpoint: str | None = None
    resend_url: SecretStr | None = None
    resend_api_key: SecretStr | None = None
    resend_endpoint: str | None = None
    provider_timeout: float = Field(30.0, gt=0)
    provider_pool_size: int = Field(10, ge=1, le=1000)
    provider_http2: bool = True
    provider_ca_file: Path | None = None

    _transport_plan: TransportPlan | None = PrivateAttr(default=None)

    @property
    def transport_plan(self) -> TransportPlan | None:
        """The transports in failover order, or ``None`` when only the SMTP/capture default applies."""
        return self._transport_plan

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        """The configured HTTP provider profiles by name."""
        return self._transport_plan.providers if self._transport_plan is not None else {}


def url_scheme(url: SecretStr | None) -> str | None:
    """The kind a transport URL names (``smtps`` -> ``smtp``, ``sendgrid+api`` -> ``sendgrid``), or None."""
    if url is None:
        return None
    scheme = url.get_secret_value().partition("://")[0].lower().split("+", 1)[0]
    return "smtp" if scheme in ("smtp", "smtps") else scheme


def smtp_transport_url(settings: ProviderSettings) -> SecretStr | None:
    """``MAILSC_TRANSPORT_URL`` when it is an ``smtp://`` or ``smtps://`` URL (it then stands for MAILSC_SMTP_URL)."""
    return settings.transport_url if url_scheme(settings.transport_url) == "smtp" else None
