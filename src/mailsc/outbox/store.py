"""``OutboxStore``: accepting and delivering; with ``management.py`` and ``base.py``, the only code that writes SQL.

One row per message is both its status record and its queue entry. Adds are group-committed; claims take a lease
(PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite ``BEGIN IMMEDIATE``) and count the attempt; outcomes and their
events are written together, in batches, and only by the lease owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from ..envelope import Envelope
from ..errors import (
    IdempotencyConflictError,
    OutboxError,
    OutboxUnavailableError,
)
from .base import CHANNEL
from .batch import GroupCommitter
from .engine import create_engine, sqlite_folder
from .management import OutboxManagement, as_utc
from .outcomes import write_outcomes
from .records import AddResult, ClaimedMessage, NewMessage, Settled, new_id, utcnow
from .tables import CLAIMABLE, events, messages
from .templates import OutboxTemplates


class OutboxStore(OutboxTemplates, OutboxManagement):
    """The durable outbox on SQLite (default) or PostgreSQL (to scale out)."""

    def __init__(self, engine: AsyncEngine, *, sqlite_synchronous: str = "FULL") -> None:
        super().__init__(engine, sqlite_synchronous=sqlite_synchronous)
        # PostgreSQL commits several batches at once (each on its own pooled connection); SQLite has one writer.
        in_flight = 1 if self.dialect == "sqlite" else 3
        self._adds: GroupCommitter[NewMessage, AddResult] = GroupCommitter(self._write_adds, in_flight=in_flight)
        # Outcomes linger a few milliseconds so one commit carries many: nobody waits on them but the worker.
        self._settles: GroupCommitter[tuple[str, Settled], bool] = GroupCommitter(self._write_settled, linger=0.005)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, sqlite_synchronous: str = "FULL") -> OutboxStore:
        """Connect, and (by default) bring the schema up to date."""
        folder = sqlite_folder(url)
        if folder is not None and not folder.is_dir():
            raise OutboxUnavailableError(f"the folder {str(folder)!r} for the SQLite outbox does not exist")
        store = cls(create_engine(url, synchronous=sqlite_synchronous), sqlite_synchronous=sqlite_synchronous)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()  # no connection thread may outlive a failed open
                raise
        return store

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
            await connection.add_listener(CHANNEL, lambda *_: callback())
        except (OSError, asyncpg.PostgresError) as exc:
            raise OutboxUnavailableError(f"cannot listen for new mail: {type(exc).__name__}") from exc

        async def stop() -> None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await connection.close(timeout=5)

        return stop

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
        return await self._run_write(lambda conn: self._insert_rows(conn, items))

    def _insert_rows(self, conn: Connection, items: Sequence[NewMessage]) -> list[AddResult | BaseException]:
        now = utcnow()
        results: list[AddResult | BaseException] = []
        rows: list[dict[str, Any]] = []
        keys = [i.idempotency_key for i in items if i.idempotency_key]
        known: dict[str, tuple[str, str, datetime]] = {}
        if keys:
            found = conn.execute(
                select(messages.c.idempotency_key, messages.c.id, messages.c.fingerprint, messages.c.created_at).where(
                    messages.c.idempotency_key.in_(keys)
                )
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
            rows.append(row)  # its "queued" event is the row itself (created_at): see OutboxManagement.get
            if key:
                known[key] = (row["id"], item.fingerprint, now)
            results.append(AddResult(row["id"], now))
        if rows:
            conn.execute(insert(messages), rows)
            self._notify(conn)
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
            "template_name": item.template_name,
            "template_version": item.template_version,
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
        return await self._run_write(lambda conn: self._claim_rows(conn, owner, limit, lease, max_attempts, recover))

    def _claim_rows(
        self, conn: Connection, owner: str, limit: int, lease: timedelta, max_attempts: int, recover: bool
    ) -> list[ClaimedMessage]:
        now = utcnow()
        # Each condition repeats a partial index's own predicate, with the statuses as literals: SQLite uses a
        # partial index only when it can prove the query implies the predicate, which it cannot through bound
        # parameters (the whole table was scanned and sorted on every claim).
        due = and_(_literal_in(messages.c.status, CLAIMABLE), messages.c.next_attempt_at <= now)
        abandoned = and_(messages.c.status == literal_column("'sending'"), messages.c.next_attempt_at <= now)
        fresh = and_(due, messages.c.status != "sending")
        if not recover:
            return self._lease(conn, fresh, limit, owner, now, lease)
        poisoned = (
            conn.execute(
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
            .scalars()
            .all()
        )
        if poisoned:
            failed = [
                {"message_id": i, "type": "failed", "at": now, "detail": {"reason": "attempts exhausted"}}
                for i in poisoned
            ]
            conn.execute(insert(events), failed)
        suspects = self._lease(conn, abandoned, 1, owner, now, lease)
        if suspects:
            return [replace(m, suspect=True) for m in suspects]
        return self._lease(conn, fresh, limit, owner, now, lease)

    @staticmethod
    def _lease(
        conn: Connection, where: ColumnElement[bool], limit: int, owner: str, now: datetime, lease: timedelta
    ) -> list[ClaimedMessage]:
        chosen = (
            select(messages.c.id)
            .where(where)
            .order_by(messages.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease_until = now + lease
        rows = conn.execute(
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
                messages.c.tags,
                messages.c.meta,
                messages.c.attempts,
                messages.c.created_at,
                messages.c.expires_at,
            )
        ).all()
        return [
            ClaimedMessage(
                r.id,
                Envelope(
                    r.sender,
                    tuple(r.recipients),
                    r.mime,
                    r.message_id,
                    bool(r.smtputf8),
                    r.subject,
                    tuple(r.tags),  # for the provider transports' own tag fields
                    r.meta,
                ),
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
        """One transaction for the whole batch: which leases are still ours, the updates (one per group of alike
        outcomes, see ``outcomes.py``), the events."""
        lock_rows = self.dialect == "postgresql"
        return await self._run_write(lambda conn: write_outcomes(conn, items, lock_rows=lock_rows))

    async def release(self, owner: str, ids: Sequence[str]) -> int:
        """Give leases back unsent (graceful shutdown): the rows are due again at once, the attempt uncounted."""
        if not ids:
            return 0
        return await self._run_write(lambda conn: _release_rows(conn, owner, ids))

    async def next_due_at(self) -> datetime | None:
        """When the earliest claimable row becomes due (None when there is none)."""
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.min(messages.c.next_attempt_at)).where(messages.c.status.in_(CLAIMABLE))
            )
        return as_utc(value)


def _literal_in(column: ColumnElement[str], values: tuple[str, ...]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values rendered into the SQL (fixed strings of ours, never user input)."""
    return column.in_(
        bindparam(f"literal_{column.name}_{len(values)}", list(values), expanding=True, literal_execute=True)
    )


def _release_rows(conn: Connection, owner: str, ids: Sequence[str]) -> int:
    now = utcnow()
    result = conn.execute(
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
