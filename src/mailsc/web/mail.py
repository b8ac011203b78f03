"""Reading a stored message for the message view: headers, text and HTML parts, attachments (stdlib ``email``).

The HTML part's ``cid:`` references to inline images are replaced by ``data:`` URIs, so the sandboxed frame can show
them under a Content-Security-Policy that allows no other image source.
"""

from __future__ import annotations

import base64
import email
import email.policy
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote

_CID = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """A part other than the text and HTML bodies; ``index`` addresses it for download."""

    index: int
    filename: str
    content_type: str
    size: int
    inline: bool
    content_id: str | None


@dataclass(frozen=True)
class ParsedMail:
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[Part]


def _message(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)  # guaranteed by policy.default's message factory
    return parsed


def _leaves(part: EmailMessage) -> Iterator[EmailMessage]:
    """Every non-multipart part in order; an attached message (message/rfc822) is one leaf, not opened."""
    if part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            assert isinstance(sub, EmailMessage)
            yield from _leaves(sub)
    else:
        yield part


def _payload(part: EmailMessage) -> bytes:
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
            return bytes(inner[0].as_bytes())
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown or lying charset: show what can be shown
        return _payload(part).decode("utf-8", "replace")
    return content if isinstance(content, str) else _payload(part).decode("utf-8", "replace")


def _header(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a header the parser could not make sense of
        return "(unreadable header)"


def _content_id(part: EmailMessage) -> str | None:
    value = part.get("Content-ID")
    return _header(value).strip().strip("<>") if value is not None else None


def _bodies(message: EmailMessage) -> tuple[EmailMessage | None, EmailMessage | None]:
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    return (
        html if isinstance(html, EmailMessage) else None,
        text if isinstance(text, EmailMessage) else None,
    )


def _describe(index: int, part: EmailMessage) -> Part:
    content_type = part.get_content_type()
    filename = part.get_filename()
    if not filename:
        extension = mimetypes.guess_extension(content_type) or ".bin"
        filename = f"part-{index}{extension}"
    return Part(
        index=index,
        filename=filename,
        content_type=content_type,
        size=len(_payload(part)),
        inline=part.get_content_disposition() != "attachment",
        content_id=_content_id(part),
    )


def parse(raw: bytes) -> ParsedMail:
    """The parts of a stored message, for display."""
    message = _message(raw)
    html_part, text_part = _bodies(message)
    bodies = {id(html_part), id(text_part)}
    others = [(i, leaf) for i, leaf in enumerate(_leaves(message)) if id(leaf) not in bodies]
    html = _text(html_part) if html_part is not None else None
    if html is not None:
        images = {
            cid: leaf for _, leaf in others if (cid := _content_id(leaf)) and leaf.get_content_maintype() == "image"
        }
        html = _CID.sub(lambda m: _data_uri(images.get(unquote(m.group(1))), m.group(0)), html)
    return ParsedMail(
        headers=[(name, _header(value)) for name, value in message.items()],
        text=_text(text_part) if text_part is not None else None,
        html=html,
        attachments=[_describe(i, leaf) for i, leaf in others],
    )


def _data_uri(part: EmailMessage | None, original: str) -> str:
    if part is None:
        return original  # left as cid:, which the frame's policy does not load
    encoded = base64.b64encode(_payload(part)).decode("ascii")
    return f"data:{part.get_content_type()};base64,{encoded}"


def attachment(raw: bytes, index: int) -> tuple[Part, bytes] | None:
    """The part at ``index`` (as listed by ``parse``) and its decoded bytes; None if there is no such part."""
    message = _message(raw)
    html_part, text_part = _bodies(message)
    for i, leaf in enumerate(_leaves(message)):
        if i == index and leaf is not html_part and leaf is not text_part:
            return _describe(i, leaf), _payload(leaf)
    return None
