"""The dev-inbox transport: accepts every message without sending it anywhere.

With no SMTP server configured, mailsc captures mail: the outbox row (which holds the exact MIME bytes) becomes
``sent`` with ``transport=capture`` in its event, and the API and the dev inbox page show it.
"""

from __future__ import annotations

from ..envelope import Envelope
from .base import SendResult


class CaptureTransport:
    """Delivers nowhere; every message is "sent" to the dev inbox."""

    name = "capture"

    def __init__(self) -> None:
        self.captured = 0

    async def send(self, envelope: Envelope) -> SendResult:
        self.captured += 1
        return SendResult(
            envelope.message_id, envelope.recipients, reply="250 captured in the dev inbox", transport=self.name
        )

    async def aclose(self) -> None:
        return None
