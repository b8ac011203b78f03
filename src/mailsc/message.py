"""Message values and their validation: addresses, headers, attachments, limits.

Everything a caller hands us is checked here, before anything is stored or sent: addresses with email-validator
(syntax and IDN, no DNS), CR/LF/NUL in any header value, address or display name, custom header names against the
fields mailsc owns, attachment file names. A bad message raises ``MessageError`` naming every bad field.
The MIME rendering lives in ``mime.py``.
"""

from __future__ import annotations

import contextvars
import functools
import mimetypes
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import MessageError

DEFAULT_MAX_RECIPIENTS = 50
DEFAULT_MAX_SIZE = 10 * 1024 * 1024

# Fields mailsc writes itself, and what to use instead of setting them as a custom header.
_OWNED_HEADERS: dict[str, str] = {
    "from": "the `from` field",
    "sender": "the `from` field (mailsc sets the sender)",
    "to": "the `to` field",
    "cc": "the `cc` field",
    "bcc": "the `bcc` field (Bcc never appears in the sent headers)",
    "reply-to": "the `reply_to` field",
    "subject": "the `subject` field",
    "date": "nothing: mailsc sets Date when the message is rendered",
    "message-id": "nothing: mailsc sets Message-ID",
    "mime-version": "nothing: mailsc builds the MIME structure",
    "return-path": "the envelope sender (the `from` field)",
    "received": "nothing: servers add Received",
    "dkim-signature": "your provider's or server's DKIM signing",
}
# All matched with fullmatch: "$" would also match before a final newline.
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}")  # RFC 5322 ftext: printable ASCII except ':'
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_!#$&^.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9_!#$&^.+-]{0,126}")
_CONTENT_ID = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]{1,250}")  # printable ASCII, no < > or space
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
_PLAIN_ASCII = re.compile(r"[\x20-\x7e\t]*")  # printable ASCII and tab: nothing for check_header_value to refuse


def _encodable(text: str) -> bool:
    """Whether ``text`` has no lone surrogate (the only thing UTF-8 cannot encode): encoding is a C loop, about ten
    times faster than searching for the surrogate range with a regular expression."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_header_value(value: str, what: str = "value") -> str:
    """Refuse what could break out of a header: CR, LF, NUL, other control characters (tab excepted), Unicode line
    and paragraph separators, lone surrogates, and RFC 2047 encoded-words (the email package would decode
    ``=?utf-8?q?=0D=0A?=`` into a real line break after this check)."""
    for ch in "" if _PLAIN_ASCII.fullmatch(value) else value:  # the common case skips the per-character scan
        if ch in "\r\n":
            raise ValueError(f"{what} must not contain a line break (CR or LF)")
        if ch == "\x00":
            raise ValueError(f"{what} must not contain a NUL character")
        category = unicodedata.category(ch)
        if (ch != "\t" and category == "Cc") or category in ("Zl", "Zp"):
            raise ValueError(f"{what} must not contain control or line-separator character U+{ord(ch):04X}")
        if category == "Cs":
            raise ValueError(f"{what} must not contain a lone surrogate (U+{ord(ch):04X}); it is not valid text")
    if _ENCODED_WORD.search(value):
        raise ValueError(
            f"{what} contains an RFC 2047 encoded-word ('=?charset?q?...?='); give the plain text, mailsc encodes it"
        )
    return value


@functools.lru_cache(maxsize=4096)
def _validated(address: str) -> tuple[str, bool] | str:
    """``(normalised address, needs SMTPUTF8)``, or why it is invalid. A pure function (no DNS), so the answer is
    cached: the same senders and frequent recipients come back with every message, and email-validator is a tenth
    of the cost of accepting one."""
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return str(exc)
    return valid.ascii_email or valid.normalized, valid.ascii_email is None


class Address(BaseModel):
    """An email address with an optional display name. ``email`` is normalised (IDN domains as punycode)."""

    model_config = ConfigDict(frozen=True)

    email: str
    name: str = ""
    smtputf8: bool = Field(default=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _split_address(value)
        if isinstance(value, tuple) and len(value) == 2:
            return {"name": value[0], "email": value[1]}
        return value

    @model_validator(mode="after")
    def _normalise(self) -> Address:
        check_header_value(self.name, "display name")
        check_header_value(self.email, "address")
        checked = _validated(self.email)
        if isinstance(checked, str):
            raise ValueError(f"invalid email address {self.email!r}: {checked}")
        object.__setattr__(self, "email", checked[0])
        object.__setattr__(self, "smtputf8", checked[1])
        object.__setattr__(self, "name", self.name.strip())
        return self

    def __init__(self, **data: Any) -> None:
        _construct(super().__init__, data)

    @classmethod
    def parse(cls, value: str | Address) -> Address:
        """``"a@example.org"`` or ``"Name <a@example.org>"``; raises ``MessageError``."""
        if isinstance(value, Address):
            return value
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise MessageError(_errors_of(exc)) from None

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]

    def __str__(self) -> str:
        if not self.name:
            return self.email
        name = self.name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{name}" <{self.email}>'


def _split_address(value: str) -> dict[str, str]:
    text = value.strip()
    if text.endswith(">") and "<" in text:
        name, _, rest = text[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return {"name": name, "email": rest.strip()}
    return {"email": text}


def _as_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str | Address | dict):
        return [value]
    return value


AddressList = Annotated[list[Address], BeforeValidator(_as_list)]


def safe_filename(name: str) -> str:
    """A file name without directories, control characters or leading dots; what a mail client will show."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip().lstrip(".").strip()
    return cleaned[:200]


