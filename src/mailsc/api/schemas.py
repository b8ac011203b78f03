"""Request and response bodies of the HTTP API (DESIGN.md §4), with OpenAPI examples.

The request models check shapes and types; the rules of a valid message live in one place, ``mailsc.message``,
and are applied by ``MessageCreate.to_message()``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Base64Bytes, BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from ..message import Attachment, Message
from ..outbox.records import MessageRecord

Addresses = str | list[str]

EXAMPLE: JsonDict = {
    "from": "Example App <noreply@example.com>",
    "to": ["ada@example.org"],
    "subject": "Welcome, Ada",
    "text": "Thanks for signing up.",
    "html": "<p>Thanks for signing up.</p>",
    "tags": ["welcome"],
}


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(max_length=255)
    content: Base64Bytes = Field(description="the file, base64-encoded")
    content_type: str | None = None
    inline: bool = False
    content_id: str | None = Field(None, description="for inline images: referenced as cid:... in the HTML")


TEMPLATE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"


class MessageCreate(BaseModel):
    """One message to accept. Give ``text``, ``html`` or both, or a ``template`` with its ``variables`` (the
    template gives the subject and the bodies; a ``subject`` given here replaces the template's); ``from`` defaults
    to the configured sender."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, json_schema_extra={"examples": [EXAMPLE]})

    from_: str | None = Field(None, alias="from")
    to: Addresses | None = None
    cc: Addresses | None = None
    bcc: Addresses | None = None
    reply_to: Addresses | None = None
    subject: str | None = Field(None, max_length=998, description="required unless a template gives it")
    text: str | None = None
    html: str | None = None
    template: str | None = Field(
        None, pattern=TEMPLATE_NAME, description="a stored template, else a file of MAILSC_TEMPLATES_DIR"
    )
    variables: dict[str, Any] | None = Field(None, description="the template's variables")
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentIn] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, max_length=20)
    metadata: dict[str, str] = Field(default_factory=dict)
    send_at: AwareDatetime | None = Field(None, description="RFC 3339; the first time the message may be sent")
    expires_at: AwareDatetime | None = Field(None, description="RFC 3339; undelivered mail is dropped after this")

    @model_validator(mode="after")
    def _template_or_body(self) -> MessageCreate:
        if self.template is None:
            if self.subject is None:
                raise ValueError("subject is required (or give a template)")
            if self.variables is not None:
                raise ValueError("variables are only used with a template")
        elif self.text is not None or self.html is not None:
            raise ValueError("give either a template or a text/html body, not both")
        return self

    def to_message(self) -> Message:
        """The library ``Message``; raises ``MessageError`` with the location of every bad field."""
        return Message(**self.to_fields())

    def to_fields(self) -> dict[str, Any]:
        """The ``Message`` fields this request gives (with a template: all but the rendered ones)."""
        fields: dict[str, Any] = dict(
            to=self.to,
            cc=self.cc,
            bcc=self.bcc,
            reply_to=self.reply_to,
            subject=self.subject,
            text=self.text,
            html=self.html,
            headers=self.headers,
            tags=self.tags,
            metadata=self.metadata,
            attachments=[
                # field by field: model_dump() would base64-encode the decoded content again
                Attachment(
                    filename=a.filename,
                    content=a.content,
                    content_type=a.content_type,
                    inline=a.inline,
                    content_id=a.content_id,
                )
                for a in self.attachments
            ],
        )
        fields["from"] = self.from_
        return fields


class BatchItem(MessageCreate):
    idempotency_key: str | None = Field(None, max_length=255)


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(
        min_length=1, max_length=500, description="up to 500 messages, each shaped like POST /v1/messages"
    )


class MessageAccepted(BaseModel):
    id: str
    status: str = "queued"
    created_at: datetime


class BatchResult(BaseModel):
    index: int
    status: int = Field(description="202 accepted, 200 idempotent replay, or the 4xx it would have had alone")
    id: str | None = None
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


class BatchAccepted(BaseModel):
    accepted: int
    refused: int
    results: list[BatchResult]


class EventPublic(BaseModel):
    type: str
    at: datetime
    detail: dict[str, Any]


class MessageSummary(BaseModel):
    id: str
    status: str
    to: list[str]
    subject: str
    tags: list[str]
    attempts: int
    created_at: datetime
    send_at: datetime | None
    sent_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, record: MessageRecord) -> MessageSummary:
        return cls(
            id=record.id,
            status=record.status,
            to=record.recipients,
            subject=record.subject,
            tags=record.tags,
            attempts=record.attempts,
            created_at=record.created_at,
            send_at=record.send_at,
            sent_at=record.sent_at,
            last_error=record.last_error,
        )


class MessagePublic(MessageSummary):
    sender: str
    message_id: str
    metadata: dict[str, str]
    expires_at: datetime | None
    next_attempt_at: datetime | None
    smtp_code: int | None
    template_name: str | None = Field(None, description="the template the message was rendered from, if any")
    template_version: int | None = Field(None, description="its stored version (null for a file template)")
    events: list[EventPublic]

    @classmethod
    def of(cls, record: MessageRecord) -> MessagePublic:
        summary = MessageSummary.of(record).model_dump()
        return cls(
            **summary,
            sender=record.sender,
            message_id=record.message_id,
            metadata=record.metadata,
            expires_at=record.expires_at,
            next_attempt_at=record.next_attempt_at,
            smtp_code=record.smtp_code,
            template_name=record.template_name,
            template_version=record.template_version,
            events=[EventPublic(**e) for e in record.events],
        )


class MessagePage(BaseModel):
    items: list[MessageSummary]
    next_cursor: str | None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
