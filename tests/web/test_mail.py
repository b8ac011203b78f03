"""Reading stored MIME for the message view: bodies, headers, attachments, inline images as data: URIs."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from typing import Any

from mailsc import Message, render
from mailsc.web import mail

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def stored(**fields: Any) -> bytes:
    """The bytes the outbox stores for a message."""
    return render(Message(**{"from": "app@example.com", "to": "jo@example.org", "subject": "Hi", **fields})).data


def test_text_only_mail() -> None:
    parsed = mail.parse(stored(text="Just text ✓"))
    assert parsed.html is None
    assert parsed.text is not None
    assert parsed.text.strip() == "Just text ✓"
    assert parsed.attachments == []
    assert ("Subject", "Hi") in parsed.headers


def test_inline_images_become_data_uris_and_attachments_are_listed() -> None:
    raw = stored(
        html='<p>logo <img src="cid:logo@x"> and <img src="cid:missing"></p>',
        text="logo",
        attachments=[
            {
                "filename": "logo.gif",
                "content": base64.b64encode(GIF).decode(),
                "content_type": "image/gif",
                "inline": True,
                "content_id": "logo@x",
            },
            {
                "filename": "report.pdf",
                "content": base64.b64encode(b"%PDF-1").decode(),
                "content_type": "application/pdf",
            },
        ],
    )
    parsed = mail.parse(raw)
    assert parsed.html is not None
    assert f'src="data:image/gif;base64,{base64.b64encode(GIF).decode()}"' in parsed.html
    assert 'src="cid:missing"' in parsed.html  # unknown: left for the frame's policy to refuse
    by_name = {a.filename: a for a in parsed.attachments}
    assert set(by_name) == {"logo.gif", "report.pdf"}
    assert by_name["logo.gif"].content_id == "logo@x"
    assert by_name["report.pdf"].size == 6
    assert not by_name["report.pdf"].inline
    found = mail.attachment(raw, by_name["report.pdf"].index)
    assert found is not None
    assert found[1] == b"%PDF-1"
    assert mail.attachment(raw, 999) is None
    bodies = [i for i in range(by_name["report.pdf"].index) if i != by_name["logo.gif"].index]
    assert all(mail.attachment(raw, i) is None for i in bodies)  # the text and HTML bodies are not downloads


def test_a_lying_charset_and_an_attached_message_still_show() -> None:
    outer = EmailMessage()
    outer["Subject"] = "odd"
    outer.set_content("placeholder")
    outer.replace_header("Content-Type", 'text/plain; charset="x-unknown-charset"')
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("<b>inner html</b>", subtype="html")
    wrapper = EmailMessage()
    wrapper["Subject"] = "wrapper"
    wrapper.set_content("see the attached mail")
    wrapper.add_attachment(inner)
    parsed = mail.parse(outer.as_bytes())
    assert parsed.text is not None
    assert "placeholder" in parsed.text
    forwarded = mail.parse(wrapper.as_bytes())
    assert forwarded.html is None  # the attached message's HTML is not this message's body
    [attached] = forwarded.attachments
    assert attached.content_type == "message/rfc822"
    found = mail.attachment(wrapper.as_bytes(), attached.index)
    assert found is not None
    assert b"Subject: forwarded" in found[1]
