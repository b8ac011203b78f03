"""SmtpTransport against real in-process SMTP servers: security modes, authentication, faults, the pool."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailsc import (
    AuthenticationError,
    ConnectionConfig,
    DeliveryError,
    Message,
    RecipientsRefusedError,
    SenderRefusedError,
    SmtpConnectError,
    TlsSetupError,
    render,
)
from mailsc.envelope import Envelope
from mailsc.transports import Outcome, SmtpTransport, classify
from tests.smtpd import SmtpServer, closed_port


def envelope(to: str | list[str] = "rcpt@example.org", subject: str = "Hello", text: str = "Hi there") -> Envelope:
    return render(Message(**{"from": "App <app@example.com>"}, to=to, subject=subject, text=text))


def plain(server: SmtpServer, **extra: Any) -> ConnectionConfig:
    return ConnectionConfig(host="127.0.0.1", port=server.port, security="none", timeout=5, **extra)


def secured(server: SmtpServer, security: str, ca_file: Path | None, **extra: Any) -> SmtpTransport:
    """A transport to ``server`` with TLS (``starttls`` or ``tls``) verified against the test CA."""
    options: dict[str, Any] = {"host": "127.0.0.1", "timeout": 5, **extra}
    return SmtpTransport(ConnectionConfig(port=server.port, security=security, ca_file=ca_file, **options))


async def test_plain_delivery_is_byte_exact(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server))
    sent = envelope(to=["a@example.org", "b@example.org"])
    result = await transport.send(sent)
    await transport.aclose()
    assert result.accepted == ("a@example.org", "b@example.org")
    assert result.refused == ()
    assert result.reply.startswith("250")
    [received] = smtp_server.received
    assert received.mail_from == "app@example.com"
    assert received.rcpt_tos == ["a@example.org", "b@example.org"]
    assert received.data == sent.data


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nend\r\n",  # would end DATA early if not stuffed
        b".starts with a dot\r\n\r\nbody\r\n",
        b"Subject: no final newline\r\n\r\nbody",
        b"Subject: bare LF and CR\n\nline one\nline two\r.\nend\n",  # not what mailsc renders; still safe
    ],
)
async def test_message_bytes_arrive_intact_whatever_their_dots_and_line_ends(
    smtp_server: SmtpServer, data: bytes
) -> None:
    transport = SmtpTransport(plain(smtp_server))
    await transport.send(Envelope("app@example.com", ("a@example.org",), data, "<dots@example.com>"))
    await transport.aclose()
    [received] = smtp_server.received
    normalised = b"\r\n".join(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))
    assert received.data == (normalised if normalised.endswith(b"\r\n") else normalised + b"\r\n")


async def test_starttls_verified(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context) as server:
        transport = secured(server, "starttls", ca_file)
        await transport.send(envelope())
        await transport.aclose()
    assert "STARTTLS" in server.commands
    assert server.commands.index("STARTTLS") < server.commands.index("MAIL FROM:app@example.com")
    assert len(server.received) == 1


async def test_implicit_tls_verified(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(implicit_tls_context=server_tls_context) as server:
        transport = SmtpTransport(
            ConnectionConfig(host="localhost", port=server.port, security="tls", ca_file=ca_file, timeout=5)
        )
        await transport.send(envelope())
        await transport.aclose()
    assert len(server.received) == 1


async def test_certificate_for_another_host_is_refused(ca: trustme.CA, ca_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.elsewhere.test").configure_cert(context)
    async with SmtpServer(starttls_context=context) as server:
        transport = secured(server, "starttls", ca_file)
        with pytest.raises(TlsSetupError, match=r"not valid for '127\.0\.0\.1'") as info:
            await transport.send(envelope())
        await transport.aclose()
    assert not [c for c in server.commands if c.startswith("MAIL")]
    assert classify(info.value) is Outcome.UNAVAILABLE


async def test_untrusted_ca_is_refused(ca_file: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)  # a CA the client does not know
    async with SmtpServer(implicit_tls_context=context) as server:
        transport = secured(server, "tls", ca_file)
        with pytest.raises(TlsSetupError, match="unknown CA") as info:
            await transport.send(envelope())
        await transport.aclose()
    assert "MAILSC_SMTP_CA_FILE" in info.value.hint
    assert server.received == []


async def test_verify_certs_off_accepts_untrusted_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    async with SmtpServer(implicit_tls_context=context) as server:
        transport = SmtpTransport(
            ConnectionConfig(host="127.0.0.1", port=server.port, security="tls", verify_certs=False, timeout=5)
        )
        await transport.send(envelope())
        await transport.aclose()
    assert len(server.received) == 1
    assert any("verify_certs_disabled" in r.getMessage() for r in caplog.records)


async def test_tls_context_is_built_once_and_strict(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    transport = SmtpTransport(ConnectionConfig(host="127.0.0.1", port=2525, security="starttls", ca_file=ca_file))
    context = transport._tls_context
    assert context is not None
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


async def test_starttls_required_but_not_offered_sends_nothing_in_clear() -> None:
    async with SmtpServer() as server:  # no TLS at all
        transport = SmtpTransport(
            ConnectionConfig(
                host="127.0.0.1", port=server.port, security="starttls", username="u", password="p", timeout=5
            )
        )
        with pytest.raises(TlsSetupError, match="does not offer STARTTLS") as info:
            await transport.send(envelope())
        await transport.aclose()
    assert server.commands == []  # no MAIL FROM, no RCPT, nothing
    assert server.auth_attempts == 0
    assert classify(info.value) is Outcome.UNAVAILABLE


async def test_implicit_tls_to_a_starttls_port_explains(ca_file: Path) -> None:
    async with SmtpServer() as server:  # speaks plaintext SMTP first
        transport = secured(server, "tls", ca_file, timeout=2)
        with pytest.raises(TlsSetupError, match="handshake") as info:
            await transport.send(envelope())
        await transport.aclose()
    assert "STARTTLS" in info.value.hint


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_after_starttls(server_tls_context: ssl.SSLContext, ca_file: Path, mechanism: str) -> None:
    async with SmtpServer(
        starttls_context=server_tls_context, credentials={"user@example.com": "right"}, auth_mechanisms=(mechanism,)
    ) as server:
        config = ConnectionConfig(
            host="127.0.0.1",
            port=server.port,
            security="starttls",
            ca_file=ca_file,
            username="user@example.com",
            password="right",
            timeout=5,
        )
        transport = SmtpTransport(config)
        await transport.send(envelope())
        await transport.aclose()
    assert server.auth_attempts == 1
    assert len(server.received) == 1


async def test_wrong_password_is_an_authentication_error(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={"user@example.com": "right"}) as server:
        transport = secured(server, "starttls", ca_file, username="user@example.com", password="wrong")
        with pytest.raises(AuthenticationError) as info:
            await transport.send(envelope())
        await transport.aclose()
    error = info.value
    assert error.smtp_code == 535
    assert error.enhanced_code == "5.7.8"
    assert "app password" in error.hint
    assert "wrong" not in str(error)
    assert classify(error) is Outcome.UNAVAILABLE
    assert server.received == []


async def test_auth_required_but_not_given(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={"u": "p"}) as server:
        transport = secured(server, "starttls", ca_file)
        with pytest.raises(SenderRefusedError) as info:
            await transport.send(envelope())
        await transport.aclose()
    assert info.value.smtp_code == 530
    assert server.received == []


async def test_connection_refused() -> None:
    port = await closed_port()
    transport = SmtpTransport(ConnectionConfig(host="127.0.0.1", port=port, security="none", timeout=5))
    with pytest.raises(SmtpConnectError, match="refused") as info:
        await transport.send(envelope())
    assert info.value.transient
    assert classify(info.value) is Outcome.UNAVAILABLE
    assert transport.open_connections == 0


async def test_greeting_refused(smtp_server: SmtpServer) -> None:
    smtp_server.faults.banner = "554 5.3.2 no service here"
    transport = SmtpTransport(plain(smtp_server))
    with pytest.raises(SmtpConnectError, match="554") as info:
        await transport.send(envelope())
    assert not info.value.transient


@pytest.mark.parametrize(
    ("stage", "reply", "error_type", "transient"),
    [
        ("mail", "421 4.3.2 shutting down", DeliveryError, True),
        ("mail", "451 4.3.0 try again later", SenderRefusedError, True),
        ("mail", "550 5.7.1 sender not allowed", SenderRefusedError, False),
        ("mail", "552 5.3.4 message too big", SenderRefusedError, False),
        ("rcpt", "421 4.3.2 shutting down", DeliveryError, True),
        ("rcpt", "451 4.2.0 greylisted", RecipientsRefusedError, True),
        ("rcpt", "550 5.1.1 no such user", RecipientsRefusedError, False),
        ("rcpt", "552 5.2.2 mailbox full", RecipientsRefusedError, False),
        ("data", "421 4.3.2 shutting down", DeliveryError, True),
        ("data", "451 4.3.0 local error", DeliveryError, True),
        ("data", "550 5.7.1 content rejected", DeliveryError, False),
        ("data", "552 5.3.4 message too big", DeliveryError, False),
    ],
)
async def test_error_replies_are_classified(
    smtp_server: SmtpServer, stage: str, reply: str, error_type: type[DeliveryError], transient: bool
) -> None:
    queue: deque[str] = getattr(smtp_server.faults, "rcpt_any" if stage == "rcpt" else stage)
    queue.append(reply)
    transport = SmtpTransport(plain(smtp_server))
    with pytest.raises(error_type) as info:
        await transport.send(envelope())
    error = info.value
    code = int(reply[:3])
    assert error.smtp_code == code
    assert error.enhanced_code == reply.split()[1]
    assert error.transient is transient
    assert classify(error) is (Outcome.RETRY if transient else Outcome.PERMANENT)
    assert smtp_server.received == []
    # The pool recovers: the next message goes through (over a new connection after a 421).
    await transport.send(envelope())
    await transport.aclose()
    assert len(smtp_server.received) == 1
    assert smtp_server.connections == (2 if code == 421 else 1)


async def test_partial_recipient_refusal_delivers_to_the_others(smtp_server: SmtpServer) -> None:
    smtp_server.faults.rcpt["bad@example.org"] = deque(["550 5.1.1 <bad@example.org>: user unknown"])
    smtp_server.faults.rcpt["later@example.org"] = deque(["452 4.2.2 mailbox full, try later"])
    transport = SmtpTransport(plain(smtp_server))
    result = await transport.send(envelope(to=["good@example.org", "bad@example.org", "later@example.org"]))
    await transport.aclose()
    assert result.accepted == ("good@example.org",)
    refused = {r.recipient: r for r in result.refused}
    assert refused["bad@example.org"].smtp_code == 550
    assert not refused["bad@example.org"].transient
    assert refused["bad@example.org"].enhanced_code == "5.1.1"
    assert refused["later@example.org"].transient
    assert smtp_server.received[0].rcpt_tos == ["good@example.org"]


async def test_line_dropped_in_the_middle_of_data(smtp_server: SmtpServer) -> None:
    smtp_server.faults.drops_left = 1
    smtp_server.faults.drop_during_data = 3
    transport = SmtpTransport(plain(smtp_server))
    with pytest.raises(DeliveryError, match="connection lost") as info:
        await transport.send(envelope(text="line\n" * 2000))
    assert info.value.transient
    assert classify(info.value) is Outcome.RETRY
    assert smtp_server.received == []
    assert "DATA (dropped)" in smtp_server.commands
    await transport.send(envelope())  # a fresh connection replaces the dead one
    await transport.aclose()
    assert len(smtp_server.received) == 1
    assert transport.open_connections == 0


async def test_server_slower_than_the_timeout(smtp_server: SmtpServer) -> None:
    smtp_server.faults.delay = 2.0
    transport = SmtpTransport(ConnectionConfig(host="127.0.0.1", port=smtp_server.port, security="none", timeout=0.3))
    with pytest.raises(DeliveryError, match="timed out") as info:
        await transport.send(envelope())
    await transport.aclose()
    assert info.value.transient
    assert transport.open_connections == 0


async def test_stale_pooled_connection_is_replaced(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server))
    await transport.send(envelope())
    smtp_server.drop_connections()  # the server drops the idle session
    await asyncio.sleep(0.05)
    await transport.send(envelope())
    await transport.aclose()
    assert len(smtp_server.received) == 2
    assert smtp_server.connections == 2


async def test_smtputf8_address(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server))
    await transport.send(envelope(to="jörg@example.org"))
    await transport.aclose()
    [received] = smtp_server.received
    assert received.rcpt_tos == ["jörg@example.org"]
    assert "SMTPUTF8" in received.mail_options


async def test_smtputf8_address_to_a_server_without_it() -> None:
    async with SmtpServer(smtputf8=False) as server:
        transport = SmtpTransport(plain(server))
        with pytest.raises(DeliveryError, match="SMTPUTF8") as info:
            await transport.send(envelope(to="jörg@example.org"))
        await transport.aclose()
    assert not info.value.transient
    assert server.received == []


async def test_pool_of_four_carries_500_concurrent_messages_byte_exact(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server, pool_size=4))
    envelopes = [envelope(to=f"user{i}@example.org", subject=f"message {i}") for i in range(500)]
    results = await asyncio.gather(*(transport.send(e) for e in envelopes))
    await transport.aclose()
    assert [r.accepted for r in results] == [e.recipients for e in envelopes]
    assert smtp_server.connections <= 4
    assert smtp_server.max_active <= 4
    received = {r.rcpt_tos[0]: r.data for r in smtp_server.received}
    assert len(received) == 500
    assert all(received[e.recipients[0]] == e.data for e in envelopes)
    assert transport.open_connections == 0


async def test_aclose_quits_idle_connections(smtp_server: SmtpServer) -> None:
    transport = SmtpTransport(plain(smtp_server, pool_size=2))
    await asyncio.gather(transport.send(envelope()), transport.send(envelope()))
    assert transport.open_connections == 2
    await transport.aclose()
    await asyncio.sleep(0.05)
    assert transport.open_connections == 0
    assert smtp_server.active == 0
    with pytest.raises(DeliveryError, match="closed"):
        await transport.send(envelope())


async def test_check_probes_without_sending(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={"u@example.com": "pw"}) as server:
        good = secured(server, "starttls", ca_file, username="u@example.com", password="pw")
        await good.check()
        bad = secured(server, "starttls", ca_file, username="u@example.com", password="no")
        with pytest.raises(AuthenticationError):
            await bad.check()
        await asyncio.sleep(0.05)
    assert server.auth_attempts == 2
    assert server.received == []
    assert not [c for c in server.commands if c.startswith("MAIL")]
