"""Messages as mailsc renders them, for the provider tests."""

from __future__ import annotations

from mailsc.envelope import Envelope
from mailsc.message import Address, Attachment, Message
from mailsc.mime import render

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + bytes(range(255, -1, -1)) * 8


def rich_message(**changes: object) -> Message:
    """Every piece mailsc produces: names, cc, bcc, reply-to, non-ASCII subject and body, html with an inline
    image, a file attachment, custom headers."""
    fields: dict[str, object] = {
        "from": "App Team <app@example.com>",
        "to": ["Ada Lovelace <ada@example.org>"],
        "cc": ["bob@example.org"],
        "bcc": ["carol@example.org"],
        "reply_to": ["Help <help@example.com>"],
        "subject": "Grüße, Ada ✓",
        "text": "Hello Ada,\nhere is your report. ✓\n",
        "html": '<p>Hello <b>Ada</b> ✓</p><img src="cid:logo">',
        "headers": {"List-Unsubscribe": "<mailto:unsub@example.com>", "X-Campaign": "spring"},
        "attachments": [
            Attachment(filename="report.pdf", content=PDF, content_type="application/pdf"),
            Attachment(filename="logo.png", content=PNG, content_type="image/png", inline=True, content_id="logo"),
        ],
    }
    fields.update(changes)
    return Message(**fields)


def envelope_of(message: Message) -> Envelope:
    return render(message, default_sender=Address.parse("app@example.com"))


def simple_envelope(to: str = "ada@example.org") -> Envelope:
    return envelope_of(Message(**{"from": "app@example.com", "to": [to], "subject": "Hi", "text": "Hello"}))
