"""A transport that keeps every message in a list: for an application's own tests, with no network."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from ..envelope import Envelope
from .base import SendResult


class MemoryTransport:
    """Keeps sent envelopes in ``outbox``, like Django's ``mail.outbox``."""

    name = "memory"

    def __init__(self) -> None:
        self.outbox: list[Envelope] = []

    async def send(self, envelope: Envelope) -> SendResult:
        self.outbox.append(envelope)
        return SendResult(envelope.message_id, envelope.recipients, reply="kept in memory", transport=self.name)

    def messages(self) -> list[EmailMessage]:
        """The kept messages parsed back, to assert on headers and parts."""
        return [email.message_from_bytes(e.data, _class=EmailMessage, policy=email.policy.default) for e in self.outbox]

    async def aclose(self) -> None:
        return None
