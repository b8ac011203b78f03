"""The outbox's database access: engine, transactions, migrations; SQLAlchemy errors are translated here.

``outbox/`` is the only package that writes SQL: ``base.py`` (connections and transactions), ``store.py``
(accepting and delivering) and ``management.py`` (status, lists, cancel, retry, purge, API keys).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from importlib import resources
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import OutboxError, OutboxUnavailableError
from .engine import WRITE, WriterLock, create_sqlite_writer

CHANNEL = "mailsc_wakeup"
T = TypeVar("T")


def translate(exc: SQLAlchemyError | OSError) -> OutboxError:
    if isinstance(exc, OSError):  # the driver could not even connect (refused, no such host, no such folder)
        return OutboxUnavailableError(f"the outbox database is unreachable: {exc.strerror or exc}")
    if isinstance(exc, OperationalError | DBAPIError) and not isinstance(exc, IntegrityError):
        return OutboxUnavailableError(f"the outbox database is unavailable: {type(exc.orig or exc).__name__}")
    return OutboxError(f"outbox error: {type(exc).__name__}")


class OutboxBase:
    """An engine and the transactions every outbox operation runs in.

    Write transactions are plain functions of a blocking ``Connection`` (``_run_write``). On SQLite each runs whole
    in one dedicated thread on a pysqlite engine: one hop out of the event loop per transaction instead of one (and
    several loop wake-ups) per statement through aiosqlite, and the single thread is also the queue of this
    process's writers. On PostgreSQL the same function runs on an asyncpg connection (``run_sync``). Reads stay on
    the async engine.
    """

    def __init__(self, engine: AsyncEngine, *, sqlite_synchronous: str = "FULL") -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer: Engine | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._writer_lock: WriterLock | None = None
        if self.dialect == "sqlite":
            self._writer = create_sqlite_writer(engine, synchronous=sqlite_synchronous)
            self._writer_lock = WriterLock.beside(engine.url.database)
            # SQLite has one writer. Queue this process's writers here: waiting inside SQLite's busy handler sleeps
            # in steps of up to 100 ms, which turned a 1 ms transaction into 20 ms under contention.
            self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailsc-sqlite-writer")

    async def close(self) -> None:
        if self._writer is not None and self._writer_thread is not None:
            writer_thread, self._writer_thread = self._writer_thread, None
            await asyncio.get_running_loop().run_in_executor(writer_thread, self._writer.dispose)
            writer_thread.shutdown(wait=False)  # idle now: its last job just ran
            if self._writer_lock is not None:
                self._writer_lock.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Apply pending Alembic migrations; safe to run from several processes at once."""
        await self._run_write(self._migrate)

    def _migrate(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7365218)"))  # one migrator at a time
        _upgrade(conn)

    async def _run_write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in one write transaction (SQLite: ``BEGIN IMMEDIATE``) and commit; SQLAlchemy errors
        become ``OutboxError`` here, except ``IntegrityError`` (a duplicate idempotency key or template version
        from another process), which the callers resolve. Once started, a transaction runs to its end even if the
        caller is cancelled (the commit may already be under way)."""
        try:
            if self._writer is None:
                async with self.engine.connect() as conn:
                    conn = await conn.execution_options(**WRITE)
                    async with conn.begin():
                        return await conn.run_sync(work)
            if self._writer_thread is None:
                raise OutboxUnavailableError("the outbox is closed")
            return await asyncio.get_running_loop().run_in_executor(
                self._writer_thread, _in_transaction, self._writer, self._writer_lock, work
            )
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise translate(exc) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise translate(exc) from exc

    def _notify(self, conn: Connection) -> None:
        if self.dialect == "postgresql":  # delivered to listeners when this transaction commits
            conn.execute(text(f"SELECT pg_notify('{CHANNEL}', '')"))

    async def ping(self) -> None:
        """Raise ``OutboxUnavailableError`` unless the database answers (readiness)."""
        async with self._read() as conn:
            await conn.execute(text("SELECT 1"))


def _in_transaction(writer: Engine, lock: WriterLock | None, work: Callable[[Connection], T]) -> T:
    """In the writer thread: one connection, one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on an error),
    inside the file's cross-process writer lock."""
    with lock or nullcontext(), writer.connect() as conn:
        conn = conn.execution_options(**WRITE)
        with conn.begin():
            return work(conn)


def _upgrade(connection: Connection) -> None:
    from alembic import command  # imported here: only migrations need Alembic
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("mailsc.outbox") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
