"""``mailsc doctor`` for SMTP: walk the configured connection step by step and stop at the first failing step.

resolve -> connect -> (implicit TLS) -> banner -> mode -> EHLO -> (STARTTLS -> TLS -> EHLO) -> AUTH -> login ->
MAIL FROM -> optionally a real test message. Each step reports what it saw; a failing step says why in plain words
and what to change. The probe speaks SMTP itself (``session.py``) to see what a client library hides, and it never
prints a secret: the password is only ever written, base64-encoded, to the server.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import NoReturn

from ..config import ConnectionConfig
from ..message import Address
from ..transports.tls import build_tls_context
from .account import AccountSteps
from .hints import (
    SECURITY_VARIABLE,
    certificate_problem,
    certificate_reason,
    handshake_fix,
)
from .probes import Prober, describe, extensions_of, tls_step
from .session import ClosedError, NotSmtpError, SmtpSession, shown
from .steps import Step
from .walk import FAILURES, OnStep, StopWalkError


async def diagnose_smtp(
    config: ConnectionConfig,
    *,
    sender: Address | None = None,
    to: str | None = None,
    on_step: OnStep | None = None,
) -> list[Step]:
    """Diagnose ``config``; ``sender`` overrides the configured one, ``to`` also sends a real test message.

    Returns the steps taken, the last one failing unless all passed. ``on_step`` sees each step as it completes
    (the terminal view prints them while slow steps run)."""
    doctor = _SmtpDoctor(config, sender if sender is not None else config.sender, to, on_step)
    try:
        await doctor.run()
    except StopWalkError:
        pass
    finally:
        if doctor.session is not None:
            await doctor.session.close(polite=False)
    return doctor.steps


class _SmtpDoctor(AccountSteps):
    """The connection steps (resolve ... EHLO after TLS); the account steps come from ``AccountSteps``."""

    def __init__(self, config: ConnectionConfig, sender: Address | None, to: str | None, on_step: OnStep | None):
        assert config.port is not None  # filled in by ConnectionConfig
        assert config.security is not None
        super().__init__(on_step)
        self.config = config
        self.sender = sender
        self.to = to
        self.session: SmtpSession | None = None
        self.prober = Prober(config)
        self.where = f"{config.host}:{config.port}"
        self.local_hostname: str | None = None

    # -- the walk ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        tls_context: ssl.SSLContext | None = None
        if config.security != "none":
            try:
                tls_context = build_tls_context(config)
            except (ssl.SSLError, OSError) as exc:
                self.fail(
                    "tls",
                    "TLS settings load",
                    f"the CA file or client certificate cannot be loaded: {describe(exc)}",
                    "check MAILSC_SMTP_CA_FILE, MAILSC_SMTP_CLIENT_CERT and MAILSC_SMTP_CLIENT_KEY (PEM files)",
                )
        await self.resolve()
        sock = await self.connect()
        if config.security == "tls":
            assert tls_context is not None
            await self.implicit_tls(sock, tls_context)
            await self.banner()
        else:
            self.session = await SmtpSession.open(sock, config.timeout)
            await self.banner()
        extensions = await self.ehlo("ehlo", "EHLO and the extensions offered")
        if config.security == "starttls":
            assert tls_context is not None
            await self.starttls(extensions, tls_context)
            extensions = await self.ehlo("ehlo_tls", "EHLO inside TLS")
        await self.authenticate(extensions)
        await self.mail_from(extensions)
        if self.to is not None:
            await self.test_message()

    async def resolve(self) -> None:
        title = f"{self.config.host} resolves"
        try:
            addresses = await self.prober.resolve()
        except socket.gaierror as exc:
            self.fail(
                "resolve",
                title,
                f"the host name {self.config.host!r} does not resolve ({exc.strerror})",
                "check MAILSC_SMTP_HOST for a typo (your provider's documentation gives the exact SMTP host name), "
                "and this machine's DNS (`getent hosts NAME` should print an address)",
            )
        except TimeoutError:
            self.fail(
                "resolve",
                title,
                f"DNS gave no answer within {self.config.timeout:g} s",
                "check this machine's DNS resolver (/etc/resolv.conf) and network",
            )
        self.ok("resolve", title, ", ".join(addresses), addresses=addresses)

    async def connect(self) -> socket.socket:
        title = f"TCP connection to {self.where}"
        sock, errors = await self.prober.connect()
        if sock is not None:
            self.ok("connect", title, f"connected to {self.prober.peer_text}", address=self.prober.peer_text)
            return sock
        seen = "; ".join(f"{address}: {describe(exc)}" for address, exc in errors)
        port = self.config.port
        if any(isinstance(exc, TimeoutError) for _, exc in errors):
            fix = "nothing answered at all: a firewall drops the traffic, or the network blocks this port"
            if port == 25:
                fix += (
                    "; most cloud providers (AWS, Google Cloud, Azure, ...) block outgoing port 25: use your "
                    "provider's submission port instead (587 with STARTTLS, or 465 with implicit TLS)"
                )
            else:
                fix += "; check the host and port, and any outgoing firewall rule"
            self.fail("connect", title, f"timed out after {self.config.timeout:g} s ({seen})", fix, reason="timeout")
        if any(isinstance(exc, ConnectionRefusedError) for _, exc in errors):
            self.fail(
                "connect",
                title,
                f"connection refused ({seen}): nothing listens on port {port} there",
                "check the port (587 for STARTTLS submission, 465 for implicit TLS, 25 between mail servers) "
                "and that the server is running",
                reason="refused",
            )
        self.fail("connect", title, f"cannot connect ({seen})", "check this machine's network and routes")

    async def implicit_tls(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        title = "TLS (implicit TLS)"
        try:
            self.session = await SmtpSession.open(
                sock, self.config.timeout, tls=context, server_hostname=self.config.host
            )
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            await self.certificate_failure(exc, title)
        except FAILURES as exc:
            sock.close()
            greeting = await self.prober.plaintext_greeting()
            if greeting is not None:
                self.fail(
                    "mode",
                    "Port and security mode match",
                    f"implicit TLS (security=tls) is configured, but {self.where} greets in plaintext "
                    f"({greeting}): this port expects STARTTLS",
                    f"set {SECURITY_VARIABLE}=starttls for this port (STARTTLS is usually port 587), or use your "
                    "provider's implicit-TLS port (usually 465)",
                    configured="tls",
                    server_speaks="plaintext",
                )
            self.fail("tls", title, f"TLS handshake with {self.where} failed: {describe(exc)}", _handshake_fix(exc))
        self.record_tls(title)
        self.ok(
            "mode",
            "Port and security mode match",
            f"port {self.config.port} speaks TLS from the first byte, as security=tls expects",
            configured="tls",
            server_speaks="tls",
        )

    async def banner(self) -> None:
        assert self.session is not None
        title = "Server greeting (220)"
        timeout = self.config.timeout
        try:
            greeting = await self.session.reply()
        except TimeoutError:
            if self.config.security != "tls" and await self.prober.speaks_tls():
                self.fail(
                    "mode",
                    "Port and security mode match",
                    f"security={self.config.security} is configured, but {self.where} sent no plaintext greeting "
                    f"within {timeout:g} s and answers a TLS handshake: this port expects implicit TLS",
                    f"set {SECURITY_VARIABLE}=tls for this port (implicit TLS is usually port 465), or use your "
                    "provider's STARTTLS port (usually 587)",
                    configured=self.config.security,
                    server_speaks="tls",
                )
            self.fail(
                "banner",
                title,
                f"the server accepted the connection but sent no greeting within {timeout:g} s",
                "the port may belong to another service, or a firewall, proxy or antivirus holds the connection; "
                "check the port, and try a longer MAILSC_SMTP_TIMEOUT (some servers delay their greeting on port 25)",
                reason="no_greeting",
            )
        except ClosedError as exc:
            sent = f" (it sent {shown(exc.received)})" if exc.received else ""
            self.fail(
                "banner",
                title,
                f"the server closed the connection without a greeting{sent}",
                "the server refuses connections from this address (a block list, a connection limit or an access "
                "rule), or this is not an SMTP port",
                reason="closed",
            )
        except (NotSmtpError, OSError) as exc:
            self.fail(
                "banner",
                title,
                f"the first bytes from {self.where} are not an SMTP greeting: {describe(exc)}",
                "this port runs another service: check the port (587 STARTTLS, 465 implicit TLS, 25)",
                reason="not_smtp",
            )
        if greeting.code != 220:
            fix = "the server does not serve this client: this address may be on a block list, or the server "
            fix += "accepts mail only from its own network; ask the server's operator"
            if greeting.code == 421 or 400 <= greeting.code < 500:
                fix = "the server is busy or shutting down: try again later"
            self.fail("banner", title, f"the server refused the session: {greeting}", fix, code=greeting.code)
        self.ok("banner", title, str(greeting), greeting=str(greeting))
        if self.config.security != "tls":
            self.ok(
                "mode",
                "Port and security mode match",
                f"port {self.config.port} greets in plaintext, as security={self.config.security} expects",
                configured=self.config.security,
                server_speaks="plaintext",
            )

    async def ehlo(self, name: str, title: str) -> dict[str, str]:
        assert self.session is not None
        if self.local_hostname is None:  # what aiosmtplib sends too, so the server sees the same name
            self.local_hostname = self.config.local_hostname or await asyncio.to_thread(socket.getfqdn)
        local = self.local_hostname
        reply = await self.exchange(
            name,
            title,
            f"EHLO {local}",
            250,
            f"EHLO {local} refused",
            "the server refuses this machine's name or does not speak ESMTP: set MAILSC_SMTP_LOCAL_HOSTNAME to "
            "this machine's public DNS name",
        )
        extensions = extensions_of(reply)
        offered = list(reply.lines[1:])
        self.ok(name, title, f"{reply.lines[0]} offers: {', '.join(offered) or 'nothing'}", extensions=offered)
        return extensions

    async def starttls(self, extensions: dict[str, str], context: ssl.SSLContext) -> None:
        assert self.session is not None
        title = "STARTTLS offered"
        if "STARTTLS" not in extensions:
            self.fail(
                "starttls",
                title,
                f"STARTTLS is configured, but {self.where} does not offer it (nothing was sent in clear)",
                "check the port: 465 speaks implicit TLS (security=tls) and 587 normally offers STARTTLS; "
                "otherwise the server needs TLS set up. mailsc never falls back to plaintext",
            )
        reply = await self.exchange(
            "starttls",
            title,
            "STARTTLS",
            220,
            "the server offers STARTTLS but refused it",
            "the server's TLS setup is broken (a missing certificate or key): ask the server's operator",
        )
        if self.session.pending():
            self.fail(
                "starttls",
                title,
                "the server sent data after agreeing to STARTTLS, before the TLS handshake",
                "something between here and the server tampers with the session: use implicit TLS (port 465)",
            )
        self.ok("starttls", title, str(reply))
        tls_title = "TLS (STARTTLS)"
        try:
            await self.session.start_tls(context, self.config.host)
        except ssl.SSLCertVerificationError as exc:
            await self.certificate_failure(exc, tls_title)
        except FAILURES as exc:
            self.fail(
                "tls", tls_title, f"the TLS handshake after STARTTLS failed: {describe(exc)}", _handshake_fix(exc)
            )
        self.record_tls(tls_title)

    def record_tls(self, title: str) -> None:
        assert self.session is not None
        assert self.session.tls is not None
        detail, data = tls_step(self.session.tls, verified=self.config.verify_certs)
        self.ok("tls", title, detail, **data)

    async def certificate_failure(self, error: ssl.SSLCertVerificationError, title: str) -> NoReturn:
        facts = await self.prober.unverified_certificate()  # a second handshake, only to read the certificate
        detail, fix = certificate_problem(error, self.config.host, facts)
        self.fail(
            "tls",
            title,
            detail,
            fix,
            reason=certificate_reason(error.verify_code),
            verify_code=error.verify_code,
            verify_message=error.verify_message,
            certificate=facts.as_data() if facts is not None else None,
        )


def _handshake_fix(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return handshake_fix(str(exc.reason or exc))
    return "the server dropped or stalled the TLS handshake: check the port and the server's TLS setup"
