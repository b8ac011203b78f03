"""The ``Mailer`` facade over real transports."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import pytest

from mailsc import (
    ConnectionConfig,
    FileTransport,
    Mailer,
    MemoryTransport,
    Message,
    MessageError,
    Settings,
)
from mailsc.transports import CaptureTransport
from tests.smtpd import SmtpServer


async def test_send_over_smtp_with_the_configured_sender(smtp_server: SmtpServer) -> None:
    config = ConnectionConfig(
        host="127.0.0.1",
        port=smtp_server.port,
        security="none",
        mail_from="noreply@example.com",
        mail_from_name="Example App",
    )
    async with Mailer(config) as mailer:
        result = await mailer.send(Message(to=["a@example.org"], subject="Hi", text="Hello", html="<p>Hello</p>"))
    assert result.accepted == ("a@example.org",)
    [received] = smtp_server.received
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["From"] == "Example App <noreply@example.com>"
    assert parsed.get_content_type() == "multipart/alternative"


async def test_concurrent_sends_share_the_pool(smtp_server: SmtpServer) -> None:
    config = ConnectionConfig(
        host="127.0.0.1", port=smtp_server.port, security="none", pool_size=2, mail_from="noreply@example.com"
    )
    async with Mailer(config) as mailer:
        await asyncio.gather(*(mailer.send(Message(to=f"u{i}@example.org", subject="s", text="t")) for i in range(50)))
    assert len(smtp_server.received) == 50
    assert smtp_server.connections <= 2


async def test_invalid_message_sends_nothing(smtp_server: SmtpServer) -> None:
    config = ConnectionConfig(host="127.0.0.1", port=smtp_server.port, security="none")
    async with Mailer(config) as mailer:
        with pytest.raises(MessageError, match="no sender"):
            await mailer.send(Message(to="a@example.org", subject="s", text="t"))
    assert smtp_server.connections == 0


async def test_suppress_send_keeps_messages_in_memory() -> None:
    mailer = Mailer(ConnectionConfig(host="smtp.example.com", suppress_send=True, mail_from="a@example.com"))
    await mailer.send(Message(to="b@example.org", subject="kept", text="t"))
    assert isinstance(mailer.transport, MemoryTransport)
    [kept] = mailer.transport.messages()
    assert kept["Subject"] == "kept"
    assert len(mailer.outbox) == 1


async def test_from_env_builds_an_smtp_mailer(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILSC_SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    monkeypatch.setenv("MAILSC_SMTP_SECURITY", "none")
    monkeypatch.setenv("MAILSC_MAIL_FROM", "App <app@example.com>")
    async with Mailer.from_env() as mailer:
        await mailer.send(Message(to="b@example.org", subject="env", text="t"))
    assert smtp_server.received[0].mail_from == "app@example.com"


async def test_from_env_without_smtp_captures_mail(tmp_path: Path) -> None:
    mailer = Mailer.from_env(Settings(_env_file=None, mail_from="a@example.com"))
    result = await mailer.send(Message(to="b@example.org", subject="s", text="t"))
    assert isinstance(mailer.transport, CaptureTransport)
    assert result.reply == "250 captured in the dev inbox"
    assert mailer.transport.captured == 1


async def test_file_transport_writes_complete_eml_files(tmp_path: Path) -> None:
    mailer = Mailer(transport=FileTransport(tmp_path / "out"), default_sender="a@example.com")
    result = await mailer.send(Message(to="b@example.org", subject="to disk", text="body"))
    [path] = (tmp_path / "out").glob("*.eml")
    assert not list((tmp_path / "out").glob(".*.tmp"))
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == result.message_id
    assert parsed["Subject"] == "to disk"


def test_mailer_needs_config_or_transport() -> None:
    with pytest.raises(TypeError):
        Mailer()
