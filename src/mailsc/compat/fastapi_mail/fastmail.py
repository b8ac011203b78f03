"""fastapi-mail's ``FastMail``: ``send_message(message, template_name=None)`` and ``record_messages()`` on mailsc.

What changes underneath: one SMTP connection pool per ``FastMail`` instead of a connection (TLS handshake, login)
per call; certificates verified, STARTTLS required when configured; with ``OUTBOX_URL`` set, ``send_message``
returns once the message is stored, and a worker in this process delivers it (with retries), also after a restart.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from ...config import ConnectionConfig as SmtpConfig
from ...errors import ConnectionSetupError, DeliveryError, MessageError
from ...mailer import Mailer
from ...message import Address, Attachment, Message
from ...mime import render
from .config import ConnectionConfig
from .errors import ConnectionErrors, EmptyMessagesList, PydanticClassRequired, TemplateFolderDoesNotExist
from .schemas import AttachmentItem, MessageSchema, MessageType, MultipartSubtypeEnum, addresses, header_dict
from .templates import render as render_template
from .templates import template_data

_Key = tuple[SmtpConfig, str | None]


@dataclass
class _Pools:
    """The mailers of one event loop, by settings (a pool's connections belong to the loop that opened them)."""

    mailers: dict[_Key, Mailer] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pools] = weakref.WeakKeyDictionary()

# Like fastapi-mail's blinker signal: record_messages() on any FastMail sees what every FastMail sends.
_recorders: list[list[EmailMessage]] = []
_recorders_lock = threading.Lock()


class FastMail:
    """Sends ``MessageSchema`` messages with a ``ConnectionConfig`` (``from fastapi_mail import FastMail``).

    ``mailer=`` shares a ``Mailer`` you already run (e.g. the one from ``mailsc.integrations.fastapi``); its
    transport and outbox are then used instead of the config's server. Close with ``await fm.aclose()``, or use
    ``FastAPI(lifespan=fm.lifespan)`` so a durable FastMail starts delivering at start-up and drains at shutdown.
    """

    def __init__(self, config: ConnectionConfig, *, mailer: Mailer | None = None) -> None:
        self.config = config
        self._shared = mailer
        self._key: _Key | None = None

    @contextmanager
    def record_messages(self) -> Iterator[list[EmailMessage]]:
        """Record every message sent (or suppressed with ``SUPPRESS_SEND``) inside the block, as parsed
        ``EmailMessage`` objects: ``outbox[0]["To"]``, ``outbox[0]["Subject"]``. ``Bcc`` is shown on the recorded
        copy, as on fastapi-mail's; it is never in the bytes sent."""
        outbox: list[EmailMessage] = []
        with _recorders_lock:
            _recorders.append(outbox)
        try:
            yield outbox
        finally:
            with _recorders_lock:
                _recorders.remove(outbox)

    async def send_message(
        self,
        message: MessageSchema | list[MessageSchema],
        template_name: str | None = None,
        html_template: str | None = None,
        plain_template: str | None = None,
    ) -> None:
        """Send one message or a list. With ``template_name`` the template from ``TEMPLATE_FOLDER`` is rendered
        with ``template_body`` as its variables; ``html_template`` + ``plain_template`` render both parts.

        Raises ``ConnectionErrors`` when the server cannot be reached, TLS or login fails; mailsc's
        ``RecipientsRefusedError``/``SenderRefusedError`` where fastapi-mail let aiosmtplib's errors through;
        ``MessageError`` for a message mailsc refuses. With ``OUTBOX_URL`` it returns once the message is stored.
        """
        if not isinstance(self.config, ConnectionConfig):
            raise PydanticClassRequired("Configuration should be provided from ConnectionConfig class")
        composed = [await self._compose(m, template_name, html_template, plain_template) for m in _listed(message)]
        if self.config.SUPPRESS_SEND:
            for item in composed:
                _dispatch(item, _as_email(item))  # rendered even so: a message mailsc refuses raises here too
            return
        mailer, durable = await self._current_mailer()
        for item in composed:
            if durable:
                await mailer.enqueue(item)
            else:
                try:
                    await mailer.send(item)
                except DeliveryError as exc:
                    if isinstance(exc, ConnectionSetupError) or (exc.transient and exc.smtp_code is None):
                        raise ConnectionErrors(
                            f"Exception raised {exc}, check your credentials or email service configuration"
                        ) from exc
                    raise
            _dispatch(item)

    async def get_message(
        self,
        message: MessageSchema | list[MessageSchema],
        template_name: str | None = None,
        html_template: str | None = None,
        plain_template: str | None = None,
    ) -> EmailMessage | list[EmailMessage]:
        """The message(s) as ``send_message`` would send them, without sending (fastapi-mail 1.6)."""
        built = [
            _as_email(await self._compose(m, template_name, html_template, plain_template)) for m in _listed(message)
        ]
        return built if isinstance(message, list) else built[0]

    async def start(self) -> None:
        """Open the outbox and start delivering now (a durable FastMail also sends what an earlier run left)."""
        await self._current_mailer()

    async def aclose(self) -> None:
        """Finish in-flight deliveries, close the SMTP pool and the outbox of this config (shared by every FastMail
        with the same settings in this event loop; a ``mailer=`` you passed in stays open)."""
        pools = _pools.get(asyncio.get_running_loop())
        if self._key is None or pools is None:
            return
        async with pools.lock:
            mailer = pools.mailers.pop(self._key, None)
        if mailer is not None:
            await mailer.aclose()

    @asynccontextmanager
    async def lifespan(self, _app: object = None) -> AsyncIterator[None]:
        """``FastAPI(lifespan=fm.lifespan)``: start at start-up, drain and close at shutdown."""
        await self.start()
        try:
            yield
        finally:
            await self.aclose()

    async def __aenter__(self) -> FastMail:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _current_mailer(self) -> tuple[Mailer, bool]:
        """The pooled mailer for the current settings in this event loop, shared by every ``FastMail`` with the same
        settings: guides build ``FastMail(conf)`` inside the endpoint, and each must not open a pool of its own."""
        if self._shared is not None:
            return self._shared, await _has_outbox(self._shared)
        key = (self.config.smtp_config(), _secret(self.config.OUTBOX_URL))
        self._key = key
        pools = _pools.setdefault(asyncio.get_running_loop(), _Pools())
        async with pools.lock:
            mailer = pools.mailers.get(key)
            if mailer is None:
                mailer = pools.mailers[key] = Mailer(key[0], outbox=key[1])
                if key[1] is not None:
                    await mailer.start_worker()
        return mailer, key[1] is not None

    async def _compose(
        self,
        schema: MessageSchema,
        template_name: str | None,
        html_template: str | None,
        plain_template: str | None,
    ) -> Message:
        """A mailsc ``Message`` from a ``MessageSchema``, its templates rendered and its files read."""
        if not isinstance(schema, MessageSchema):
            raise PydanticClassRequired("All messages must be provided from MessageSchema class")
        primary = schema.template_body if isinstance(schema.template_body, str) else schema.body
        alternative = schema.alternative_body
        both = bool(html_template and plain_template)
        if template_name or both:
            folder = self.config.TEMPLATE_FOLDER
            if folder is None:
                # fastapi-mail silently sends without the template here; a missing folder is a setup mistake.
                raise TemplateFolderDoesNotExist(
                    "a template was asked for, but ConnectionConfig has no TEMPLATE_FOLDER"
                )
            if template_name and schema.template_body is not None:
                primary = render_template(Path(folder), template_name, schema.template_body)
            elif both and html_template and plain_template:
                template_data(schema.template_body)  # fastapi-mail's error for a str or None template_body
                html = render_template(Path(folder), html_template, schema.template_body)
                plain = render_template(Path(folder), plain_template, schema.template_body)
                primary, alternative = (html, plain) if schema.subtype == MessageType.html else (plain, html)
                schema = schema.model_copy(update={"multipart_subtype": MultipartSubtypeEnum.alternative})
        if primary is not None and not isinstance(primary, str):
            raise MessageError.single("body", "must be a string (a list is only usable as template_body)")
        if schema.multipart_subtype != MultipartSubtypeEnum.alternative:
            alternative = None
        html_body, text_body = (primary, alternative) if schema.subtype == MessageType.html else (alternative, primary)
        if html_body is None and text_body is None:
            html_body, text_body = ("", None) if schema.subtype == MessageType.html else (None, "")
        sender = Address(
            email=str(schema.from_email or self.config.MAIL_FROM),
            name=schema.from_name or self.config.MAIL_FROM_NAME or "",
        )
        return Message(
            **{"from": sender},
            to=addresses(schema.recipients),
            cc=addresses(schema.cc),
            bcc=addresses(schema.bcc),
            reply_to=addresses(schema.reply_to),
            subject=schema.subject,
            text=text_body,
            html=html_body,
            headers=header_dict(schema.headers),
            attachments=[await _attachment(item, html=html_body is not None) for item in schema.attachments],
        )


