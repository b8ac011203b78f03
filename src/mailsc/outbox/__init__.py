"""The durable outbox: one row per message, and the row is the job."""

from .records import (
    AddResult,
    ApiKeyRecord,
    ClaimedMessage,
    MessageRecord,
    NewMessage,
    Page,
    Settled,
    fingerprint,
    new_id,
)
from .store import OutboxStore

__all__ = [
    "AddResult",
    "ApiKeyRecord",
    "ClaimedMessage",
    "MessageRecord",
    "NewMessage",
    "OutboxStore",
    "Page",
    "Settled",
    "fingerprint",
    "new_id",
]
