"""The durable outbox: one row per message, and the row is the job."""

from .records import AddResult, ClaimedMessage, MessageRecord, NewMessage, Page, Settled, fingerprint, new_id
from .store import OutboxStore

__all__ = [
    "AddResult",
    "ClaimedMessage",
    "MessageRecord",
    "NewMessage",
    "OutboxStore",
    "Page",
    "Settled",
    "fingerprint",
    "new_id",
]
