"""SMTP delivery over a pool of persistent, verified-TLS aiosmtplib connections.

This module and ``smtp_errors.py`` are the only ones that see aiosmtplib's exceptions; each is translated into the
``errors.py`` tree.
The TLS context is built once per transport (``ssl.create_default_context()`` costs ~30 ms of CPU) and reused for
every connection. STARTTLS, when configured, is required: a server that does not offer it gets no ``MAIL FROM``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPDataError,
    SMTPException,
    SMTPNotSupported,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from ..config import ConnectionConfig, is_loopback
from ..envelope import Envelope
from ..errors import (
    AuthenticationError,
    ConnectionSetupError,
    DeliveryError,
    RecipientRefusal,
    RecipientsRefusedError,
    SenderNotAcceptedError,
    SenderRefusedError,
    TlsSetupError,
    parse_enhanced_code,
)
from .base import SendResult
from .smtp_errors import AUTH_HINTS, connect_error, reply_error
from .tls import build_tls_context

logger = logging.getLogger(__name__)

# A connection idle longer than this is checked with NOOP before use: servers drop idle sessions (often after 60 s+).
STALE_AFTER_SECONDS = 15.0
FAIL_FAST_SECONDS = 5.0


class SmtpTransport:
    """Sends envelopes over at most ``pool_size`` persistent connections, each reused for many messages."""

    def __init__(self, config: ConnectionConfig, *, name: str = "smtp") -> None:
        self.name = name
        self.config = config
        self._tls_context = build_tls_context(config) if config.security != "none" else None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(config.pool_size)
        self._open = 0
        self._closed = False
        self.connections_opened = 0
        self._setup_failure: tuple[float, ConnectionSetupError] | None = None
        if config.security != "none" and not config.verify_certs:
            logger.warning(
                "smtp.verify_certs_disabled", extra={"host": config.host, "detail": "certificates are NOT verified"}
            )
        if config.security == "none" and not is_loopback(config.host):
            logger.warning(
                "smtp.plaintext",
                extra={"host": config.host, "detail": "mail and credentials cross the network unencrypted"},
            )

    @property
    def open_connections(self) -> int:
        return self._open

    async def send(self, envelope: Envelope) -> SendResult:
        """Deliver one envelope; raises a ``DeliveryError`` subclass when no recipient got it."""
        if self._closed:
            raise DeliveryError("the SMTP transport is closed", transient=True)
        async with self._slots:
            connection = await self._acquire()
            reuse = False
            try:
                try:
                    result, reuse = await self._transact(connection, envelope)
                except _StaleConnectionError:
                    # The server dropped an idle session between our check and MAIL FROM: nothing was sent yet.
                    self._discard(connection)
                    connection = await self._open_connection()
                    result, reuse = await self._transact(connection, envelope, stale_retry=False)
                return result
            except DeliveryError as exc:
                # After a clean refusal (and RSET) the session is still good; after a timeout its state is unknown.
                reuse = exc.smtp_code is not None and exc.smtp_code != 421 and connection.smtp.is_connected
                raise
            finally:
                if reuse and not self._closed and connection.smtp.is_connected:
                    connection.last_used = time.monotonic()
                    self._idle.append(connection)
                else:
                    self._discard(connection)

    async def check(self) -> None:
        """Open, secure and authenticate one connection without sending (a probe); raises as ``send`` would."""
        connection = await self._open_connection(probe=True)
        self._discard(connection, polite=True)

    async def aclose(self) -> None:
        """Close every idle connection with QUIT; connections in use close when their send finishes."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(c) for c in idle))

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.smtp.is_connected:
                self._discard(connection)
                continue
            if time.monotonic() - connection.last_used > STALE_AFTER_SECONDS:
                try:
                    await connection.smtp.noop()
                except (SMTPException, OSError):
                    self._discard(connection)
                    continue
            return connection
        return await self._open_connection()

    async def _open_connection(self, *, probe: bool = False) -> _Connection:
        # After a setup failure (wrong password, bad certificate, server down), the sends queued behind it fail at
        # once with the same error instead of each trying again: a handful of AUTH attempts, not one per message.
        failed = self._setup_failure
        if failed is not None and not probe and time.monotonic() - failed[0] < FAIL_FAST_SECONDS:
            raise failed[1]
        config = self.config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            use_tls=config.security == "tls",
            start_tls=False,
            tls_context=self._tls_context,
            timeout=config.timeout,
            local_hostname=config.local_hostname,
        )
        self._open += 1
        self.connections_opened += 1
        connection = _Connection(smtp)
        try:
            await self._handshake(smtp)
        except ConnectionSetupError as exc:
            self._setup_failure = (time.monotonic(), exc)
            self._discard(connection)
            raise
        except BaseException:
            self._discard(connection)
            raise
        self._setup_failure = None
        return connection

    async def _handshake(self, smtp: aiosmtplib.SMTP) -> None:
        config = self.config
        try:
            await smtp.connect()
            await smtp.ehlo()
        except (SMTPException, OSError) as exc:
            raise connect_error(exc, self.config) from None
        if config.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise TlsSetupError(
                    f"{config.host}:{config.port} does not offer STARTTLS, which is configured as required; "
                    "nothing was sent in clear",
                    transient=False,
                    hint="check the port (465 speaks implicit TLS: security=tls) or the server's TLS setup",
                )
            try:
                await smtp.starttls(tls_context=self._tls_context)
                await smtp.ehlo()
            except (SMTPException, OSError) as exc:
                raise connect_error(exc, self.config, during="STARTTLS") from None
        if config.username is not None and config.password is not None:
            try:
                await self._login(smtp, config.username, config.password.get_secret_value())
            except SMTPAuthenticationError as exc:
                raise AuthenticationError(
                    f"{config.host} refused the login: {exc.code} {exc.message}",
                    transient=False,
                    smtp_code=exc.code,
                    enhanced_code=parse_enhanced_code(exc.message),
                    hint=AUTH_HINTS.get(exc.code, "check the username and password"),
                ) from None
            except SMTPNotSupported:
                offered = smtp.esmtp_extensions.get("auth", "none")
                raise AuthenticationError(
                    f"{config.host} offers no authentication mechanism mailsc can use (offered: {offered})",
                    transient=False,
                    hint="many servers offer AUTH only after TLS: use security=starttls or tls",
                ) from None
            except (SMTPException, OSError) as exc:
                raise connect_error(exc, self.config, during="AUTH") from None

    @staticmethod
    async def _login(smtp: aiosmtplib.SMTP, username: str, password: str) -> None:
        """One AUTH attempt with the best mechanism offered: retrying others with the same wrong password only
        brings an account lock-out closer."""
        offered = smtp.supported_auth_methods
        for mechanism, method in (
            ("plain", smtp.auth_plain),
            ("login", smtp.auth_login),
            ("cram-md5", smtp.auth_crammd5),
        ):
            if mechanism in offered:
                await method(username, password)
                return
        raise SMTPNotSupported("no supported AUTH mechanism")

    async def _transact(
        self, connection: _Connection, envelope: Envelope, *, stale_retry: bool = True
    ) -> tuple[SendResult, bool]:
        """One MAIL/RCPT/DATA transaction. Returns the result and whether the connection can be reused.

        MAIL and RCPT go through ``execute_command`` with the addresses as validated bytes: aiosmtplib's own
        ``mail()``/``rcpt()`` re-parse every address with ``email.utils``, a third of the CPU a message cost."""
        smtp = connection.smtp
        encoding = "ascii"
        options: list[bytes] = []
        if envelope.smtputf8:
            if not smtp.supports_extension("smtputf8"):
                raise DeliveryError("an address needs SMTPUTF8, which the server does not offer", transient=False)
            options.append(b"SMTPUTF8")
            encoding = "utf-8"
        if smtp.supports_extension("size"):
            options.append(b"SIZE=%d" % len(envelope.data))
        try:
            reply = await smtp.execute_command(b"MAIL", b"FROM:<%s>" % envelope.sender.encode(encoding), *options)
        except (SMTPServerDisconnected, ConnectionError) as exc:
            if stale_retry and connection.used:
                raise _StaleConnectionError from exc
            raise DeliveryError(f"connection lost at MAIL FROM: {exc}", transient=True) from None
        except SMTPTimeoutError:
            raise DeliveryError("timed out waiting for the reply to MAIL FROM", transient=True) from None
        connection.used = True
        if reply.code != 250:
            await self._reset(smtp)
            if reply.code == 421:
                raise reply_error(reply.code, reply.message, "the server is closing the connection")
            configured = self.config.sender
            if reply.code >= 500 and configured is not None and configured.email == envelope.sender:
                raise SenderNotAcceptedError(
                    f"{self.config.host} refuses the configured sender {envelope.sender}: {reply.code} {reply.message}",
                    transient=False,
                    smtp_code=reply.code,
                    enhanced_code=parse_enhanced_code(reply.message),
                    hint="verify the sender address or domain with your provider, or change MAILSC_MAIL_FROM",
                )
            raise SenderRefusedError(
                f"sender {envelope.sender} refused: {reply.code} {reply.message}",
                transient=reply.code < 500,
                smtp_code=reply.code,
                enhanced_code=parse_enhanced_code(reply.message),
            )
        accepted: list[str] = []
        refused: list[RecipientRefusal] = []
        try:
            for recipient in envelope.recipients:
                reply = await smtp.execute_command(b"RCPT", b"TO:<%s>" % recipient.encode(encoding))
                if reply.code in (250, 251):
                    accepted.append(recipient)
                elif reply.code == 421:
                    raise reply_error(reply.code, reply.message, "the server is closing the connection")
                else:
                    refused.append(
                        RecipientRefusal(recipient, reply.code, reply.message, parse_enhanced_code(reply.message))
                    )
            if not accepted:
                await self._reset(smtp)
                raise RecipientsRefusedError(refused)
            response = await self._data(smtp, envelope.data)
        except SMTPResponseException as exc:
            await self._reset(smtp)
            raise reply_error(exc.code, exc.message, "message refused") from None
        except (SMTPServerDisconnected, ConnectionError) as exc:
            raise DeliveryError(f"connection lost during the transaction: {exc}", transient=True) from None
        except SMTPTimeoutError:
            raise DeliveryError(
                f"timed out after {self.config.timeout:g} s waiting for the server", transient=True
            ) from None
        result = SendResult(
            envelope.message_id, tuple(accepted), tuple(refused), f"{response.code} {response.message}", self.name
        )
        return result, smtp.is_connected

    async def _data(self, smtp: aiosmtplib.SMTP, data: bytes) -> SMTPResponse:
        """DATA, then the message. ``smtp.data()`` would run two regular expressions over every message to
        normalise line endings and dot-stuff; stored messages are already CRLF throughout (checked here with two
        byte counts), so only the dot-stuffing is done, by ``bytes.replace``. The connection is this send's alone
        (the pool hands it out exclusively), so nothing can interleave between the two replies."""
        start = await smtp.execute_command(b"DATA")
        if start.code != 354:
            raise SMTPDataError(start.code, start.message)
        if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
            data = b"\r\n".join(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        protocol = smtp.protocol
        if protocol is None:
            raise SMTPServerDisconnected("connection lost before the message was sent")
        protocol.write(stuffed + b".\r\n")
        try:
            response = await protocol.read_response(timeout=self.config.timeout)
        except (SMTPServerDisconnected, SMTPTimeoutError):
            smtp.close()
            raise
        if response.code != 250:
            raise SMTPDataError(response.code, response.message)
        return response

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected:
            try:
                await smtp.rset()
            except (SMTPException, OSError):
                smtp.close()

    def _discard(self, connection: _Connection, *, polite: bool = False) -> None:
        if connection.closed:
            return
        connection.closed = True
        self._open -= 1
        if polite and connection.smtp.is_connected:
            task = asyncio.get_running_loop().create_task(self._quit_only(connection))
            _background.add(task)
            task.add_done_callback(_background.discard)
        else:
            connection.smtp.close()

    async def _quit(self, connection: _Connection) -> None:
        if not connection.closed:
            connection.closed = True
            self._open -= 1
            await self._quit_only(connection)

    @staticmethod
    async def _quit_only(connection: _Connection) -> None:
        try:
            await connection.smtp.quit(timeout=5)
        except (SMTPException, OSError):
            connection.smtp.close()


_background: set[asyncio.Task[None]] = set()


class _StaleConnectionError(Exception):
    """A reused connection was found dead before anything of the message was sent."""


@dataclass(eq=False)
class _Connection:
    smtp: aiosmtplib.SMTP
    last_used: float = 0.0
    used: bool = False
    closed: bool = False

    def __post_init__(self) -> None:
        self.last_used = time.monotonic()
