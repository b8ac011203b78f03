"""Rendering a validated ``Message`` into the exact bytes that go on the wire (an ``Envelope``).

Built with the standard ``email`` package and the SMTP policy: CRLF line endings, headers folded and RFC 2047
encoded, bodies in quoted-printable or base64 whenever a line would be long or not ASCII, so no line exceeds
998 octets and no input can smuggle an end-of-data. ``Bcc`` is kept in the envelope only.
"""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email import headerregistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from .envelope import Envelope
from .errors import MessageError
from .htmltext import html_to_text
from .message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address, Message, ensure_limits

# 7bit bodies work with every server, whether or not it offers 8BITMIME.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")
_POLICY_UTF8 = email.policy.SMTPUTF8.clone(cte_type="7bit")


def _header_address(address: Address) -> headerregistry.Address:
    # username/domain, not addr_spec: the stdlib parser refuses a non-ASCII local part that SMTPUTF8 allows.
    username, _, domain = address.email.rpartition("@")
    return headerregistry.Address(display_name=address.name, username=username, domain=domain)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def render(
    message: Message,
    *,
    default_sender: Address | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    max_recipients: int = DEFAULT_MAX_RECIPIENTS,
    now: datetime | None = None,
) -> Envelope:
    """Render ``message`` to an ``Envelope``; raises ``MessageError`` for a missing sender or a limit exceeded."""
    sender = message.from_ or default_sender
    if sender is None:
        raise MessageError.single("from", "no sender: give `from` or configure a default sender (MAILSC_MAIL_FROM)")
    ensure_limits(message, max_recipients=max_recipients)
    recipients = message.recipients
    header_addresses = [sender, *message.to, *message.cc, *message.reply_to]
    smtputf8 = any(a.smtputf8 for a in (*header_addresses, *recipients))
    policy = _POLICY_UTF8 if smtputf8 else _POLICY

    mime = EmailMessage(policy=policy)
    mime["From"] = _header_address(sender)
    if message.to:
        mime["To"] = [_header_address(a) for a in message.to]
    if message.cc:
        mime["Cc"] = [_header_address(a) for a in message.cc]
    if message.reply_to:
        mime["Reply-To"] = [_header_address(a) for a in message.reply_to]
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now or datetime.now(UTC))
    domain = sender.domain if sender.domain.isascii() else "mailsc.invalid"
    message_id = make_msgid(domain=domain)
    mime["Message-ID"] = message_id
    for name, value in message.headers.items():
        mime[name] = value

    html = _normalise_newlines(message.html) if message.html is not None else None
    text = _normalise_newlines(message.text) if message.text is not None else None
    if text is None and html is not None:
        text = html_to_text(html)
    mime.set_content(text or "")
    if html is not None:
        mime.add_alternative(html, subtype="html")
        inline = [a for a in message.attachments if a.inline]
        if inline:
            html_part = mime.get_body(preferencelist=("html",))
            assert isinstance(html_part, EmailMessage)
            for attachment in inline:
                html_part.add_related(
                    attachment.content,
                    attachment.maintype,
                    attachment.subtype,
                    cid=f"<{attachment.content_id}>",
                    filename=attachment.filename,
                    disposition="inline",
                )
    for attachment in message.attachments:
        if not attachment.inline:
            mime.add_attachment(
                attachment.content, attachment.maintype, attachment.subtype, filename=attachment.filename
            )

    data = mime.as_bytes(policy=policy)
    if len(data) > max_size:
        raise MessageError.single(
            "attachments" if message.attachments else "text",
            f"the message is {len(data):,} bytes once encoded; at most {max_size:,} bytes are allowed",
        )
    return Envelope(
        sender=sender.email,
        recipients=tuple(a.email for a in recipients),
        data=data,
        message_id=message_id,
        smtputf8=smtputf8,
        subject=message.subject,
    )
