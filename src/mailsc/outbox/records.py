"""The values the outbox takes and gives: new messages, claims, outcomes, records, pages; ids and fingerprints."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..envelope import Envelope

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character ULID: sortable by creation time (for cursors), random enough to never collide."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewMessage:
    """A rendered message to store. ``fingerprint`` identifies the request for idempotent replays."""

    envelope: Envelope
    fingerprint: str
    idempotency_key: str | None = None
    send_at: datetime | None = None
    expires_at: datetime | None = None
    tags: Sequence[str] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    template_name: str | None = None
    template_version: int | None = None


@dataclass(frozen=True)
class AddResult:
    id: str
    created_at: datetime
    replayed: bool = False


@dataclass(frozen=True)
class ClaimedMessage:
    """A row a worker holds the lease on."""

    id: str
    envelope: Envelope
    attempts: int
    created_at: datetime
    expires_at: datetime | None
    suspect: bool = False  # its previous attempt never finished: send it alone


@dataclass(frozen=True)
class Settled:
    """What happened to a claimed message: status ``sent``, ``deferred``, ``failed`` or ``expired``."""

    id: str
    status: str
    detail: dict[str, Any] = field(default_factory=dict)
    next_attempt_at: datetime | None = None
    error: str | None = None
    smtp_code: int | None = None
    attempt_started_at: datetime | None = None
    uncounted: bool = False  # the attempt never reached the message (transport paused): give it back
    transport: str | None = None  # the transport that delivered it (status sent)
    provider_message_id: str | None = None  # the provider's own id for the message, when it gives one


@dataclass(frozen=True)
class MessageRecord:
    id: str
    status: str
    sender: str
    recipients: list[str]
    subject: str
    tags: list[str]
    metadata: dict[str, str]
    attempts: int
    created_at: datetime
    send_at: datetime | None
    sent_at: datetime | None
    expires_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    smtp_code: int | None
    message_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    template_name: str | None = None
    template_version: int | None = None
    transport: str | None = None
    provider_message_id: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[MessageRecord]
    next_cursor: str | None


def fingerprint(*parts: str | bytes) -> str:
    """A stable hash of a request's content, to tell an idempotent replay from a conflicting reuse of a key."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key's public facts; the key itself is never stored."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
