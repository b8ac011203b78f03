"""``OutboxStore``: the only module that writes SQL, and the one place SQLAlchemy errors are translated.

One row per message is both its status record and its queue entry. Adds are group-committed; claims take a lease
(PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite ``BEGIN IMMEDIATE``) and count the attempt; outcomes and their
events are written together, in batches, and only by the lease owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import String, and_, bindparam, cast, delete, func, insert, literal_column, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..envelope import Envelope
from ..errors import (
    IdempotencyConflictError,
    InvalidStateError,
    MessageNotFoundError,
    OutboxError,
    OutboxUnavailableError,
)
from .batch import GroupCommitter
from .engine import WRITE, create_engine
from .records import AddResult, ApiKeyRecord, ClaimedMessage, MessageRecord, NewMessage, Page, Settled, new_id, utcnow
from .tables import CLAIMABLE, FINISHED, UtcDateTime, api_keys, events, messages

_CHANNEL = "mailsc_wakeup"


def _translate(exc: SQLAlchemyError | OSError) -> OutboxError:
    if isinstance(exc, OSError):  # the driver could not even connect (refused, no such host, no such folder)
        return OutboxUnavailableError(f"the outbox database is unreachable: {exc.strerror or exc}")
    if isinstance(exc, OperationalError | DBAPIError) and not isinstance(exc, IntegrityError):
        return OutboxUnavailableError(f"the outbox database is unavailable: {type(exc.orig or exc).__name__}")
    return OutboxError(f"outbox error: {type(exc).__name__}")


class OutboxStore:
    """The durable outbox on SQLite (default) or PostgreSQL (to scale out)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite_writer = asyncio.Lock()
        self._adds: GroupCommitter[NewMessage, AddResult] = GroupCommitter(self._write_adds)
        # Outcomes linger a few milliseconds so one commit carries many: nobody waits on them but the worker.
        self._settles: GroupCommitter[tuple[str, Settled], bool] = GroupCommitter(self._write_settled, linger=0.005)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, sqlite_synchronous: str = "FULL") -> OutboxStore:
        """Connect, and (by default) bring the schema up to date."""
        store = cls(create_engine(url, synchronous=sqlite_synchronous))
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()  # no connection thread may outlive a failed open
                raise
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Apply pending Alembic migrations; safe to run from several processes at once."""
        async with self._write() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(7365218)"))  # one migrator at a time
            await conn.run_sync(_upgrade)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        # SQLite has one writer. Queue this process's writers here: waiting inside SQLite's busy handler sleeps in
        # steps of up to 100 ms, which turned a 1 ms transaction into 20 ms under contention.
        lock = self._sqlite_writer if self.dialect == "sqlite" else contextlib.nullcontext()
        async with lock, self._transaction() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(**WRITE)
                async with conn.begin():
                    yield conn
        except IntegrityError:
            raise  # a duplicate idempotency key from another process: _write_adds resolves it
        except (SQLAlchemyError, OSError) as exc:
            raise _translate(exc) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise _translate(exc) from exc

    async def listen(self, callback: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """PostgreSQL: call ``callback`` whenever any process commits new mail (``LISTEN``/``NOTIFY``), so idle
        workers wake at once instead of at their next poll. Returns an async function that stops listening;
        ``None`` where the database has no such channel (SQLite: workers poll)."""
        if self.dialect != "postgresql":
            return None
        import asyncpg  # the driver behind postgresql+asyncpg; only its raw connection can LISTEN

        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
            await connection.add_listener(_CHANNEL, lambda *_: callback())
        except (OSError, asyncpg.PostgresError) as exc:
            raise OutboxUnavailableError(f"cannot listen for new mail: {type(exc).__name__}") from exc

        async def stop() -> None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await connection.close(timeout=5)

        return stop

    async def _notify(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":  # delivered to listeners when this transaction commits
            await conn.execute(text(f"SELECT pg_notify('{_CHANNEL}', '')"))

    # -- accepting -------------------------------------------------------------------------------------------

    async def add(self, new: NewMessage) -> AddResult:
        """Store one message durably; returns after its commit. A replayed key returns the original id."""
        return await self._adds.submit(new)

    async def add_many(self, items: Sequence[NewMessage]) -> list[AddResult | OutboxError]:
        """Store several messages; each item succeeds or fails on its own (a key conflict fails only its item)."""
        results = await asyncio.gather(*(self._adds.submit(item) for item in items), return_exceptions=True)
        out: list[AddResult | OutboxError] = []
        for result in results:
            if isinstance(result, OutboxError | AddResult):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result
        return out

    async def _write_adds(self, items: Sequence[NewMessage]) -> list[AddResult | BaseException]:
        try:
            return await self._insert_batch(items)
        except IntegrityError:
            # Another process inserted one of these keys meanwhile: redo each on its own to isolate it.
            return [await self._insert_single(item) for item in items]

    async def _insert_single(self, item: NewMessage) -> AddResult | BaseException:
        for _ in range(2):  # the second try sees the other process's row, and so replays or conflicts
            try:
                return (await self._insert_batch([item]))[0]
            except IntegrityError:
                continue
            except OutboxError as exc:
                return exc
        return OutboxError("could not store the message: its idempotency key is contended")

    async def _insert_batch(self, items: Sequence[NewMessage]) -> list[AddResult | BaseException]:
        now = utcnow()
        results: list[AddResult | BaseException] = []
        rows: list[dict[str, Any]] = []
        queued: list[dict[str, Any]] = []
        keys = [i.idempotency_key for i in items if i.idempotency_key]
        async with self._write() as conn:
            known: dict[str, tuple[str, str, datetime]] = {}
            if keys:
                found = await conn.execute(
                    select(
                        messages.c.idempotency_key, messages.c.id, messages.c.fingerprint, messages.c.created_at
                    ).where(messages.c.idempotency_key.in_(keys))
                )
                known = {r.idempotency_key: (r.id, r.fingerprint, r.created_at) for r in found}
            for item in items:
                key = item.idempotency_key
                if key and key in known:
                    existing_id, fingerprint, created_at = known[key]
                    same = fingerprint == item.fingerprint
                    results.append(
                        AddResult(existing_id, created_at, True) if same else IdempotencyConflictError(key, existing_id)
                    )
                    continue
                row = self._row(item, now)
                rows.append(row)
                queued.append(
                    {
                        "message_id": row["id"],
                        "type": "queued",
                        "at": now,
                        "detail": {"send_at": item.send_at.isoformat()} if item.send_at else {},
                    }
                )
                if key:
                    known[key] = (row["id"], item.fingerprint, now)
                results.append(AddResult(row["id"], now))
            if rows:
                await conn.execute(insert(messages), rows)
                await conn.execute(insert(events), queued)
                await self._notify(conn)
        return results

    @staticmethod
    def _row(item: NewMessage, now: datetime) -> dict[str, Any]:
        envelope = item.envelope
        return {
            "id": new_id(),
            "idempotency_key": item.idempotency_key,
            "fingerprint": item.fingerprint,
            "status": "queued",
            "mime": envelope.data,
            "message_id": envelope.message_id,
            "sender": envelope.sender,
            "recipients": list(envelope.recipients),
            "smtputf8": int(envelope.smtputf8),
            "subject": envelope.subject,
            "tags": list(item.tags),
            "meta": dict(item.metadata),
            "attempts": 0,
            "next_attempt_at": max(item.send_at, now) if item.send_at else now,
            "send_at": item.send_at,
            "expires_at": item.expires_at,
            "created_at": now,
            "updated_at": now,
        }

    # -- delivering ------------------------------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        limit: int,
        *,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = 30,
        recover: bool = True,
    ) -> list[ClaimedMessage]:
        """Lease up to ``limit`` due messages to ``owner``, counting the attempt.

        A row whose lease ran out (its worker died or hung mid-send) is a suspect: it is handed out alone, marked
        ``suspect``, so a message that crashes its worker every time takes no bystanders down with it; after
        ``max_attempts`` such attempts it ends ``failed`` here instead of blocking the queue. ``recover=False``
        skips looking for such rows (two statements), for a worker that looked a moment ago.
        """
        now = utcnow()
        # Each condition repeats a partial index's own predicate, with the statuses as literals: SQLite uses a
        # partial index only when it can prove the query implies the predicate, which it cannot through bound
        # parameters (the whole table was scanned and sorted on every claim).
        due = and_(_literal_in(messages.c.status, CLAIMABLE), messages.c.next_attempt_at <= now)
        abandoned = and_(messages.c.status == literal_column("'sending'"), messages.c.next_attempt_at <= now)
        async with self._write() as conn:
            if not recover:
                return await self._lease(conn, and_(due, messages.c.status != "sending"), limit, owner, now, lease)
            poisoned = (
                (
                    await conn.execute(
                        update(messages)
                        .where(abandoned, messages.c.attempts >= max_attempts)
                        .values(
                            status="failed",
                            lease_owner=None,
                            lease_until=None,
                            updated_at=now,
                            last_error=f"gave up after {max_attempts} attempts that never finished (worker crash?)",
                        )
                        .returning(messages.c.id)
                    )
                )
                .scalars()
                .all()
            )
            if poisoned:
                failed = [
                    {"message_id": i, "type": "failed", "at": now, "detail": {"reason": "attempts exhausted"}}
                    for i in poisoned
                ]
                await conn.execute(insert(events), failed)
            suspects = await self._lease(conn, abandoned, 1, owner, now, lease)
            if suspects:
                return [replace(m, suspect=True) for m in suspects]
            fresh = and_(due, messages.c.status != "sending")
            return await self._lease(conn, fresh, limit, owner, now, lease)

    @staticmethod
    async def _lease(
        conn: AsyncConnection, where: ColumnElement[bool], limit: int, owner: str, now: datetime, lease: timedelta
    ) -> list[ClaimedMessage]:
        chosen = (
            select(messages.c.id)
            .where(where)
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease_until = now + lease
        rows = (
            await conn.execute(
                update(messages)
                .where(messages.c.id.in_(chosen.scalar_subquery()))
                .values(
                    status="sending",
                    lease_owner=owner,
                    lease_until=lease_until,
                    next_attempt_at=lease_until,
                    attempts=messages.c.attempts + 1,
                    updated_at=now,
                )
                .returning(
                    messages.c.id,
                    messages.c.mime,
                    messages.c.message_id,
                    messages.c.sender,
                    messages.c.recipients,
                    messages.c.smtputf8,
                    messages.c.subject,
                    messages.c.attempts,
                    messages.c.created_at,
                    messages.c.expires_at,
                )
            )
        ).all()
        return [
            ClaimedMessage(
                r.id,
                Envelope(r.sender, tuple(r.recipients), r.mime, r.message_id, bool(r.smtputf8), r.subject),
                r.attempts,
                r.created_at,
                r.expires_at,
            )
            for r in rows
        ]

    async def settle(self, owner: str, outcome: Settled) -> bool:
        """Record an outcome (batched with others); False when the lease had already been lost."""
        return await self._settles.submit((owner, outcome))

    async def _write_settled(self, items: Sequence[tuple[str, Settled]]) -> list[bool]:
        """One transaction, three statements for the whole batch: which leases are still ours, the updates (an
        executemany), the events."""
        now = utcnow()
        async with self._write() as conn:
            owned = select(messages.c.id, messages.c.lease_owner).where(
                messages.c.id.in_([outcome.id for _, outcome in items]), messages.c.status == "sending"
            )
            if self.dialect == "postgresql":
                owned = owned.with_for_update()
            holders = {row.id: row.lease_owner for row in await conn.execute(owned)}
            done = [holders.get(outcome.id) == owner for owner, outcome in items]
            rows = [
                {
                    "b_id": outcome.id,
                    "status": outcome.status,
                    "last_error": outcome.error,
                    "smtp_code": outcome.smtp_code,
                    "b_sent_at": now if outcome.status == "sent" else None,
                    "b_next": (outcome.next_attempt_at or now) if outcome.status == "deferred" else None,
                }
                for (_, outcome), ok in zip(items, done, strict=True)
                if ok
            ]
            if rows:
                await conn.execute(
                    update(messages)
                    .where(messages.c.id == bindparam("b_id"))
                    .values(
                        status=bindparam("status"),
                        last_error=bindparam("last_error"),
                        smtp_code=bindparam("smtp_code"),
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                        sent_at=func.coalesce(bindparam("b_sent_at", type_=UtcDateTime), messages.c.sent_at),
                        next_attempt_at=func.coalesce(
                            bindparam("b_next", type_=UtcDateTime), messages.c.next_attempt_at
                        ),
                    ),
                    rows,
                )
                new_events: list[dict[str, Any]] = []
                for (_, outcome), ok in zip(items, done, strict=True):
                    if not ok:
                        continue
                    if outcome.attempt_started_at is not None:
                        new_events.append(
                            {
                                "message_id": outcome.id,
                                "type": "attempt",
                                "at": outcome.attempt_started_at,
                                "detail": {},
                            }
                        )
                    new_events.append(
                        {"message_id": outcome.id, "type": outcome.status, "at": now, "detail": outcome.detail}
                    )
                await conn.execute(insert(events), new_events)
        return done

    async def release(self, owner: str, ids: Sequence[str]) -> int:
        """Give leases back unsent (graceful shutdown): the rows are due again at once, the attempt uncounted."""
        if not ids:
            return 0
        now = utcnow()
        async with self._write() as conn:
            result = await conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids), messages.c.lease_owner == owner, messages.c.status == "sending")
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=now,
                    updated_at=now,
                    attempts=messages.c.attempts - 1,
                )
            )
        return int(result.rowcount)

    async def next_due_at(self) -> datetime | None:
        """When the earliest claimable row becomes due (None when there is none)."""
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.min(messages.c.next_attempt_at)).where(messages.c.status.in_(CLAIMABLE))
            )
        return _as_utc(value)

    # -- managing --------------------------------------------------------------------------------------------

    async def cancel(self, message_id: str) -> None:
        """Cancel a message not yet claimed; ``InvalidStateError`` once a worker holds or finished it."""
        await self._transition(message_id, ("queued", "deferred"), "cancelled", "cancel")

    async def retry(self, message_id: str) -> None:
        """Queue a failed (or expired) message again, due now."""
        await self._transition(message_id, ("failed", "expired"), "queued", "retry")

    async def _transition(self, message_id: str, allowed: tuple[str, ...], to: str, verb: str) -> None:
        now = utcnow()
        async with self._write() as conn:
            values: dict[str, Any] = {"status": to, "updated_at": now}
            if to == "queued":
                values.update(next_attempt_at=now, last_error=None, expires_at=None)
            result = await conn.execute(
                update(messages).where(messages.c.id == message_id, messages.c.status.in_(allowed)).values(**values)
            )
            if result.rowcount == 1:
                await self._notify(conn)
                await conn.execute(
                    insert(events).values(
                        message_id=message_id,
                        type="cancelled" if to == "cancelled" else "queued",
                        at=now,
                        detail={"by": verb},
                    )
                )
                return
            status = await conn.scalar(select(messages.c.status).where(messages.c.id == message_id))
        if status is None:
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
        return _record(row._mapping, [{"type": e.type, "at": e.at, "detail": e.detail} for e in timeline])

    async def list_messages(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        recipient: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        query = select(messages).order_by(messages.c.id.desc()).limit(limit + 1)
        if status:
            query = query.where(messages.c.status == status)
        if tag:
            query = query.where(cast(messages.c.tags, String).like(f"%{_json_like(tag)}%", escape="\\"))
        if recipient:
            query = query.where(cast(messages.c.recipients, String).like(f"%{_json_like(recipient)}%", escape="\\"))
        if cursor:
            query = query.where(messages.c.id < cursor)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        items = [_record(r._mapping, []) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def purge(self, older_than: timedelta) -> int:
        """Delete finished messages (and their events) last changed before ``now - older_than``."""
        cutoff = utcnow() - older_than
        async with self._write() as conn:
            result = await conn.execute(
                delete(messages).where(messages.c.status.in_(FINISHED), messages.c.updated_at < cutoff)
            )
        return int(result.rowcount)

    # -- API keys (only their hashes are stored) ---------------------------------------------------------------

    async def add_api_key(self, name: str, key_hash: str) -> ApiKeyRecord:
        record = ApiKeyRecord(new_id(), name, utcnow(), None)
        async with self._write() as conn:
            await conn.execute(
                insert(api_keys).values(id=record.id, name=name, key_hash=key_hash, created_at=record.created_at)
            )
        return record

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        async with self._read() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
        return [ApiKeyRecord(r.id, r.name, r.created_at, r.revoked_at) for r in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke by id or name; False when no active key matched."""
        async with self._write() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(or_(api_keys.c.id == key_id, api_keys.c.name == key_id), api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(result.rowcount)

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

    async def ping(self) -> None:
        """Raise ``OutboxUnavailableError`` unless the database answers (readiness)."""
        async with self._read() as conn:
            await conn.execute(text("SELECT 1"))

    async def counts(self) -> dict[str, int]:
        """Messages by status (for metrics and tests)."""
        async with self._read() as conn:
            rows = (await conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))).all()
        return {status: int(count) for status, count in rows}


def _literal_in(column: ColumnElement[str], values: tuple[str, ...]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values rendered into the SQL (fixed strings of ours, never user input)."""
    return column.in_(
        bindparam(f"literal_{column.name}_{len(values)}", list(values), expanding=True, literal_execute=True)
    )


def _json_like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'"{escaped}"'


def _as_utc(value: Any) -> datetime | None:
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
    )


def _upgrade(connection: Connection) -> None:
    from alembic import command  # imported here: only migrations need Alembic
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("mailsc.outbox") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