class Attachment(BaseModel):
    """A file attached to a message, or shown inline in its HTML (``inline=True`` and a ``content_id``).

    In JSON, ``content`` is base64."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    filename: str
    content: bytes
    content_type: str | None = None
    inline: bool = False
    content_id: str | None = None

    def __init__(self, **data: Any) -> None:
        _construct(super().__init__, data)

    @field_validator("filename")
    @classmethod
    def _clean_filename(cls, value: str) -> str:
        cleaned = safe_filename(value)
        if not cleaned:
            raise ValueError("filename is empty once directories and control characters are removed")
        return cleaned

    @field_validator("content_id")
    @classmethod
    def _check_content_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().removeprefix("<").removesuffix(">")
        if not _CONTENT_ID.fullmatch(value):
            raise ValueError("content_id must be printable ASCII without spaces or angle brackets")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Attachment:
        if self.content_type is None:
            guessed, _ = mimetypes.guess_type(self.filename, strict=False)
            object.__setattr__(self, "content_type", guessed or "application/octet-stream")
        elif not _CONTENT_TYPE.fullmatch(self.content_type):
            raise ValueError(f"content_type {self.content_type!r} is not of the form type/subtype")
        if self.inline and not self.content_id:
            raise ValueError("an inline attachment needs a content_id (referenced as cid:... in the HTML)")
        return self

    @property
    def maintype(self) -> str:
        return (self.content_type or "application/octet-stream").split("/", 1)[0].lower()

    @property
    def subtype(self) -> str:
        return (self.content_type or "application/octet-stream").split("/", 1)[1].lower()


class Message(BaseModel):
    """One email as the caller describes it. Construction validates every field and raises ``MessageError``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True)

    from_: Address | None = Field(default=None, alias="from")
    to: AddressList = Field(default_factory=list)
    cc: AddressList = Field(default_factory=list)
    bcc: AddressList = Field(default_factory=list)
    reply_to: AddressList = Field(default_factory=list)
    subject: str
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        _construct(super().__init__, data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Validate a JSON-like mapping (``"from"`` as the key); raises ``MessageError``."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise MessageError(_errors_of(exc)) from None

    @field_validator("subject")
    @classmethod
    def _check_subject(cls, value: str) -> str:
        return check_header_value(value, "subject")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, header_value in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"header name {name[:80]!r} is not valid: use 1-76 printable ASCII characters without ':' or space"
                )
            lowered = name.lower()
            instead = _OWNED_HEADERS.get(lowered)
            if instead is None and lowered.startswith("content-"):
                instead = "the `attachments`, `text` and `html` fields (mailsc builds the MIME structure)"
            if instead is not None:
                raise ValueError(f"header {name!r} is set by mailsc; use {instead}")
            if lowered in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(lowered)
            check_header_value(header_value, f"header {name!r}")
        return value

    @field_validator("text", "html")
    @classmethod
    def _check_body(cls, value: str | None) -> str | None:
        if value is not None:
            if "\x00" in value:
                raise ValueError("the body must not contain a NUL character")
            if not value.isascii() and not _encodable(value):
                raise ValueError("the body must not contain a lone surrogate; it is not valid text")
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            check_header_value(tag, "tag")
            if not tag or len(tag) > 100:
                raise ValueError("each tag must be 1-100 characters")
        return value

    @model_validator(mode="after")
    def _check_whole(self) -> Message:
        if not (self.to or self.cc or self.bcc):
            raise ValueError("a message needs at least one recipient in to, cc or bcc")
        if self.text is None and self.html is None:
            raise ValueError("a message needs a text or an html body (or both)")
        inline_ids = [a.content_id for a in self.attachments if a.inline]
        if inline_ids and self.html is None:
            raise ValueError("inline attachments need an html body that references them")
        if len(set(inline_ids)) != len(inline_ids):
            raise ValueError("two inline attachments share a content_id")
        return self

    @property
    def recipients(self) -> list[Address]:
        """Every envelope recipient (to, cc and bcc), each once, in order."""
        seen: dict[str, Address] = {}
        for address in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(address.email.lower(), address)
        return list(seen.values())


_outermost = contextvars.ContextVar("mailsc_message_validation", default=True)


def _construct(init: Callable[..., None], data: dict[str, Any]) -> None:
    """Run a model's ``__init__``; the outermost one turns a ``ValidationError`` into a ``MessageError``.

    Pydantic calls a nested model's custom ``__init__`` too; there the error must stay a ``ValidationError`` so the
    outer model reports it with its full location (``attachments.0.filename``)."""
    if not _outermost.get():
        init(**data)
        return
    token = _outermost.set(False)
    try:
        init(**data)
    except ValidationError as exc:
        raise MessageError(_errors_of(exc)) from None
    finally:
        _outermost.reset(token)


def _errors_of(exc: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        errors.append({"loc": [p for p in error["loc"] if p != "__root__"], "msg": msg})
    return errors


def ensure_limits(message: Message, *, max_recipients: int) -> None:
    """Raise ``MessageError`` when a message has more envelope recipients than allowed."""
    count = len(message.recipients)
    if count > max_recipients:
        raise MessageError.single(
            "to", f"{count} recipients in to, cc and bcc together; at most {max_recipients} are allowed per message"
        )
