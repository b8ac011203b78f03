"""fastapi-mail's ``MessageSchema``, ``MessageType`` and ``MultipartSubtypeEnum``, with its field names, types and
defaults. Construction also runs mailsc's header rules (DESIGN.md §7): a line break in a subject, a display name or
a header value, or a header mailsc writes itself (``From``, ``Message-ID``, ``Content-*``, ...) is refused here, as a
``pydantic.ValidationError``, before anything is sent."""

from __future__ import annotations

import mimetypes
import os
from enum import Enum
from io import BytesIO
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, NameEmail, field_validator, model_validator
from starlette.datastructures import Headers, UploadFile

from ...errors import MessageError
from ...message import Address, Message
from .errors import WrongFile


class MultipartSubtypeEnum(Enum):
    """The multipart subtype fastapi-mail builds. mailsc builds its own MIME structure: only ``alternative``
    matters (it lets ``alternative_body`` through); the others are accepted and the structure stays correct."""

    mixed = "mixed"
    digest = "digest"
    alternative = "alternative"
    related = "related"
    report = "report"
    signed = "signed"
    encrypted = "encrypted"
    form_data = "form-data"
    mixed_replace = "x-mixed-replace"
    byterange = "byterange"


class MessageType(Enum):
    """What ``body`` (or the rendered template) is."""

    plain = "plain"
    html = "html"


# One attachment after validation: the file and its metadata ({"headers": ..., "mime_type": ..., ...} or None).
AttachmentItem = tuple[UploadFile, dict[str, Any] | None]


class MessageSchema(BaseModel):
    """One message, as fastapi-mail describes it (``from fastapi_mail import MessageSchema``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recipients: list[NameEmail]
    attachments: list[UploadFile | dict[Any, Any] | str] = []
    subject: str = ""
    body: str | list[Any] | None = None
    alternative_body: str | None = None
    template_body: list[Any] | dict[Any, Any] | str | None = None
    cc: list[NameEmail] = []
    bcc: list[NameEmail] = []
    reply_to: list[NameEmail] = []
    from_email: EmailStr | None = None
    from_name: str | None = None
    charset: str = "utf-8"
    subtype: MessageType
    multipart_subtype: MultipartSubtypeEnum = MultipartSubtypeEnum.mixed
    headers: dict[Any, Any] | None = None

    @field_validator("attachments")
    @classmethod
    def validate_file(cls, value: list[Any]) -> list[AttachmentItem]:
        """Paths are read now (as fastapi-mail does), into ``UploadFile`` objects; ``WrongFile`` otherwise."""
        items: list[AttachmentItem] = []
        for entry in value:
            meta: dict[str, Any] | None = None
            file = entry
            if isinstance(entry, dict):
                if "file" not in entry:
                    raise WrongFile('missing "file" key')
                meta = {k: v for k, v in entry.items() if k != "file"}
                file = entry["file"]
            if isinstance(file, str):
                if not (os.path.isfile(file) and os.access(file, os.R_OK)):
                    raise WrongFile("incorrect file path for attachment or not readable")
                content_type, _ = mimetypes.guess_type(file)
                with open(file, "rb") as handle:
                    content = handle.read()
                headers = Headers({"content-type": content_type}) if content_type else None
                items.append((UploadFile(BytesIO(content), filename=os.path.basename(file), headers=headers), meta))
            elif isinstance(file, UploadFile):
                items.append((file, meta))
            else:
                raise WrongFile("attachments field type incorrect, must be UploadFile or path")
        return items

    @model_validator(mode="after")
    def validate_alternative_body(self) -> MessageSchema:
        """fastapi-mail drops ``alternative_body`` unless ``multipart_subtype`` is ``alternative``."""
        if self.multipart_subtype != MultipartSubtypeEnum.alternative and self.alternative_body:
            self.alternative_body = None
        return self

    @model_validator(mode="after")
    def _check_headers_like_mailsc(self) -> MessageSchema:
        # A trial Message runs every header rule mailsc has; recipients may still be empty here (fastapi-mail
        # allows building such a schema), so a placeholder stands in until send time.
        try:
            Message(
                **{"from": sender_of(self.from_email, self.from_name)},
                to=addresses(self.recipients) or ["placeholder@example.com"],
                cc=addresses(self.cc),
                bcc=addresses(self.bcc),
                reply_to=addresses(self.reply_to),
                subject=self.subject,
                text="",
                headers=header_dict(self.headers),
            )
        except MessageError as exc:
            raise ValueError(
                "; ".join(
                    ".".join(str(_FIELDS.get(p, p)) for p in e["loc"]) + f": {e['msg']}" if e["loc"] else e["msg"]
                    for e in exc.errors
                )
            ) from None
        return self


_FIELDS = {"to": "recipients", "from": "from_email"}  # mailsc's field -> MessageSchema's


def addresses(values: list[NameEmail]) -> list[Address]:
    """pydantic's ``NameEmail`` fills a missing display name with the local part; that is not a name."""
    return [Address(email=v.email, name="" if v.name == v.email.partition("@")[0] else v.name) for v in values]


def sender_of(email: str | None, name: str | None) -> Address | None:
    if not email:
        return None
    return Address(email=str(email), name=name or "")


def header_dict(headers: dict[Any, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (headers or {}).items()}
