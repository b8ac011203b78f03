"""Real databases for tests: a SQLite file per test, and the local PostgreSQL (database ``mailsc_test``).

PostgreSQL runs at 127.0.0.1:5432 with trust auth. Where it cannot be reached, its tests are skipped, except in
CI (``CI=true``), where an unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import os

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get("MAILSC_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
# One database per test run, so concurrent runs on this machine never drop each other's tables.
PG_DATABASE = f"mailsc_test_{os.getpid()}"
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
TABLES = ("mailsc_events", "mailsc_messages", "mailsc_api_keys", "mailsc_templates", "mailsc_alembic_version")


async def _prepare_postgres() -> None:
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await admin.close()


_pg_state: dict[str, str | None] = {}


async def require_postgres() -> str:
    """The PostgreSQL test URL, or skip (fail under CI) when the server cannot be reached."""
    if "error" not in _pg_state:
        try:
            await _prepare_postgres()
            _pg_state["error"] = None
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _pg_state["error"] = f"{type(exc).__name__}: {exc}"
    error = _pg_state["error"]
    if error is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required in CI and unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    return PG_URL


async def reset_postgres(url: str) -> None:
    """Drop mailsc's tables so each test starts from an empty, freshly migrated database."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)} CASCADE")
    finally:
        await conn.close()


async def drop_postgres_database() -> None:
    """Remove this run's database (at the end of the session), if it was created."""
    if _pg_state.get("error", "unused") is not None:
        return
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()
