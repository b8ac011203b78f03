"""HTTP provider transports: Amazon SES, SendGrid, Mailgun, Postmark and Resend, each on one pooled httpx client.

SES and Mailgun take the stored MIME bytes as they are; SendGrid, Postmark and Resend take JSON built from it
(``structured.py``). Each module translates its own provider's answers into the four outcome classes.
"""

from __future__ import annotations

from ...config.transports import ProviderConfig
from .http import HttpProviderTransport
from .mailgun import MailgunTransport
from .postmark import PostmarkTransport
from .resend import ResendTransport
from .sendgrid import SendGridTransport
from .ses import SesTransport

PROVIDER_TRANSPORTS: dict[str, type[HttpProviderTransport]] = {
    "ses": SesTransport,
    "sendgrid": SendGridTransport,
    "mailgun": MailgunTransport,
    "postmark": PostmarkTransport,
    "resend": ResendTransport,
}


def provider_transport(config: ProviderConfig, *, sender: str | None = None) -> HttpProviderTransport:
    """The transport for a provider profile; ``sender`` (the configured default) is what ``diagnose`` checks."""
    return PROVIDER_TRANSPORTS[config.kind](config, sender=sender)


__all__ = [
    "PROVIDER_TRANSPORTS",
    "HttpProviderTransport",
    "MailgunTransport",
    "PostmarkTransport",
    "ResendTransport",
    "SendGridTransport",
    "SesTransport",
    "provider_transport",
]
