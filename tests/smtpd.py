"""In-process SMTP servers for tests: aiosmtpd in the test's own event loop, on a loopback port chosen by the OS.

``SmtpServer`` records what it received (envelopes, raw bytes, commands seen, connections) and injects faults
on the server side: scripted replies at MAIL/RCPT/DATA, a line dropped in the middle of DATA, slow replies,
AUTH that rejects, STARTTLS offered or not, implicit TLS. ``RawServer`` is a port that is not a working SMTP
server (silent, closing at once, or sending other bytes), and ``unanswered_port`` one whose TCP connect times out.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]


@dataclass
class Faults:
    """What the server does wrong. Reply queues are consumed one reply per command; empty means normal."""

    mail: deque[str] = field(default_factory=deque)
    rcpt: dict[str, deque[str]] = field(default_factory=dict)  # by recipient address
    rcpt_any: deque[str] = field(default_factory=deque)
    data: deque[str] = field(default_factory=deque)
    drop_during_data: int = 0  # drop the line after this many DATA lines, this many times (see drops_left)
    drops_left: int = 0
    delay: float = 0.0  # seconds before every MAIL/RCPT/DATA reply
    banner: str | None = None  # e.g. "554 no service" to refuse the session at greeting


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def _pause(self) -> None:
        if self.server.faults.delay:
            await asyncio.sleep(self.server.faults.delay)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.server.commands.append(f"MAIL FROM:{address}")
        await self._pause()
        if self.server.faults.mail:
            return self.server.faults.mail.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self.server.commands.append(f"RCPT TO:{address}")
        await self._pause()
        scripted = self.server.faults.rcpt.get(address)
        if scripted:
            return scripted.popleft()
        if self.server.faults.rcpt_any:
            return self.server.faults.rcpt_any.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.server.commands.append("DATA")
        await self._pause()
        if self.server.faults.data:
            return self.server.faults.data.popleft()
        assert envelope.mail_from is not None
        self.server.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                bytes(envelope.original_content or b""),
                list(envelope.mail_options),
            )
        )
        return f"250 2.0.0 Ok: queued as {len(self.server.received)}"


class _FaultySMTP(SMTP):
    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.owner.connections += 1
        self.owner.active += 1
        self.owner.max_active = max(self.owner.max_active, self.owner.active)
        self.owner.transports.add(transport)
        if self.owner.faults.banner is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{self.owner.faults.banner}\r\n".encode())
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner.active -= 1
        self.owner.transports.discard(self.transport)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        faults = self.owner.faults
        if faults.drops_left > 0 and self.envelope is not None and self.envelope.rcpt_tos:
            faults.drops_left -= 1
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            for _ in range(faults.drop_during_data):
                await self._reader.readuntil(b"\r\n")
            self.owner.commands.append("DATA (dropped)")
            assert isinstance(self.transport, asyncio.WriteTransport)
            self.transport.abort()
            return
        await super().smtp_DATA(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.owner.commands.append("STARTTLS")
        await super().smtp_STARTTLS(arg)


class SmtpServer:
    """An aiosmtpd server in the running loop. Use ``async with SmtpServer(...) as server``; ``server.port``."""

    def __init__(
        self,
        *,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
        smtputf8: bool = True,
        auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        hostname: str = "mx.test",
    ) -> None:
        self.starttls_context = starttls_context
        self.implicit_tls_context = implicit_tls_context
        self.credentials = credentials
        self.smtputf8 = smtputf8
        self.auth_mechanisms = auth_mechanisms
        self.hostname = hostname
        self.faults = Faults()
        self.received: list[Received] = []
        self.commands: list[str] = []
        self.auth_attempts = 0
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.host = "127.0.0.1"
        self.port = 0
        self.transports: set[asyncio.BaseTransport | None] = set()
        self._server: asyncio.Server | None = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.auth_attempts += 1
        assert isinstance(auth_data, LoginPassword)
        expected = (self.credentials or {}).get(auth_data.login.decode())
        return AuthResult(success=expected is not None and expected == auth_data.password.decode(), handled=False)

    def _protocol(self) -> SMTP:
        options: dict[str, Any] = {}
        if self.credentials is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                # aiosmtpd cannot tell that an implicit-TLS session is encrypted: requiring TLS there would hide AUTH
                auth_require_tls=self.starttls_context is not None,
                auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in self.auth_mechanisms],
            )
        with warnings.catch_warnings():  # "Requiring AUTH while not requiring TLS": asked for on purpose here
            warnings.simplefilter("ignore", UserWarning)
            return _FaultySMTP(
                self,
                _Handler(self),
                hostname=self.hostname,
                tls_context=self.starttls_context,
                enable_SMTPUTF8=self.smtputf8,
                timeout=30,
                **options,
            )

    async def start(self, port: int = 0) -> SmtpServer:
        """Listen on ``port`` (0: one the OS picks); a server restarted on its old port keeps its counters."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, port, ssl=self.implicit_tls_context, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop_connections(self) -> None:
        """Abort every open session from the server side, as a server that times out idle clients does."""
        for transport in list(self.transports):
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


class _RawProtocol(asyncio.Protocol):
    def __init__(self, owner: RawServer) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.owner.connections += 1
        self.owner.transports.add(transport)
        if self.owner.greeting:
            transport.write(self.owner.greeting)
        if self.owner.close:
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.owner.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class RawServer:
    """A port that accepts connections but is no working SMTP server: it sends ``greeting`` (nothing by default),
    then stays silent, or closes at once with ``close=True``. Records what clients sent in ``received``."""

    def __init__(self, *, greeting: bytes = b"", close: bool = False) -> None:
        self.greeting = greeting
        self.close = close
        self.connections = 0
        self.received = b""
        self.host = "127.0.0.1"
        self.port = 0
        self.transports: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _RawProtocol(self), self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self.transports):
            transport.abort()
        await self._server.wait_closed()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port where a TCP connect times out, as behind a firewall that drops packets: a listening socket
    with a backlog of 0 that never accepts, its one queue place taken, so Linux drops further SYNs."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port
    finally:
        filler.close()
        listener.close()
