"""Database engines: SQLite with WAL and ``BEGIN IMMEDIATE`` for writers; PostgreSQL with a pool (asyncpg)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

WRITE = {"mailsc_write": True}  # execution option: this transaction writes (SQLite: take the lock at BEGIN)


def async_url(url: str) -> str:
    """``sqlite:///x.db`` -> ``sqlite+aiosqlite:///x.db``; ``postgresql://`` -> ``postgresql+asyncpg://``."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(f"unsupported database {backend!r}: use sqlite:///path.db or postgresql://...")
    if "+" in parsed.drivername:
        return parsed.render_as_string(hide_password=False)
    return parsed.set(drivername=driver[backend]).render_as_string(hide_password=False)


def sqlite_folder(url: str) -> Path | None:
    """The folder a SQLite file URL points into (None for PostgreSQL and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve().parent


def create_engine(url: str, *, synchronous: str = "FULL", pool_size: int = 10) -> AsyncEngine:
    """An async engine tuned for the outbox."""
    full = async_url(url)
    if full.startswith("sqlite"):
        engine = create_async_engine(full, connect_args={"timeout": 30})
        _tune_sqlite(engine.sync_engine, synchronous)
        return engine
    return create_async_engine(full, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def create_sqlite_writer(engine: AsyncEngine, *, synchronous: str = "FULL") -> Engine:
    """A blocking (pysqlite) engine on the same SQLite file as ``engine``, with the same pragmas, for the outbox's
    write transactions: each runs whole in one worker thread, so a transaction costs one hop out of the event loop
    instead of one per statement (aiosqlite), about a third of the per-message cost of delivering from SQLite."""
    url = engine.url.set(drivername="sqlite+pysqlite")
    # Used by one thread at a time (the store's writer thread); check_same_thread=False lets close() from another.
    writer = create_sync_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=1)
    _tune_sqlite(writer, synchronous)
    return writer


def _tune_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # Switching to WAL needs an exclusive lock and SQLite does not wait for it (no busy handler): a connection
        # opened while another one migrates a new file would fail. WAL is persistent, so only the first switch
        # can meet that; wait it out briefly.
        for pause in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 0):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except Exception as exc:  # the driver's OperationalError, wrapped by the async adapter
                if "locked" not in str(exc) or not pause:
                    raise
                time.sleep(pause)
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get("mailsc_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


class WriterLock:
    """An exclusive ``flock`` on ``<database>-writer.lock`` that every mailsc process holds around its SQLite write
    transactions. SQLite's own busy handler waits by sleeping (1, 2, 5 ... up to 100 ms between tries), so two
    processes writing the same file (``serve --no-worker`` beside ``mailsc worker``) stalled each other: accept
    p99 618 ms under load, about 105 ms with this lock, because a process blocked in ``flock`` is woken the moment
    the lock is released. Only a scheduling aid: SQLite's own locking still keeps the writes correct, so a lock
    file that cannot be created (a read-only folder) just means no lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @classmethod
    def beside(cls, database: str | None) -> WriterLock | None:
        """The lock of a database file; ``None`` for an in-memory database (one connection, one process)."""
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        try:
            return cls(Path(f"{database}-writer.lock"))
        except OSError:
            return None

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)
