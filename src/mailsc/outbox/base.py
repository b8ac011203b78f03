"""The outbox's database access: engine, transactions, migrations; SQLAlchemy errors are translated here.

``outbox/`` is the only package that writes SQL: ``base.py`` (connections and transactions), ``store.py``
(accepting and delivering) and ``management.py`` (status, lists, cancel, retry, purge, API keys).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import OutboxError, OutboxUnavailableError
from .engine import WRITE

CHANNEL = "mailsc_wakeup"


def translate(exc: SQLAlchemyError | OSError) -> OutboxError:
    if isinstance(exc, OSError):  # the driver could not even connect (refused, no such host, no such folder)
        return OutboxUnavailableError(f"the outbox database is unreachable: {exc.strerror or exc}")
    if isinstance(exc, OperationalError | DBAPIError) and not isinstance(exc, IntegrityError):
        return OutboxUnavailableError(f"the outbox database is unavailable: {type(exc.orig or exc).__name__}")
    return OutboxError(f"outbox error: {type(exc).__name__}")


class OutboxBase:
    """An engine and the transactions every outbox operation runs in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sqlite_writer = asyncio.Lock()

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
            raise translate(exc) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise translate(exc) from exc

    async def _notify(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":  # delivered to listeners when this transaction commits
            await conn.execute(text(f"SELECT pg_notify('{CHANNEL}', '')"))

    async def ping(self) -> None:
        """Raise ``OutboxUnavailableError`` unless the database answers (readiness)."""
        async with self._read() as conn:
            await conn.execute(text("SELECT 1"))


def _upgrade(connection: Connection) -> None:
    from alembic import command  # imported here: only migrations need Alembic
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("mailsc.outbox") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
