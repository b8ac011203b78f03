"""The library facade: ``Mailer`` validates and renders messages, then sends them now through one pooled
transport (``send``) or stores them durably for the delivery worker (``enqueue``). It is the one place besides the
worker that knows both the outbox and the transports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from .config import ConnectionConfig, Settings
from .delivery.retry import RetryPolicy
from .delivery.router import FailoverTransport
from .delivery.worker import Worker
from .envelope import Envelope
from .errors import ConfigError, DeliveryError, MessageError
from .message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address, Message
from .mime import render
from .outbox.records import AddResult, MessageRecord, NewMessage, fingerprint
from .outbox.store import OutboxStore
from .outbox.templates import StoredTemplate
from .templates import (
    FileTemplates,
    RenderedTemplate,
    TemplateCatalog,
    TemplateLimits,
    check_template_fields,
    message_from_template,
)
from .transports.base import SendResult, Transport
from .transports.capture import CaptureTransport
from .transports.memory import MemoryTransport
from .transports.providers import provider_transport
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
        outbox: OutboxStore | str | None = None,
        retry_policy: RetryPolicy | None = None,
        templates_dir: str | os.PathLike[str] = Path("templates/email"),
        template_limits: TemplateLimits | None = None,
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
        self.retry_policy = retry_policy or RetryPolicy()
        self._outbox = outbox
        self._outbox_lock = asyncio.Lock()
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._wake_elsewhere: Callable[[], None] | None = None
        # Templates by name: the latest stored version (when there is an outbox), else the files of templates_dir.
        self.templates = TemplateCatalog(
            FileTemplates(templates_dir, limits=template_limits), lookup=self._stored_template
        )

    @staticmethod
    def transport_for(settings: Settings) -> Transport:
        """The configured transports in failover order (``MAILSC_TRANSPORTS``; one alone is used as it is): SMTP
        (memory with ``SUPPRESS_SEND``) and HTTP providers; with none configured, the capture transport."""
        plan = settings.transport_plan
        if plan is not None:
            sender = settings.sender.email if settings.sender is not None else None
            members: list[Transport] = []
            for name in plan.order:
                if name == "smtp" and settings.smtp is not None:
                    members.append(MemoryTransport() if settings.smtp.suppress_send else SmtpTransport(settings.smtp))
                elif name in plan.providers:
                    members.append(provider_transport(plan.providers[name], sender=sender))
            if len(members) == 1:
                return members[0]
            if members:
                return FailoverTransport(members)
        if settings.smtp is None:
            logger.warning(
                "mailer.capture_mode",
                extra={"detail": "no SMTP server configured (MAILSC_SMTP_URL, MAILSC_SMTP_HOST): mail is captured"},
            )
            return CaptureTransport()
        return MemoryTransport() if settings.smtp.suppress_send else SmtpTransport(settings.smtp)

    @classmethod
    def from_env(cls, settings: Settings | None = None, *, outbox: OutboxStore | None = None) -> Mailer:
        """Build a mailer from ``MAILSC_*`` settings (read from the environment when not given): SMTP when a server
        is configured, else the capture transport (mail kept for the dev inbox, never sent); the outbox from
        ``MAILSC_DATABASE_URL`` unless an open ``outbox`` is given."""
        settings = settings if settings is not None else Settings()
        transport = cls.transport_for(settings)
        return cls(
            transport=transport,
            default_sender=settings.sender,
            max_size=settings.max_message_size,
            max_recipients=settings.max_recipients,
            outbox=outbox if outbox is not None else settings.database_url.get_secret_value(),
            retry_policy=RetryPolicy(max_age=settings.retry_max_age),
            templates_dir=settings.templates_dir,
        )

    @property
    def outbox(self) -> list[Envelope]:
        """Messages kept by a ``MemoryTransport`` (for tests); raises if the transport keeps none."""
        if not isinstance(self.transport, MemoryTransport):
            raise AttributeError("only a Mailer on a MemoryTransport keeps an outbox")
        return list(self.transport.outbox)

    async def _stored_template(self, name: str) -> StoredTemplate | None:
        if self._outbox is None:
            return None
        return await (await self.outbox_store()).get_template(name)

    async def compose(
        self,
        message: Message | Mapping[str, Any],
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> tuple[Message, RenderedTemplate | None]:
        """The ``Message`` to send: ``message`` itself, or with ``template`` its fields (a mapping such as
        ``{"to": "ada@example.org"}``) completed by the rendered template. Raises ``MessageError`` or
        ``TemplateError`` (naming the template, line and missing variable)."""
        if template is None:
            if variables is not None:
                raise MessageError.single("variables", "variables are only used with a template")
            return (message if isinstance(message, Message) else Message.from_dict(message)), None
        if isinstance(message, Message):
            raise TypeError("with a template, give the other message fields as a mapping: {'to': ...}")
        check_template_fields(message)
        rendered = await self.templates.render(template, variables or {})
        return message_from_template(message, rendered), rendered

    async def send(
        self,
        message: Message | Mapping[str, Any],
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> SendResult:
        """Render and deliver ``message`` now; raises ``MessageError``, ``TemplateError`` or a ``DeliveryError``.

        With ``template=`` (a stored template, else a file in the templates folder) and ``variables=``,
        ``message`` holds the other fields: ``await mailer.send({"to": "ada@example.org"}, template="welcome",
        variables={"name": "Ada"})``."""
        message, _ = await self.compose(message, template=template, variables=variables)
        envelope = render(
            message, default_sender=self.default_sender, max_size=self.max_size, max_recipients=self.max_recipients
        )
        return await self.transport.send(envelope)

    async def outbox_store(self) -> OutboxStore:
        """The durable outbox, opened (and migrated) on first use."""
        async with self._outbox_lock:
            if self._outbox is None:
                raise TypeError("this Mailer has no outbox: pass outbox=OutboxStore or a database URL")
            if isinstance(self._outbox, str):
                self._outbox = await OutboxStore.open(self._outbox)
            return self._outbox

    async def enqueue(
        self,
        message: Message | Mapping[str, Any],
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        """Store ``message`` durably for delivery and return its id; it survives a restart of this process.

        The same ``idempotency_key`` with the same message returns the first id; with another message it raises
        ``IdempotencyConflictError``. ``send_at`` delays the first try; undelivered mail past ``expires_at`` is
        dropped as expired. With ``template=`` and ``variables=`` the message is rendered now (a template error
        stores nothing) and records the template's name and version; ``message`` then holds the other fields.
        """
        result = await self.enqueue_with_result(
            message,
            template=template,
            variables=variables,
            idempotency_key=idempotency_key,
            send_at=send_at,
            expires_at=expires_at,
        )
        return result.id

    async def enqueue_with_result(
        self,
        message: Message | Mapping[str, Any],
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> AddResult:
        """Like ``enqueue``, returning the ``AddResult`` (``id``, ``created_at``, ``replayed``)."""
        for name, value in (("send_at", send_at), ("expires_at", expires_at)):
            if value is not None and value.tzinfo is None:
                raise MessageError.single(name, "must be timezone-aware (e.g. datetime.now(UTC))")
        request = message
        message, rendered = await self.compose(message, template=template, variables=variables)
        envelope = render(
            message, default_sender=self.default_sender, max_size=self.max_size, max_recipients=self.max_recipients
        )
        # The request's fingerprint only tells a replay from a conflicting reuse of a key: without a key, skip it.
        # With a template, the request (name and variables), not its rendering: a replay after a new version of the
        # template is still the same request.
        digest = ""
        if idempotency_key is not None:
            digest = fingerprint(
                _request_json(request, template, variables)
                if template is not None
                else message.model_dump_json(by_alias=True),
                str(send_at),
                str(expires_at),
            )
        store = await self.outbox_store()
        result = await store.add(
            NewMessage(
                envelope,
                digest,
                idempotency_key,
                send_at,
                expires_at,
                tuple(message.tags),
                dict(message.metadata),
                rendered.name if rendered is not None else None,
                rendered.version if rendered is not None else None,
            )
        )
        self.wake_worker()
        return result

    async def status(self, message_id: str) -> MessageRecord:
        """A queued message's status and event timeline."""
        return await (await self.outbox_store()).get(message_id)

    async def worker(self, **options: Any) -> Worker:
        """A delivery ``Worker`` over this mailer's outbox and transport (``await worker.run()``)."""
        return Worker(await self.outbox_store(), self.transport, self.retry_policy, **options)

    def attach_worker(self, worker: Worker) -> None:
        """Adopt a worker run by the caller, so ``reload`` switches its transport too."""
        self._worker = worker

    async def start_worker(self, **options: Any) -> Worker:
        """Run the delivery worker in the background of this process until ``aclose()``."""
        if self._worker is None:
            self._worker = await self.worker(**options)
            self._worker_task = asyncio.create_task(self._worker.run())
        return self._worker

    async def reload(self, settings: Settings) -> None:
        """Use new settings (a rotated password, a new certificate) without dropping the queue or in-flight sends:
        new messages and the worker switch to a fresh transport; the old one closes as its sends finish."""
        old = self.transport
        self.transport = self.transport_for(settings)
        self.default_sender = settings.sender
        self.max_size, self.max_recipients = settings.max_message_size, settings.max_recipients
        if self._worker is not None:
            self._worker.replace_transport(self.transport)
        await old.aclose()

    async def reload_from_env(self) -> bool:
        """Re-read the configuration (SIGHUP); invalid new settings are refused and the old ones stay in force."""
        try:
            settings = Settings()
        except ConfigError as exc:
            logger.error("config.reload_refused", extra={"problems": [str(p) for p in exc.problems]})
            return False
        await self.reload(settings)
        logger.warning("config.reloaded", extra={"transport": self.transport.name})
        return True

    def transport_problem(self) -> DeliveryError | None:
        """Why the background worker has paused the transport (its setup is broken), or None."""
        return self._worker.breaker.cause if self._worker is not None else None

    def wake_worker(self) -> None:
        """Tell the background worker (if any) that mail became due, e.g. after a retry."""
        if self._worker is not None:
            self._worker.wake()
        elif self._wake_elsewhere is not None:
            self._wake_elsewhere()

    def wake_elsewhere(self, wake: Callable[[], None]) -> None:
        """How to wake a worker that runs in another process (``mailsc serve``'s worker process) when mail is
        accepted here, so it does not wait for its next poll of the outbox."""
        self._wake_elsewhere = wake

    async def aclose(self) -> None:
        """Stop the background worker (finishing in-flight sends), close the pool and the outbox."""
        if self._worker is not None and self._worker_task is not None:
            self._worker.stop()
            await self._worker_task
            self._worker = self._worker_task = None
        await self.transport.aclose()
        if isinstance(self._outbox, OutboxStore):
            await self._outbox.close()

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _request_json(fields: Message | Mapping[str, Any], template: str, variables: Mapping[str, Any] | None) -> str:
    """A templated request as canonical JSON (values JSON cannot hold by their ``str``), for its fingerprint."""
    body = fields.model_dump(mode="json", by_alias=True) if isinstance(fields, Message) else dict(fields)
    return json.dumps([template, variables or {}, body], sort_keys=True, default=str)
