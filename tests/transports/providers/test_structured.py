"""The JSON providers get every piece of a mailsc message back out of the stored MIME, on both rendering paths."""

from __future__ import annotations

import base64

import pytest

from mailsc.transports.providers.postmark import postmark_payload
from mailsc.transports.providers.resend import resend_payload
from mailsc.transports.providers.sendgrid import sendgrid_payload
from mailsc.transports.providers.structured import Mailbox, parse_message
from tests.transports.providers.messages import PDF, PNG, envelope_of, rich_message


@pytest.mark.parametrize("to", ["Ada Lovelace <ada@example.org>", "Jörg Müller <jörg@example.org>"])
def test_every_piece_comes_back(to: str) -> None:
    message = rich_message(to=[to])
    envelope = envelope_of(message)
    parsed = parse_message(envelope)
    assert parsed.sender == Mailbox("app@example.com", "App Team")
    assert parsed.to == (Mailbox(message.to[0].email, message.to[0].name or ""),)
    assert parsed.cc == (Mailbox("bob@example.org"),)
    assert parsed.bcc == (Mailbox("carol@example.org"),)
    assert parsed.reply_to == (Mailbox("help@example.com", "Help"),)
    assert parsed.subject == message.subject
    assert parsed.text == message.text
    assert parsed.html == f"{message.html}\n"
    assert parsed.message_id == envelope.message_id
    assert dict(parsed.headers) == message.headers
    by_name = {a.filename: a for a in parsed.attachments}
    assert by_name["report.pdf"].content == PDF
    assert not by_name["report.pdf"].inline
    assert by_name["report.pdf"].content_type == "application/pdf"
    assert by_name["logo.png"].content == PNG
    assert by_name["logo.png"].content_id == "logo"


def test_sendgrid_body() -> None:
    envelope = envelope_of(rich_message())
    body = sendgrid_payload(parse_message(envelope), tags=("welcome", "spring"), metadata={"user": "42"})
    assert body["personalizations"] == [
        {
            "to": [{"email": "ada@example.org", "name": "Ada Lovelace"}],
            "cc": [{"email": "bob@example.org"}],
            "bcc": [{"email": "carol@example.org"}],
        }
    ]
    assert body["from"] == {"email": "app@example.com", "name": "App Team"}
    assert body["reply_to"] == {"email": "help@example.com", "name": "Help"}
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"]["Message-ID"] == envelope.message_id
    assert body["headers"]["List-Unsubscribe"] == "<mailto:unsub@example.com>"
    inline = next(a for a in body["attachments"] if a["disposition"] == "inline")
    assert inline["content_id"] == "logo"
    assert base64.b64decode(inline["content"]) == PNG
    assert body["categories"] == ["welcome", "spring"]
    assert body["custom_args"] == {"user": "42"}


def test_sendgrid_bcc_only_goes_to_each_recipient_alone() -> None:
    envelope = envelope_of(rich_message(to=[], cc=[], bcc=["a@example.org", "b@example.org"]))
    body = sendgrid_payload(parse_message(envelope))
    assert body["personalizations"] == [{"to": [{"email": "a@example.org"}]}, {"to": [{"email": "b@example.org"}]}]


def test_postmark_body() -> None:
    envelope = envelope_of(rich_message())
    body = postmark_payload(parse_message(envelope), tags=("welcome", "spring"), metadata={"user": "42"})
    assert body["From"] == "App Team <app@example.com>"
    assert body["To"] == "Ada Lovelace <ada@example.org>"
    assert (body["Cc"], body["Bcc"], body["ReplyTo"]) == (
        "bob@example.org",
        "carol@example.org",
        "Help <help@example.com>",
    )
    assert body["TextBody"].startswith("Hello Ada")
    assert "<b>Ada</b>" in body["HtmlBody"]
    assert {"Name": "Message-ID", "Value": envelope.message_id} in body["Headers"]
    assert {"Name": "X-Campaign", "Value": "spring"} in body["Headers"]
    logo = next(a for a in body["Attachments"] if a["Name"] == "logo.png")
    assert logo["ContentID"] == "cid:logo"
    assert base64.b64decode(logo["Content"]) == PNG
    assert body["Tag"] == "welcome"
    assert body["Metadata"] == {"user": "42", "tags": "welcome,spring"}
    assert body["MessageStream"] == "outbound"


def test_resend_body() -> None:
    envelope = envelope_of(rich_message())
    body = resend_payload(parse_message(envelope), tags=("welcome mail",), metadata={"user": "42"})
    assert body["from"] == "App Team <app@example.com>"
    assert (body["to"], body["cc"], body["bcc"]) == (
        ["Ada Lovelace <ada@example.org>"],
        ["bob@example.org"],
        ["carol@example.org"],
    )
    assert body["reply_to"] == ["Help <help@example.com>"]
    assert body["headers"]["Message-ID"] == envelope.message_id
    pdf = next(a for a in body["attachments"] if a["filename"] == "report.pdf")
    assert base64.b64decode(pdf["content"]) == PDF
    assert "content_id" not in pdf
    assert body["tags"] == [{"name": "welcome_mail", "value": "true"}, {"name": "user", "value": "42"}]


def test_a_quoted_display_name_survives() -> None:
    envelope = envelope_of(rich_message(to=['"Lovelace, Ada" <ada@example.org>']))
    assert resend_payload(parse_message(envelope))["to"] == ['"Lovelace, Ada" <ada@example.org>']
