"""The library facade: ``Mailer`` validates, renders and sends messages through one pooled transport."""

from __future__ import annotations

import logging
from types import TracebackType

from .config import ConnectionConfig, Settings
from .message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address, Message
from .mime import render
from .transports.base import SendResult, Transport
from .transports.memory import MemoryTransport
from .transports.smtp import SmtpTransport

logger = logging.getLogger(__name__)


class Mailer:
    """Sends ``Message`` objects; safe to share between many coroutines.

    ``Mailer(ConnectionConfig(...))`` sends over SMTP through a connection pool opened lazily; ``transport=``
    plugs in any other transport (``MemoryTransport`` for an application's tests). Use ``async with`` or call
    ``aclose()`` so pooled connections end with a polite QUIT.
    """

    def __init__(
        self,
        config: ConnectionConfig | None = None,
        *,
        transport: Transport | None = None,
        default_sender: Address | str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    ) -> None:
        if transport is None:
            if config is None:
                raise TypeError("Mailer needs a ConnectionConfig or a transport")
            transport = MemoryTransport() if config.suppress_send else SmtpTransport(config)
        self.transport = transport
        sender = default_sender if default_sender is not None else (config.sender if config else None)
        self.default_sender = Address.parse(sender) if sender is not None else None
        self.max_size = max_size
        self.max_recipients = max_recipients

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> Mailer:
        """Build a mailer from ``MAILSC_*`` settings (read from the environment when not given)."""
        settings = settings if settings is not None else Settings()
        if settings.smtp is None:
            logger.warning("mailer.no_smtp: no SMTP server configured; messages are kept in memory only")
            transport: Transport = MemoryTransport()
        else:
            transport = MemoryTransport() if settings.smtp.suppress_send else SmtpTransport(settings.smtp)
        return cls(
            transport=transport,
            default_sender=settings.sender,
            max_size=settings.max_message_size,
            max_recipients=settings.max_recipients,
        )

    @property
    def outbox(self) -> list[object]:
        """Messages kept by a ``MemoryTransport`` (for tests); raises if the transport keeps none."""
        if not isinstance(self.transport, MemoryTransport):
            raise AttributeError("only a Mailer on a MemoryTransport keeps an outbox")
        return list(self.transport.outbox)

    async def send(self, message: Message) -> SendResult:
        """Render and deliver ``message`` now; raises ``MessageError`` or a ``DeliveryError`` subclass."""
        envelope = render(
            message, default_sender=self.default_sender, max_size=self.max_size, max_recipients=self.max_recipients
        )
        return await self.transport.send(envelope)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
