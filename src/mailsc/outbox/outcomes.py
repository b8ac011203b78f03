"""Recording delivery outcomes: the SQL behind ``OutboxStore.settle``, one transaction for a whole batch.

Most outcomes in a batch are alike (``sent`` through one transport, no error), so rows that share every column
they set are updated with one ``UPDATE ... WHERE id IN (...)``: SQLAlchemy processes each bound value once for the
group instead of once per row (an executemany), which halved this statement's cost per message. Outcomes with
nothing in common (a provider's own message id, say) still go through one executemany.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from .records import Settled, utcnow
from .tables import UtcDateTime, events, messages

# status, last_error, smtp_code, next_attempt_at (deferred), uncount, transport, provider_message_id
_Change = tuple[str, str | None, int | None, datetime | None, int, str | None, str | None]

_EACH = (
    update(messages)
    .where(messages.c.id == bindparam("b_id"))
    .values(
        status=bindparam("status"),
        last_error=bindparam("last_error"),
        smtp_code=bindparam("smtp_code"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("b_now", type_=UtcDateTime),
        sent_at=func.coalesce(bindparam("b_sent_at", type_=UtcDateTime), messages.c.sent_at),
        next_attempt_at=func.coalesce(bindparam("b_next", type_=UtcDateTime), messages.c.next_attempt_at),
        attempts=messages.c.attempts - bindparam("b_uncount"),
        transport=func.coalesce(bindparam("b_transport", type_=String), messages.c.transport),
        provider_message_id=func.coalesce(bindparam("b_provider_id", type_=String), messages.c.provider_message_id),
    )
)


def write_outcomes(conn: Connection, items: Sequence[tuple[str, Settled]], *, lock_rows: bool) -> list[bool]:
    """Record each ``(owner, outcome)`` whose lease ``owner`` still holds; True for those, in order."""
    now = utcnow()
    owned = select(messages.c.id, messages.c.lease_owner).where(
        messages.c.id.in_([outcome.id for _, outcome in items]), messages.c.status == "sending"
    )
    if lock_rows:  # PostgreSQL: hold the rows until commit, so a lease cannot change hands meanwhile
        owned = owned.with_for_update()
    holders = {row.id: row.lease_owner for row in conn.execute(owned)}
    done = [holders.get(outcome.id) == owner for owner, outcome in items]
    settled = [outcome for (_, outcome), ok in zip(items, done, strict=True) if ok]
    if not settled:
        return done
    groups: dict[_Change, list[str]] = defaultdict(list)
    for outcome in settled:
        groups[_change(outcome, now)].append(outcome.id)
    each: list[dict[str, Any]] = []
    for change, ids in groups.items():
        if len(ids) > 1:
            conn.execute(_group_update(change, ids, now))
        else:
            each.append(_row(change, ids[0], now))
    if each:
        conn.execute(_EACH, each)
    new_events: list[dict[str, Any]] = []
    for outcome in settled:
        if outcome.attempt_started_at is not None:
            new_events.append(
                {"message_id": outcome.id, "type": "attempt", "at": outcome.attempt_started_at, "detail": {}}
            )
        new_events.append({"message_id": outcome.id, "type": outcome.status, "at": now, "detail": outcome.detail})
    conn.execute(insert(events), new_events)
    return done


def _change(outcome: Settled, now: datetime) -> _Change:
    next_at = (outcome.next_attempt_at or now) if outcome.status == "deferred" else None
    uncount = 1 if outcome.uncounted else 0
    return (
        outcome.status,
        outcome.error,
        outcome.smtp_code,
        next_at,
        uncount,
        outcome.transport,
        outcome.provider_message_id,
    )


def _group_update(change: _Change, ids: list[str], now: datetime) -> Any:
    status, error, smtp_code, next_at, uncount, transport, provider_id = change
    c = messages.c
    return (
        update(messages)
        .where(c.id.in_(ids))
        .values(
            status=status,
            last_error=error,
            smtp_code=smtp_code,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
            sent_at=now if status == "sent" else c.sent_at,
            next_attempt_at=next_at if next_at is not None else c.next_attempt_at,
            attempts=c.attempts - uncount,
            transport=transport if transport is not None else c.transport,
            provider_message_id=provider_id if provider_id is not None else c.provider_message_id,
        )
    )


def _row(change: _Change, message_id: str, now: datetime) -> dict[str, Any]:
    status, error, smtp_code, next_at, uncount, transport, provider_id = change
    return {
        "b_id": message_id,
        "status": status,
        "last_error": error,
        "smtp_code": smtp_code,
        "b_now": now,
        "b_sent_at": now if status == "sent" else None,
        "b_next": next_at,
        "b_uncount": uncount,
        "b_transport": transport,
        "b_provider_id": provider_id,
    }
