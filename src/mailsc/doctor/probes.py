"""The doctor's side connections: name resolution, TCP connect, and the extra looks a diagnosis needs.

Besides the main session, the doctor may open a second connection to tell two misconfigurations apart: a plaintext
look at a port that failed the implicit-TLS handshake (does it greet with 220?), a TLS handshake with a port that
sent no greeting (does it expect implicit TLS?), and a handshake with verification off after a certificate failed,
only to read the certificate for the diagnosis. Nothing is sent over an unverified connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from ..config import ConnectionConfig
from ..message import Address, Message
from ..mime import render
from ..transports.base import SendResult
from ..transports.smtp import SmtpTransport
from .certificate import CertificateFacts, read_certificate
from .session import ClosedError, NotSmtpError, Reply, SmtpSession

EXPIRY_WARNING_DAYS = 14
_AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def describe(exc: BaseException) -> str:
    """An exception in a few words, without a traceback (and without Python's class names where avoidable)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ClosedError | NotSmtpError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def extensions_of(reply: Reply) -> dict[str, str]:
    """EHLO's extension lines as ``{"AUTH": "PLAIN LOGIN", "STARTTLS": "", ...}`` (``AUTH=LOGIN`` included)."""
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, parameters = line.replace("=", " ", 1).partition(" ")
        keyword = keyword.upper()
        found[keyword] = f"{found[keyword]} {parameters}".strip() if keyword in found else parameters.strip()
    return found


def tls_step(tls: ssl.SSLObject, *, verified: bool) -> tuple[str, dict[str, Any]]:
    """The detail and data of a TLS step that succeeded: version, cipher, and the certificate's facts."""
    cipher = tls.cipher()
    data: dict[str, Any] = {"version": tls.version(), "cipher": cipher[0] if cipher else None, "verified": verified}
    detail = f"{data['version']}, {data['cipher']}"
    der = tls.getpeercert(binary_form=True)
    facts = _facts(der)
    if facts is not None:
        data["certificate"] = facts.as_data()
        data["expires_in_days"] = facts.days_left()
        detail += f"; {facts.summary()}"
        if facts.days_left() < EXPIRY_WARNING_DAYS:
            detail += f"; expires in {facts.days_left()} days: renew it soon"
    detail += "; verified" if verified else "; the certificate was NOT verified (MAILSC_SMTP_VERIFY_CERTS=false)"
    return detail, data


def _facts(der: bytes | None) -> CertificateFacts | None:
    if not der:
        return None
    try:
        return read_certificate(der)
    except ValueError:
        return None


def unverified_context() -> ssl.SSLContext:
    """For looking only: reads a certificate that failed verification, or tells that a port speaks TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # never used to send anything: see the module docstring
    return context


class Prober:
    """Connections to the configured server: the first to a working address is remembered for the side looks."""

    def __init__(self, config: ConnectionConfig) -> None:
        assert config.port is not None
        self.config = config
        self.port = config.port
        self.timeout = config.timeout
        self.infos: list[_AddrInfo] = []
        self.peer: _AddrInfo | None = None

    @property
    def peer_text(self) -> str:
        return f"{self.peer[4][0]} port {self.port}" if self.peer is not None else ""

    async def resolve(self) -> list[str]:
        """The addresses of the host (raises ``socket.gaierror`` or ``TimeoutError``)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            infos = await loop.getaddrinfo(self.config.host, self.port, type=socket.SOCK_STREAM)
        self.infos = [(family, kind, proto, name, tuple(address)) for family, kind, proto, name, address in infos]
        return list(dict.fromkeys(str(info[4][0]) for info in self.infos))

    async def _open(self, info: _AddrInfo) -> socket.socket:
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.get_running_loop().sock_connect(sock, address)
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect(self) -> tuple[socket.socket | None, list[tuple[str, OSError]]]:
        """A connected socket to the first address that answers, and each failure before it."""
        errors: list[tuple[str, OSError]] = []
        for info in self.infos:
            try:
                sock = await self._open(info)
            except OSError as exc:  # TimeoutError and ConnectionRefusedError included
                errors.append((str(info[4][0]), exc))
                continue
            self.peer = info
            return sock, errors
        return None, errors

    async def _session(self, *, tls: ssl.SSLContext | None = None) -> SmtpSession:
        assert self.peer is not None
        sock = await self._open(self.peer)
        try:
            return await SmtpSession.open(sock, self.timeout, tls=tls, server_hostname=self.config.host)
        except BaseException:
            sock.close()
            raise

    async def plaintext_greeting(self) -> str | None:
        """The port's plaintext greeting, if it sends one (a port for STARTTLS does; an implicit-TLS port does not)."""
        try:
            session = await self._session()
        except (OSError, ssl.SSLError):
            return None
        try:
            return str(await session.reply())
        except (OSError, NotSmtpError):
            return None
        finally:
            await session.close(polite=False)

    async def speaks_tls(self) -> bool:
        """Whether the port completes a TLS handshake as soon as it is connected (an implicit-TLS port does)."""
        try:
            session = await self._session(tls=unverified_context())
        except (OSError, ssl.SSLError):
            return False
        await session.close(polite=False)
        return True

    async def unverified_certificate(self) -> CertificateFacts | None:
        """The server's certificate through a handshake with verification off, for the diagnosis only: the session
        is closed right after the handshake, before anything is sent over it."""
        context = unverified_context()
        try:
            if self.config.security == "tls":
                session = await self._session(tls=context)
            else:
                session = await self._session()
                try:
                    await session.reply()
                    await session.command(f"EHLO {self.config.local_hostname or 'localhost'}")
                    if (await session.command("STARTTLS")).code != 220:
                        return None
                    await session.start_tls(context, self.config.host)
                except BaseException:
                    await session.close(polite=False)
                    raise
        except (OSError, ssl.SSLError, NotSmtpError):
            return None
        try:
            return _facts(session.tls.getpeercert(binary_form=True)) if session.tls is not None else None
        finally:
            await session.close(polite=False)

    async def send_test_message(self, sender: Address, to: str) -> SendResult:
        """A real message through ``SmtpTransport``, the code the worker delivers with."""
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        envelope = render(
            Message(
                **{"from": sender},
                to=[to],
                subject="mailsc doctor test message",
                text=f"This test message was sent by `mailsc doctor` at {now} through {self.config.host}:{self.port}.\n"
                "If you can read it, mailsc can deliver mail with this configuration.\n",
            )
        )
        transport = SmtpTransport(self.config, name="doctor")
        try:
            return await transport.send(envelope)
        finally:
            with contextlib.suppress(Exception):
                await transport.aclose()
