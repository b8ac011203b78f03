"""The unit every transport sends and the outbox stores: envelope addresses plus the finished MIME bytes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Envelope:
    """A fully rendered message, ready for the wire.

    ``data`` is the exact RFC 5322 message (CRLF line endings, no line over 998 octets, no ``Bcc`` header);
    ``recipients`` includes Bcc. ``smtputf8`` is true when an address needs the SMTPUTF8 extension. ``tags`` and
    ``metadata`` are not in the bytes: SMTP ignores them; the provider transports map them to the provider's own
    fields (SendGrid categories, Postmark Tag/Metadata, SES EmailTags, ...).
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str
    smtputf8: bool = False
    subject: str = field(default="", compare=False)
    tags: tuple[str, ...] = field(default=(), compare=False)
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
