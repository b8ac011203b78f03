"""fastapi-mail's guide code on mailsc, against an in-process SMTP server: config from the environment,
``MessageSchema`` with ``subtype="html"``, ``send_message``, templates from ``TEMPLATE_FOLDER``, attachments, cc/bcc,
``record_messages()`` and ``SUPPRESS_SEND``; durable sending with ``OUTBOX_URL``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

import pytest
from starlette.datastructures import Headers, UploadFile

from mailsc.compat.fastapi_mail import (
    ConnectionConfig,
    ConnectionErrors,
    FastMail,
    MessageSchema,
    MessageType,
    MultipartSubtypeEnum,
)
from mailsc.errors import RecipientsRefusedError, SmtpConnectError, TlsSetupError
from mailsc.outbox import OutboxStore
from tests.smtpd import SmtpServer, closed_port


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def guide_env(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> None:
    """The variables a fastapi-mail guide puts in ``.env``; plaintext is fine to a loopback test server."""
    values = {
        "MAIL_USERNAME": "",
        "MAIL_PASSWORD": "",
        "MAIL_FROM": "noreply@example.com",
        "MAIL_FROM_NAME": "Example App",
        "MAIL_PORT": str(port),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_STARTTLS": "False",
        "MAIL_SSL_TLS": "False",
        "USE_CREDENTIALS": "False",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def fm(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastMail]:
    guide_env(monkeypatch, smtp_server.port)
    mail = FastMail(ConnectionConfig())  # pydantic-settings reads MAIL_* from the environment, as fastapi-mail's
    yield mail
    await mail.aclose()


async def test_guide_html_message_with_cc_bcc_and_attachment(
    fm: FastMail, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(b"%PDF-1.4 pretend")
    message = MessageSchema(
        subject="Fastapi-Mail module",
        recipients=["to@example.com"],
        cc=["Carol <cc@example.com>"],
        bcc=["bcc@example.com"],
        reply_to=["support@example.com"],
        body="<p>Hi this test mail, thanks for using Fastapi-mail</p>",
        subtype=MessageType.html,
        attachments=[str(invoice)],
    )
    with fm.record_messages() as outbox:
        await fm.send_message(message)
    [received] = smtp_server.received
    assert received.mail_from == "noreply@example.com"
    assert sorted(received.rcpt_tos) == ["bcc@example.com", "cc@example.com", "to@example.com"]
    sent = parsed(received.data)
    assert sent["From"] == "Example App <noreply@example.com>"
    assert sent["To"] == "to@example.com"
    assert sent["Cc"] == "Carol <cc@example.com>"
    assert sent["Reply-To"] == "support@example.com"
    assert sent["Bcc"] is None  # never in the bytes sent
    body = sent.get_body(("html",))
    assert body is not None
    assert "thanks for using Fastapi-mail" in body.get_content()
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_filename() == "invoice.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 pretend"
    # record_messages() shows what was sent, Bcc included as on fastapi-mail's recorded messages.
    [recorded] = outbox
    assert recorded["Subject"] == "Fastapi-Mail module"
    assert recorded["To"] == "to@example.com"
    assert recorded["Bcc"] == "bcc@example.com"


async def test_templates_from_template_folder(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "welcome.html").write_text("<h1>Hello {{ name }}</h1>{% for i in items %}<li>{{ i }}</li>{% endfor %}")
    (tmp_path / "list.html").write_text("{% for p in body %}<b>{{ p.name }}</b>{% endfor %}")
    (tmp_path / "mail.html").write_text("<p>{{ name }}</p>")
    (tmp_path / "mail.txt").write_text("Plain {{ name }}")
    guide_env(monkeypatch, smtp_server.port, TEMPLATE_FOLDER=str(tmp_path))
    fm = FastMail(ConnectionConfig())
    dict_message = MessageSchema(
        subject="Welcome",
        recipients=["ann@example.org"],
        template_body={"name": "<Ann>", "items": ["a", "b"]},
        subtype=MessageType.html,
    )
    await fm.send_message(dict_message, template_name="welcome.html")
    list_message = MessageSchema(
        subject="People", recipients=["ann@example.org"], template_body=[{"name": "Andrej"}], subtype="html"
    )
    await fm.send_message(list_message, template_name="list.html")
    both = MessageSchema(subject="Both", recipients=["ann@example.org"], template_body={"name": "Bo"}, subtype="html")
    await fm.send_message(both, html_template="mail.html", plain_template="mail.txt")
    await fm.aclose()

    first, second, third = (parsed(r.data) for r in smtp_server.received)
    html = first.get_body(("html",))
    assert html is not None
    assert html.get_content().strip() == "<h1>Hello &lt;Ann&gt;</h1><li>a</li><li>b</li>"  # autoescaped
    assert dict_message.template_body == {"name": "<Ann>", "items": ["a", "b"]}  # not changed, as in 1.6
    second_html = second.get_body(("html",))
    assert second_html is not None
    assert "<b>Andrej</b>" in second_html.get_content()
    third_html, third_text = third.get_body(("html",)), third.get_body(("plain",))
    assert third_html is not None
    assert third_html.get_content().strip() == "<p>Bo</p>"
    assert third_text is not None
    assert third_text.get_content().strip() == "Plain Bo"


async def test_alternative_body_and_upload_file_attachments(fm: FastMail, smtp_server: SmtpServer) -> None:
    logo = UploadFile(BytesIO(b"\x89PNG fake"), filename="logo.png", headers=Headers({"content-type": "image/png"}))
    report = UploadFile(BytesIO(b"a,b\n1,2\n"), filename="report.csv")
    message = MessageSchema(
        subject="Report",
        recipients=["to@example.com"],
        body='<p>See <img src="cid:logo1"></p>',
        alternative_body="See the report",
        multipart_subtype=MultipartSubtypeEnum.alternative,
        subtype="html",
        attachments=[
            {"file": logo, "headers": {"Content-ID": "<logo1>", "Content-Disposition": "inline"}},
            {"file": report, "mime_type": "text", "mime_subtype": "csv"},
        ],
        headers={"List-Unsubscribe": "<https://example.com/u>", "X-Campaign": "7"},
    )
    await fm.send_message(message)
    sent = parsed(smtp_server.received[0].data)
    text = sent.get_body(("plain",))
    assert text is not None
    assert text.get_content().strip() == "See the report"
    assert sent["List-Unsubscribe"] == "<https://example.com/u>"
    assert sent["X-Campaign"] == "7"
    parts = {part.get_content_type(): part for part in sent.walk()}
    assert parts["image/png"]["Content-ID"] == "<logo1>"
    assert parts["image/png"].get_content_disposition() == "inline"
    assert parts["text/csv"].get_filename() == "report.csv"


async def test_without_alternative_subtype_the_alternative_body_is_dropped(fm: FastMail) -> None:
    message = MessageSchema(
        subject="s", recipients=["to@example.com"], body="plain", alternative_body="<p>x</p>", subtype="plain"
    )
    assert message.alternative_body is None  # as fastapi-mail's validator does
    [built] = [await fm.get_message(message)]
    assert isinstance(built, EmailMessage)
    assert built.get_content_type() == "text/plain"


async def test_suppress_send_records_without_connecting(fm: FastMail, smtp_server: SmtpServer) -> None:
    fm.config.SUPPRESS_SEND = 1  # set in place, as fastapi-mail's own tests do
    message = MessageSchema(subject="testing", recipients=["to@example.com"], body="Test data", subtype="plain")
    with fm.record_messages() as outbox:
        await fm.send_message([message, message])
    assert len(outbox) == 2
    assert outbox[0]["subject"] == "testing"
    assert outbox[0]["from"] == "Example App <noreply@example.com>"
    assert smtp_server.connections == 0


async def test_a_fastmail_per_request_shares_one_pool(fm: FastMail, smtp_server: SmtpServer) -> None:
    async def endpoint(i: int) -> None:
        message = MessageSchema(subject=f"n{i}", recipients=[f"u{i}@example.org"], body="x", subtype="plain")
        await FastMail(fm.config).send_message(message)  # the guide builds FastMail inside the endpoint

    await asyncio.gather(*(endpoint(i) for i in range(40)))
    assert len(smtp_server.received) == 40
    assert smtp_server.connections <= 4  # the pool (POOL_SIZE 4), not a connection per message


async def test_unreachable_server_raises_connection_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    guide_env(monkeypatch, await closed_port())
    fm = FastMail(ConnectionConfig())
    message = MessageSchema(subject="s", recipients=["to@example.com"], body="x", subtype="plain")
    with pytest.raises(ConnectionErrors, match="check your credentials or email service configuration") as caught:
        await fm.send_message(message)
    assert "check your credentials" in caught.value.expression
    assert isinstance(caught.value.__cause__, SmtpConnectError)
    await fm.aclose()


async def test_a_refused_recipient_raises_mailsc_error(fm: FastMail, smtp_server: SmtpServer) -> None:
    smtp_server.faults.rcpt_any.append("550 5.1.1 no such user")
    message = MessageSchema(subject="s", recipients=["gone@example.com"], body="x", subtype="plain")
    with pytest.raises(RecipientsRefusedError) as caught:
        await fm.send_message(message)
    assert caught.value.smtp_code == 550


async def test_certificates_are_verified(
    server_tls_context: ssl.SSLContext, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SmtpServer(starttls_context=server_tls_context) as server:
        guide_env(monkeypatch, server.port, MAIL_STARTTLS="True")
        message = MessageSchema(subject="tls", recipients=["to@example.com"], body="x", subtype="plain")
        untrusted = FastMail(ConnectionConfig())
        with pytest.raises(ConnectionErrors) as caught:
            await untrusted.send_message(message)
        assert isinstance(caught.value.__cause__, TlsSetupError)
        await untrusted.aclose()
        trusted = FastMail(ConnectionConfig(CERT_BUNDLE=str(ca_file)))
        await trusted.send_message(message)
        await trusted.aclose()
        assert len(server.received) == 1
        assert "STARTTLS" in server.commands


async def test_outbox_url_makes_send_message_durable(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    guide_env(monkeypatch, smtp_server.port, OUTBOX_URL=url)
    async with FastMail(ConnectionConfig()) as fm:
        message = MessageSchema(subject="durable", recipients=["to@example.com"], body="x", subtype="plain")
        await fm.send_message(message)
        for _ in range(1000):  # the worker in this process delivers it
            if smtp_server.received:
                break
            await asyncio.sleep(0.02)
    assert parsed(smtp_server.received[0].data)["Subject"] == "durable"
    store = await OutboxStore.open(url)
    assert await store.counts() == {"sent": 1}
    await store.close()
