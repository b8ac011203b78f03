"""The stored MIME message taken apart for the providers that accept only JSON (SendGrid, Postmark, Resend).

mailsc stores finished MIME (``mime.py``); these providers want its pieces: addresses, subject, text and html,
attachments with their inline ``Content-ID``, custom headers. ``parse_message`` recovers every piece ``mime.py``
writes, so nothing of a mailsc message is lost on the way (``tests/transports/providers/test_structured.py`` checks
each one against the ``Message`` it came from). Bcc recipients are the envelope recipients missing from To and Cc.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.headerregistry import Address as HeaderAddress
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from ...envelope import Envelope

# Fields mailsc writes itself; every other header is a custom one the caller set (List-Unsubscribe, X-*, ...).
_OWN_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version", "sender"}
)
# The stdlib's older API: the modern policy re-parses every header (~8 ms a message, measured; this path is ~10x
# cheaper). Encoded words and folding are undone by hand below.
# SMTPUTF8 mail (raw UTF-8 headers, rare) takes the modern parser, which decodes those headers itself.
_PARSER = BytesParser()
_PARSER_UTF8 = BytesParser(policy=email.policy.default)
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address with its display name (empty when none)."""

    email: str
    name: str = ""

    def formatted(self) -> str:
        """``"Name <a@example.com>"``, quoted where needed, or the bare address."""
        if not self.name:
            return self.email
        local, _, domain = self.email.rpartition("@")
        return str(HeaderAddress(display_name=self.name, username=local, domain=domain))


@dataclass(frozen=True, slots=True)
class Part:
    """An attachment; ``content_id`` (without angle brackets) is set for an inline image referenced as ``cid:``."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None

    @property
    def inline(self) -> bool:
        return self.content_id is not None


@dataclass(frozen=True, slots=True)
class StructuredMessage:
    """Every piece of a mailsc message, as the JSON providers ask for them."""

    sender: Mailbox
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]
    reply_to: tuple[Mailbox, ...]
    subject: str
    text: str | None
    html: str | None
    message_id: str
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Part, ...] = field(default_factory=tuple)


def _utf8(value: str) -> str:
    """Raw UTF-8 in a header (SMTPUTF8 mail) arrives as surrogate escapes: turn it back into text."""
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return value


def _header(value: object) -> str:
    text = _utf8(_FOLD.sub("", str(value)))
    return str(make_header(decode_header(text))) if "=?" in text else text


def _mailboxes(message: Message, name: str) -> tuple[Mailbox, ...]:
    values = [_utf8(_FOLD.sub("", str(v))) for v in message.get_all(name) or []]
    return tuple(
        Mailbox(address, str(make_header(decode_header(display))) if "=?" in display else display)
        for display, address in getaddresses(values)
        if address
    )


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    text = payload.decode(part.get_content_charset() or "utf-8", "replace") if isinstance(payload, bytes) else ""
    # Bodies go out as JSON strings: plain newlines, the provider writes the CRLFs.
    return text.replace("\r\n", "\n")


def parse_message(envelope: Envelope) -> StructuredMessage:
    """Take the envelope's MIME apart; the sender is the From header (the envelope's when there is none)."""
    message = (_PARSER_UTF8 if envelope.smtputf8 else _PARSER).parsebytes(envelope.data)
    senders = _mailboxes(message, "From")
    to, cc = _mailboxes(message, "To"), _mailboxes(message, "Cc")
    shown = {m.email.lower() for m in (*to, *cc)}
    bcc = tuple(Mailbox(r) for r in envelope.recipients if r.lower() not in shown)
    text: str | None = None
    html: str | None = None
    attachments: list[Part] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        disposition = part.get_content_disposition()
        content_type = part.get_content_type()
        if disposition is None and content_type == "text/plain" and text is None:
            text = _text(part)
        elif disposition is None and content_type == "text/html" and html is None:
            html = _text(part)
        else:
            content_id = part.get("Content-ID")
            payload = part.get_payload(decode=True)
            attachments.append(
                Part(
                    filename=_utf8(part.get_filename() or "attachment"),
                    content_type=content_type,
                    content=payload if isinstance(payload, bytes) else b"",
                    content_id=str(content_id).strip().strip("<>") if content_id and disposition == "inline" else None,
                )
            )
    headers = tuple((name, _header(value)) for name, value in message.items() if name.lower() not in _OWN_HEADERS)
    return StructuredMessage(
        sender=senders[0] if senders else Mailbox(envelope.sender),
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=_mailboxes(message, "Reply-To"),
        subject=_header(message.get("Subject", "")),
        text=text,
        html=html,
        message_id=_header(message.get("Message-ID", envelope.message_id)).strip(),
        headers=tuple((n, v) for n, v in headers if not n.lower().startswith("content-")),
        attachments=tuple(attachments),
    )