def _listed(message: MessageSchema | list[MessageSchema]) -> list[MessageSchema]:
    if isinstance(message, list):
        if not message:
            raise EmptyMessagesList("Messages list is empty")
        return message
    if not isinstance(message, MessageSchema):
        raise PydanticClassRequired("Message schema should be provided from MessageSchema class")
    return [message]


async def _attachment(item: AttachmentItem | Any, *, html: bool) -> Attachment:
    """fastapi-mail's attachment: an ``UploadFile`` plus optional ``mime_type``/``mime_subtype`` and part
    ``headers``; of those, mailsc honours ``Content-ID`` and an inline ``Content-Disposition``."""
    upload, meta = item
    meta = meta or {}
    await upload.seek(0)
    content = await upload.read()
    content_type = upload.headers.get("content-type") if upload.headers else None
    if meta.get("mime_type") and meta.get("mime_subtype"):
        content_type = f"{meta['mime_type']}/{meta['mime_subtype']}"
    content_type = content_type.split(";")[0].strip() if content_type and "/" in content_type else None
    headers = {str(k).lower(): str(v) for k, v in (meta.get("headers") or {}).items()}
    unknown = sorted(set(headers) - {"content-id", "content-disposition"})
    if unknown:
        raise MessageError.single("attachments", f"attachment headers {unknown} are not supported by mailsc")
    content_id = headers.get("content-id")
    inline = bool(content_id) and html and not headers.get("content-disposition", "").startswith("attachment")
    return Attachment(
        filename=upload.filename or "attachment",
        content=content,
        content_type=content_type,
        inline=inline,
        content_id=content_id if inline else None,
    )


def _as_email(message: Message) -> EmailMessage:
    envelope = render(message)
    parsed = email.message_from_bytes(envelope.data, _class=EmailMessage, policy=email.policy.default)
    if message.bcc:
        parsed["Bcc"] = ", ".join(str(a) for a in message.bcc)
    return parsed


def _dispatch(message: Message, recorded: EmailMessage | None = None) -> None:
    with _recorders_lock:
        recorders = list(_recorders)
    if recorders:
        recorded = recorded if recorded is not None else _as_email(message)
        for outbox in recorders:
            outbox.append(recorded)


async def _has_outbox(mailer: Mailer) -> bool:
    try:
        await mailer.outbox_store()
    except TypeError:
        return False
    return True


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None
