"""Rendering a validated ``Message`` into the exact bytes that go on the wire (an ``Envelope``).

Built with the standard ``email`` package and the SMTP policy: CRLF line endings, headers folded and RFC 2047
encoded, bodies in quoted-printable or base64 whenever a line would be long or not ASCII, so no line exceeds
998 octets and no input can smuggle an end-of-data. ``Bcc`` is kept in the envelope only.
"""

from __future__ import annotations

import email.charset
import email.policy
import re
import secrets
import sys
from datetime import UTC, datetime
from email import headerregistry
from email.encoders import encode_base64
from email.header import Header
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, cast

from .envelope import Envelope
from .errors import MessageError
from .htmltext import html_to_text
from .message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address, Attachment, Message, ensure_limits

# 7bit bodies work with every server, whether or not it offers 8BITMIME.
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
    if not smtputf8:
        build = _build_compat if message.attachments else _build_fast
        data, message_id = build(message, sender, now)
        return _envelope(message, sender, recipients, data, message_id, smtputf8, max_size)
    policy = _POLICY_UTF8

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

    return _envelope(message, sender, recipients, mime.as_bytes(policy=policy), message_id, smtputf8, max_size)


def _envelope(
    message: Message,
    sender: Address,
    recipients: list[Address],
    data: bytes,
    message_id: str,
    smtputf8: bool,
    max_size: int,
) -> Envelope:
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
        tags=tuple(message.tags),
        metadata=dict(message.metadata),
    )


# The fast path, for every message whose addresses are ASCII (all but SMTPUTF8 ones): the same standard library,
# through its older API. The modern policy re-parses every header it is given (about 1.5 ms of the 2 ms a message
# cost); here header values are already validated, so they are only encoded.
_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.SHORTEST
_UTF8.body_encoding = email.charset.QP


class _Compat32(Compat32):
    """compat32 that writes a short, plain ASCII header as it is: ``email.header.Header`` would return it unchanged
    (checked against it over random values in the tests) after about 50 µs of splitting and measuring, half the
    cost of rendering a message. Everything else is folded by the stdlib as before."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if isinstance(value, str) and len(name) + len(value) <= 76 and _PLAIN_HEADER.fullmatch(value):
            return f"{name}: {value}{self.linesep}"
        folded: str = cast(Any, super())._fold(name, value, sanitize)  # private in typeshed, stable since 3.3
        return folded


# Printable ASCII words separated by single spaces: nothing for the folding algorithm to change.
_PLAIN_HEADER = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_COMPAT = _Compat32(linesep="\r\n", max_line_length=78)


def _header_value(value: str) -> Any:
    if value.isascii() and all(len(word) < 900 for word in value.split()):
        return value
    return Header(value, _UTF8, maxlinelen=76, header_name="X-Header-Name")


def _address_header(addresses: list[Address]) -> str:
    return ", ".join(formataddr((a.name, a.email), charset="utf-8") if a.name else a.email for a in addresses)


def _part(part: MIMEBase) -> MIMEBase:
    del part["MIME-Version"]  # MIMEBase adds one to every part; only the top needs it
    return part


def _attachment(attachment: Attachment) -> MIMEBase:
    part = MIMEBase(attachment.maintype, attachment.subtype)
    part.set_payload(attachment.content)
    encode_base64(part)
    filename: Any = attachment.filename if attachment.filename.isascii() else ("utf-8", "", attachment.filename)
    part.add_header("Content-Disposition", "inline" if attachment.inline else "attachment", filename=filename)
    if attachment.inline:
        part["Content-ID"] = f"<{attachment.content_id}>"
    return _part(part)


def _ending_newline(text: str) -> str:
    """Every body ends with a line break, as the modern API's ``set_content`` ensures."""
    return text if text.endswith("\n") else text + "\n"


def _build_fast(
    message: Message,
    sender: Address,
    now: datetime | None,
    *,
    boundary: str | None = None,
    message_id: str | None = None,
) -> tuple[bytes, str]:
    """The bytes ``_build_compat`` produces for a message without attachments (most transactional mail), written
    directly: the same header folding (``_COMPAT``), the same quoted-printable encoder, the same layout of parts.
    The stdlib's object model and generator cost four times as much for this shape; a property test holds the two
    byte-identical. ``boundary`` and ``message_id`` are for that test."""
    html = _normalise_newlines(message.html) if message.html is not None else None
    text = _normalise_newlines(message.text) if message.text is not None else None
    if text is None and html is not None:
        text = html_to_text(html)
    plain = _qp(_ending_newline(text or ""))
    if html is None:
        head = _TEXT_HEAD
        body = plain
    else:
        boundary = boundary or _make_boundary()
        head = _COMPAT.fold("Content-Type", f'multipart/alternative; boundary="{boundary}"') + "MIME-Version: 1.0\r\n"
        body = (
            f"--{boundary}\n{_TEXT_PART_HEAD}{plain}\n--{boundary}\n{_HTML_PART_HEAD}"
            f"{_qp(_ending_newline(html))}\n--{boundary}--\n"
        )
    fold = _COMPAT.fold
    lines = [head, fold("From", _address_header([sender]))]
    if message.to:
        lines.append(fold("To", _address_header(message.to)))
    if message.cc:
        lines.append(fold("Cc", _address_header(message.cc)))
    if message.reply_to:
        lines.append(fold("Reply-To", _address_header(message.reply_to)))
    lines.append(fold("Subject", _header_value(message.subject)))
    lines.append(fold("Date", format_datetime(now or datetime.now(UTC))))
    message_id = message_id or make_msgid(domain=sender.domain)
    lines.append(fold("Message-ID", message_id))
    lines.extend(fold(name, _header_value(value)) for name, value in message.headers.items())
    lines.append("\r\n")
    lines.append(body.replace("\n", "\r\n"))
    return "".join(lines).encode("ascii", "surrogateescape"), message_id


