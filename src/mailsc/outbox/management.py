"""Looking at and steering messages: status with timeline, lists, raw MIME, cancel, retry, delete, purge, counts;
API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ..errors import InvalidStateError, MessageNotFoundError
from .base import OutboxBase
from .records import ApiKeyRecord, MessageRecord, Page, new_id, utcnow
from .tables import CLAIMABLE, FINISHED, api_keys, events, messages


class OutboxManagement(OutboxBase):
    """Queries and state changes that people (API, CLI, dev inbox) ask for."""

    # -- managing --------------------------------------------------------------------------------------------

    async def cancel(self, message_id: str) -> None:
        """Cancel a message not yet claimed; ``InvalidStateError`` once a worker holds or finished it."""
        await self._transition(message_id, ("queued", "deferred"), "cancelled", "cancel")

    async def retry(self, message_id: str) -> None:
        """Queue a failed (or expired) message again, due now."""
        await self._transition(message_id, ("failed", "expired"), "queued", "retry")

    async def _transition(self, message_id: str, allowed: tuple[str, ...], to: str, verb: str) -> None:
        def work(conn: Connection) -> str | None:
            """None once changed; else the status that forbade it ("" for no such message)."""
            now = utcnow()
            values: dict[str, Any] = {"status": to, "updated_at": now}
            if to == "queued":
                values.update(next_attempt_at=now, last_error=None, expires_at=None)
            result = conn.execute(
                update(messages).where(messages.c.id == message_id, messages.c.status.in_(allowed)).values(**values)
            )
            if result.rowcount == 1:
                self._notify(conn)
                conn.execute(
                    insert(events).values(
                        message_id=message_id,
                        type="cancelled" if to == "cancelled" else "queued",
                        at=now,
                        detail={"by": verb},
                    )
                )
                return None
            return conn.scalar(select(messages.c.status).where(messages.c.id == message_id)) or ""

        status = await self._run_write(work)
        if status is None:
            return
        if not status:
            raise MessageNotFoundError(f"no message {message_id}")
        raise InvalidStateError(f"cannot {verb} message {message_id}: it is {status}", status)

    async def get(self, message_id: str) -> MessageRecord:
        """A message with its event timeline."""
        async with self._read() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
            if row is None:
                raise MessageNotFoundError(f"no message {message_id}")
            timeline = (
                await conn.execute(
                    select(events.c.type, events.c.at, events.c.detail)
                    .where(events.c.message_id == message_id)
                    .order_by(events.c.id)
                )
            ).all()
        # Acceptance is not stored as an event row (one insert fewer per message): it is the row's created_at.
        accepted = {
            "type": "queued",
            "at": row.created_at,
            "detail": {"send_at": row.send_at.isoformat()} if row.send_at else {},
        }
        return _record(row._mapping, [accepted, *({"type": e.type, "at": e.at, "detail": e.detail} for e in timeline)])

    async def list_messages(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        recipient: str | None = None,
        search: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page. ``search`` matches part of the
        subject or of any recipient address, ignoring case."""
        query = select(messages).order_by(messages.c.id.desc()).limit(limit + 1)
        if status:
            query = query.where(messages.c.status == status)
        if tag:
            query = query.where(cast(messages.c.tags, String).like(f"%{_json_like(tag)}%", escape="\\"))
        if recipient:
            query = query.where(cast(messages.c.recipients, String).like(f"%{_json_like(recipient)}%", escape="\\"))
        if search:
            pattern = f"%{_like(search)}%"
            query = query.where(
                or_(
                    messages.c.subject.ilike(pattern, escape="\\"),
                    cast(messages.c.recipients, String).ilike(pattern, escape="\\"),
                )
            )
        if cursor:
            query = query.where(messages.c.id < cursor)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        items = [_record(r._mapping, []) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def raw(self, message_id: str) -> bytes:
        """The message's stored MIME bytes, exactly as they were (or will be) sent."""
        async with self._read() as conn:
            mime = await conn.scalar(select(messages.c.mime).where(messages.c.id == message_id))
        if mime is None:
            raise MessageNotFoundError(f"no message {message_id}")
        return bytes(mime)

    async def delete(self, message_id: str) -> None:
        """Delete a finished (sent, captured, failed, cancelled, expired) message and its events; a message still
        queued or held by a worker raises ``InvalidStateError`` (cancel it first)."""

        def work(conn: Connection) -> None:
            status = conn.scalar(select(messages.c.status).where(messages.c.id == message_id))
            if status is None:
                raise MessageNotFoundError(f"no message {message_id}")
            if status not in FINISHED:
                raise InvalidStateError(f"cannot delete message {message_id}: it is {status}", status)
            conn.execute(delete(events).where(events.c.message_id == message_id))
            conn.execute(delete(messages).where(messages.c.id == message_id))

        await self._run_write(work)

    async def purge(self, older_than: timedelta) -> int:
        """Delete finished messages (and their events) last changed before ``now - older_than``."""
        cutoff = utcnow() - older_than
        statement = delete(messages).where(messages.c.status.in_(FINISHED), messages.c.updated_at < cutoff)
        return await self._run_write(lambda conn: int(conn.execute(statement).rowcount))

    # -- API keys (only their hashes are stored) ---------------------------------------------------------------

    async def add_api_key(self, name: str, key_hash: str) -> ApiKeyRecord:
        record = ApiKeyRecord(new_id(), name, utcnow(), None)
        statement = insert(api_keys).values(id=record.id, name=name, key_hash=key_hash, created_at=record.created_at)
        await self._run_write(lambda conn: conn.execute(statement))
        return record

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async with self._read() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
        return [ApiKeyRecord(r.id, r.name, r.created_at, r.revoked_at) for r in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke by id or name; False when no active key matched."""
        statement = (
            update(api_keys)
            .where(or_(api_keys.c.id == key_id, api_keys.c.name == key_id), api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return await self._run_write(lambda conn: bool(conn.execute(statement).rowcount))

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The active key with this hash (a hash lookup: no key material is ever compared or stored)."""
        async with self._read() as conn:
            row = (
                await conn.execute(
                    select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
                )
            ).first()
        return ApiKeyRecord(row.id, row.name, row.created_at, row.revoked_at) if row else None

    async def has_api_keys(self) -> bool:
        async with self._read() as conn:
            return bool(
                await conn.scalar(select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None)))
            )

    async def counts(self) -> dict[str, int]:
        """Messages by status (for metrics and tests)."""
        async with self._read() as conn:
            rows = (await conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))).all()
        return {status: int(count) for status, count in rows}


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_like(value: str) -> str:
    return f'"{_like(value)}"'


def as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregate results untyped
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _record(row: Any, timeline: list[dict[str, Any]]) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        status=row["status"],
        sender=row["sender"],
        recipients=list(row["recipients"]),
        subject=row["subject"],
        tags=list(row["tags"]),
        metadata=dict(row["meta"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        send_at=row["send_at"],
        sent_at=row["sent_at"],
        expires_at=row["expires_at"],
        next_attempt_at=row["next_attempt_at"] if row["status"] in CLAIMABLE else None,
        last_error=row["last_error"],
        smtp_code=row["smtp_code"],
        message_id=row["message_id"],
        events=timeline,
        template_name=row["template_name"],
        template_version=row["template_version"],
        transport=row["transport"],
        provider_message_id=row["provider_message_id"],
    )
