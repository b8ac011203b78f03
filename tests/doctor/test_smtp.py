"""The SMTP diagnosis against in-process fault servers: one test per diagnosis, each asserting where the walk
stopped, what it said and what it advises."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailsc import ConnectionConfig
from mailsc.doctor import Step
from mailsc.doctor.smtp import diagnose_smtp
from mailsc.message import Address
from tests.smtpd import RawServer, SmtpServer, closed_port, unanswered_port

PASSWORD = "correct-Horse-9"
USER = "app@example.com"
SHORT = 0.4  # seconds: the timeout for the tests that wait on a silent peer


def config(port: int, security: str = "none", **extra: Any) -> ConnectionConfig:
    options: dict[str, Any] = {"host": "127.0.0.1", "timeout": 5, **extra}
    return ConnectionConfig(port=port, security=security, **options)


def names(steps: list[Step]) -> list[str]:
    return [step.name for step in steps]


def failed(steps: list[Step], name: str) -> Step:
    """The walk stopped at ``name``: that step failed, says why, gives a fix; every step before it passed."""
    *before, last = steps
    assert all(step.ok for step in before), before
    assert last.name == name, steps
    assert not last.ok
    assert last.detail
    assert last.fix
    return last


def context_for(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


# -- reaching the server ---------------------------------------------------------------------------------------


async def test_nothing_listening_is_connection_refused() -> None:
    steps = await diagnose_smtp(config(await closed_port()))
    step = failed(steps, "connect")
    assert step.data["reason"] == "refused"
    assert "refused" in step.detail
    assert "check the port" in step.fix
    assert names(steps) == ["resolve", "connect"]


async def test_unresolvable_host() -> None:
    steps = await diagnose_smtp(ConnectionConfig(host="smtp.nowhere.invalid", port=587, timeout=5))
    step = failed(steps, "resolve")
    assert "'smtp.nowhere.invalid' does not resolve" in step.detail
    assert "typo" in step.fix
    assert len(steps) == 1


async def test_connect_timeout_names_firewalls_and_blocked_ports() -> None:
    with unanswered_port() as port:
        steps = await diagnose_smtp(config(port, timeout=SHORT))
    step = failed(steps, "connect")
    assert step.data["reason"] == "timeout"
    assert "timed out" in step.detail
    assert "firewall" in step.fix


async def test_a_silent_server_is_a_missing_greeting() -> None:
    async with RawServer() as server:
        steps = await diagnose_smtp(config(server.port, timeout=SHORT))
    step = failed(steps, "banner")
    assert step.data["reason"] == "no_greeting"
    assert "sent no greeting" in step.detail
    assert b"EHLO" not in server.received  # the doctor waits for the greeting before it speaks SMTP
    assert server.connections == 2  # the second: does the port expect implicit TLS? (it did not answer that either)


async def test_a_server_closing_at_once() -> None:
    async with RawServer(close=True) as server:
        steps = await diagnose_smtp(config(server.port))
    step = failed(steps, "banner")
    assert step.data["reason"] == "closed"
    assert "without a greeting" in step.detail


async def test_a_port_of_another_service() -> None:
    async with RawServer(greeting=b"HTTP/1.1 400 Bad Request\r\n\r\n") as server:
        steps = await diagnose_smtp(config(server.port))
    step = failed(steps, "banner")
    assert step.data["reason"] == "not_smtp"
    assert "HTTP/1.1 400" in step.detail


async def test_a_refused_session() -> None:
    async with SmtpServer() as server:
        server.faults.banner = "554 5.7.1 no service for you"
        steps = await diagnose_smtp(config(server.port))
    step = failed(steps, "banner")
    assert step.data["code"] == 554
    assert "554 5.7.1 no service for you" in step.detail
    assert "block list" in step.fix


async def test_a_server_that_drops_the_line_after_its_greeting() -> None:
    async with RawServer(greeting=b"220 mx.test ESMTP\r\n", close=True) as server:
        steps = await diagnose_smtp(config(server.port, timeout=SHORT))
    step = failed(steps, "ehlo")
    assert step.detail.startswith("no usable reply to EHLO:")


# -- port and mode ---------------------------------------------------------------------------------------------


async def test_starttls_configured_on_an_implicit_tls_port(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(implicit_tls_context=server_tls_context) as server:
        steps = await diagnose_smtp(config(server.port, "starttls", ca_file=ca_file, timeout=SHORT))
    step = failed(steps, "mode")
    assert step.data == {"configured": "starttls", "server_speaks": "tls"}
    assert "expects implicit TLS" in step.detail
    assert "MAILSC_SMTP_SECURITY=tls" in step.fix


async def test_implicit_tls_configured_on_a_starttls_port(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context) as server:
        steps = await diagnose_smtp(config(server.port, "tls", ca_file=ca_file))
    step = failed(steps, "mode")
    assert step.data == {"configured": "tls", "server_speaks": "plaintext"}
    assert "greets in plaintext (220 " in step.detail
    assert "MAILSC_SMTP_SECURITY=starttls" in step.fix
    assert names(steps) == ["resolve", "connect", "mode"]


async def test_starttls_not_offered(smtp_server: SmtpServer, ca_file: Path) -> None:
    steps = await diagnose_smtp(config(smtp_server.port, "starttls", ca_file=ca_file))
    step = failed(steps, "starttls")
    assert "does not offer it" in step.detail
    assert "never falls back to plaintext" in step.fix
    assert not [c for c in smtp_server.commands if c.startswith("MAIL")]


# -- certificates ----------------------------------------------------------------------------------------------


async def tls_failure(context: ssl.SSLContext, ca_file: Path, host: str = "127.0.0.1", **extra: Any) -> Step:
    async with SmtpServer(starttls_context=context) as server:
        steps = await diagnose_smtp(config(server.port, "starttls", ca_file=ca_file, host=host, **extra))
    assert not server.received
    assert not [c for c in server.commands if c.startswith("MAIL")]
    return failed(steps, "tls")


async def test_certificate_from_an_unknown_ca(ca_file: Path) -> None:
    stranger = trustme.CA(organization_name="Stranger CA")
    step = await tls_failure(context_for(stranger.issue_cert("127.0.0.1")), ca_file)
    assert step.data["reason"] == "unknown_ca"
    assert "does not trust" in step.detail
    assert "Stranger CA" in step.data["certificate"]["issuer"]  # read through the unverified second handshake
    assert "MAILSC_SMTP_CA_FILE" in step.fix


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_certificate_for_another_host_names_the_right_one(host: str, ca: trustme.CA, ca_file: Path) -> None:
    step = await tls_failure(context_for(ca.issue_cert("mail.elsewhere.test")), ca_file, host=host)
    assert step.data["reason"] == "hostname_mismatch"
    assert f"not valid for {host!r}" in step.detail
    assert "mail.elsewhere.test" in step.fix
    assert step.data["certificate"]["names"] == ["mail.elsewhere.test"]


async def test_expired_certificate_says_when(ca: trustme.CA, ca_file: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    cert = ca.issue_cert("127.0.0.1", not_before=now - timedelta(days=90), not_after=now - timedelta(days=2))
    step = await tls_failure(context_for(cert), ca_file)
    assert step.data["reason"] == "expired"
    assert f"expired on {(now - timedelta(days=2)):%Y-%m-%d}" in step.detail
    assert "renew" in step.fix


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.selfsigned.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def test_self_signed_certificate(self_signed: ssl.SSLContext, ca_file: Path) -> None:
    step = await tls_failure(self_signed, ca_file)
    assert step.data["reason"] == "self_signed"
    assert "self-signed" in step.detail
    assert "CN=mx.selfsigned.test" in step.detail
    assert "Let's Encrypt" in step.fix


# -- authentication and sender ---------------------------------------------------------------------------------


def secured(server: SmtpServer, ca_file: Path, security: str = "starttls", **extra: Any) -> ConnectionConfig:
    options: dict[str, Any] = {"username": USER, "password": PASSWORD, "mail_from": f"App <{USER}>", **extra}
    return config(server.port, security, ca_file=ca_file, **options)


async def test_auth_not_offered_while_credentials_are_configured(smtp_server: SmtpServer) -> None:
    steps = await diagnose_smtp(config(smtp_server.port, username=USER, password=PASSWORD))
    step = failed(steps, "auth")
    assert "offers no authentication" in step.detail
    assert "AUTH only after TLS" in step.fix


async def test_auth_offered_only_after_tls(server_tls_context: ssl.SSLContext) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        steps = await diagnose_smtp(config(server.port, username=USER, password=PASSWORD))
    step = failed(steps, "auth")
    assert "AUTH only after TLS" in step.detail
    assert "MAILSC_SMTP_SECURITY=starttls" in step.fix
    assert server.auth_attempts == 0


async def test_wrong_password_is_535_with_the_app_password_hint(
    server_tls_context: ssl.SSLContext, ca_file: Path
) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: "another"}) as server:
        steps = await diagnose_smtp(secured(server, ca_file))
    step = failed(steps, "login")
    assert step.data["code"] == 535
    assert f"refused the login for {USER!r}: 535" in step.detail
    assert "app password" in step.fix
    assert server.auth_attempts == 1  # one attempt: retrying a wrong password only brings a lock-out closer


async def test_a_username_that_is_not_an_address_is_pointed_out(
    server_tls_context: ssl.SSLContext, ca_file: Path
) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        steps = await diagnose_smtp(secured(server, ca_file, username="app"))
    assert "'app' is not a full email address" in failed(steps, "login").fix


async def test_sender_refused_at_mail_from(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        server.faults.mail.append("550 5.7.1 Sender address not verified")
        steps = await diagnose_smtp(secured(server, ca_file))
    step = failed(steps, "mail_from")
    assert step.data["code"] == 550
    assert "MAIL FROM:<app@example.com> refused: 550 5.7.1 Sender address not verified" in step.detail
    assert "verify the address or its domain" in step.fix


# -- all good --------------------------------------------------------------------------------------------------


async def test_all_good_over_starttls_sends_nothing(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    seen: list[Step] = []
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        steps = await diagnose_smtp(secured(server, ca_file), on_step=seen.append)
    assert seen == steps
    assert all(step.ok for step in steps), steps
    assert names(steps) == [
        "resolve",
        "connect",
        "banner",
        "mode",
        "ehlo",
        "starttls",
        "tls",
        "ehlo_tls",
        "auth",
        "login",
        "mail_from",
    ]
    tls = steps[6].data
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["verified"] is True
    assert "127.0.0.1" in tls["certificate"]["names"]
    assert "STARTTLS" in " ".join(steps[4].data["extensions"])
    assert steps[8].data["mechanisms"] == ["LOGIN", "PLAIN"]
    assert server.commands == ["STARTTLS", "MAIL FROM:app@example.com"]  # and then RSET: nothing was sent
    assert server.received == []


async def test_all_good_over_implicit_tls(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(implicit_tls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        steps = await diagnose_smtp(secured(server, ca_file, security="tls"))
    assert all(step.ok for step in steps), steps
    assert names(steps)[:5] == ["resolve", "connect", "tls", "mode", "banner"]


async def test_a_real_test_message_with_to(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        steps = await diagnose_smtp(secured(server, ca_file), to="someone@example.org")
    assert all(step.ok for step in steps), steps
    assert steps[-1].name == "test_message"
    [received] = server.received
    assert received.mail_from == USER
    assert received.rcpt_tos == ["someone@example.org"]
    assert b"Subject: mailsc doctor test message" in received.data
    assert steps[-1].data["message_id"] in received.data.decode()


async def test_a_refused_test_recipient(server_tls_context: ssl.SSLContext, ca_file: Path) -> None:
    async with SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}) as server:
        server.faults.rcpt_any.append("550 5.7.1 Relaying denied")
        steps = await diagnose_smtp(secured(server, ca_file), to="someone@example.org")
    step = failed(steps, "test_message")
    assert "550 5.7.1 Relaying denied" in step.detail
    assert server.received == []


async def test_no_sender_cannot_send_a_test_message(smtp_server: SmtpServer) -> None:
    steps = await diagnose_smtp(config(smtp_server.port), to="someone@example.org")
    assert "MAILSC_MAIL_FROM" in failed(steps, "mail_from").fix
    without_to = await diagnose_smtp(config(smtp_server.port))
    assert all(step.ok for step in without_to)
    assert "skipped" in without_to[-1].detail


async def test_the_sender_can_be_overridden(smtp_server: SmtpServer) -> None:
    steps = await diagnose_smtp(config(smtp_server.port), sender=Address.parse("Other <other@example.net>"))
    assert steps[-1].data == {"sender": "other@example.net"}
    assert "MAIL FROM:other@example.net" in smtp_server.commands