_TEXT_HEAD = (
    'Content-Type: text/plain; charset="utf-8"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)
_TEXT_PART_HEAD = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
_HTML_PART_HEAD = 'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'


def _qp(text: str) -> str:
    """Quoted-printable, exactly as ``MIMEText(text, _charset=_UTF8)`` encodes its payload
    (``email.quoprimime.body_encode`` over the UTF-8 bytes; property-tested equal), about four times faster: that
    function escapes through ``str.translate`` with a 256-entry list, one Python lookup per character. Here the
    escaping is done with C-level bytes operations and only lines that need wrapping are wrapped in Python."""
    if not text:
        return text
    body = _qp_escape(text.encode("utf-8"))
    encoded = [
        line if len(line) <= _QP_LINE and line[-1:] not in (" ", "\t") else _qp_wrap(line) for line in body.splitlines()
    ]
    if body[-1] in "\r\n":
        encoded.append("")
    return "\n".join(encoded)


_QP_LINE = 76  # RFC 2045's limit, quoprimime's default
_QP_SAFE = bytes([9, 10, 13, *range(0x20, 0x7F)])  # kept as they are (with '=', escaped before this is used)
_QP_MARK = bytes(b if b in _QP_SAFE else 0 for b in range(256))  # every byte to escape becomes NUL
_QP_HEX = re.compile(rb"=..")
_QP_RUN = re.compile(rb"[^\t\n\r\x20-\x7e]+")


def _qp_hex_run(match: re.Match[bytes]) -> bytes:
    return ("=" + match.group().hex("=").upper()).encode("ascii")


def _qp_escape(data: bytes) -> str:
    """``data`` with '=' and every byte outside printable ASCII, tab, CR and LF as ``=XX``."""
    data = data.replace(b"=", b"=3D")
    escaped = data.translate(None, _QP_SAFE)  # the bytes to escape, in order
    if not escaped:
        return data.decode("ascii")
    if len(escaped) * 8 > len(data):  # dense (most non-Latin scripts): one call per run of escaped bytes
        return _QP_RUN.sub(_qp_hex_run, data).decode("ascii")
    # Sparse: split the text around them and interleave their escapes, all in C.
    pieces: list[bytes] = [b""] * (2 * len(escaped) + 1)
    pieces[::2] = data.translate(_QP_MARK).split(b"\0")
    pieces[1::2] = _QP_HEX.findall(("=" + escaped.hex("=")).upper().encode("ascii"))
    return b"".join(pieces).decode("ascii")


def _qp_wrap(line: str) -> str:
    """One escaped line as ``email.quoprimime.body_encode`` wraps it: soft breaks after at most 75 characters,
    never inside an escape, and a trailing space or tab escaped or followed by a soft break."""
    pieces: list[str] = []
    append = pieces.append
    start = 0
    laststart = len(line) - 1 - _QP_LINE
    while start <= laststart:
        stop = start + _QP_LINE - 1
        if line[stop - 2] == "=":  # an escape would be cut: break before it
            stop -= 2
        elif line[stop - 1] == "=":
            stop -= 1
        append(line[start:stop])
        start = stop
    last = line[-1]
    if last in " \t":
        room = start - laststart
        if room >= 3:
            append(f"{line[start:-1]}={ord(last):02X}")
        elif room == 2:
            append(f"{line[start:]}=\n")
        else:
            append(f"{line[start:-1]}=\n={ord(last):02X}")
    else:
        append(line[start:])
    return "=\n".join(pieces)


def _make_boundary() -> str:
    # The stdlib's boundary form. It can never occur in a quoted-printable body, where every '=' is encoded.
    return "=" * 15 + f"{secrets.randbelow(sys.maxsize):019d}" + "=="


def _build_compat(message: Message, sender: Address, now: datetime | None) -> tuple[bytes, str]:
    html = _normalise_newlines(message.html) if message.html is not None else None
    text = _normalise_newlines(message.text) if message.text is not None else None
    if text is None and html is not None:
        text = html_to_text(html)
    charset: Any = _UTF8
    body: MIMEBase = MIMEText(_ending_newline(text or ""), "plain", charset)
    if html is not None:
        html_part: MIMEBase = _part(MIMEText(_ending_newline(html), "html", charset))
        inline = [_attachment(a) for a in message.attachments if a.inline]
        if inline:
            html_part = _part(MIMEMultipart("related", _subparts=[html_part, *inline]))
        body = MIMEMultipart("alternative", _subparts=[_part(body), html_part])
    attached = [_attachment(a) for a in message.attachments if not a.inline]
    root = MIMEMultipart("mixed", _subparts=[_part(body), *attached]) if attached else body
    root["From"] = _address_header([sender])
    if message.to:
        root["To"] = _address_header(message.to)
    if message.cc:
        root["Cc"] = _address_header(message.cc)
    if message.reply_to:
        root["Reply-To"] = _address_header(message.reply_to)
    root["Subject"] = _header_value(message.subject)
    root["Date"] = format_datetime(now or datetime.now(UTC))
    message_id = make_msgid(domain=sender.domain)
    root["Message-ID"] = message_id
    for name, value in message.headers.items():
        root[name] = _header_value(value)
    data = root.as_bytes(policy=_COMPAT)
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), message_id
