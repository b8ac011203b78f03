"""The Alembic migrations build exactly the schema ``outbox/tables.py`` declares, on both dialects, and a database
left at an older revision is brought up to date with its rows intact."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from mailsc.outbox import OutboxStore
from mailsc.outbox.tables import metadata


def _differences(connection: Connection) -> list[Any]:
    def ours(name: str | None, type_: str, _parents: Any) -> bool:
        return not (type_ == "table" and name == "mailsc_alembic_version")

    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": ours})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_tables_module(database_url: str) -> None:
    store = await OutboxStore.open(database_url)
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await store.close()
    assert {"mailsc_messages", "mailsc_events", "mailsc_api_keys", "mailsc_templates"} <= names
    assert differences == []


async def test_upgrade_from_the_first_revision_keeps_rows(database_url: str) -> None:
    store = await OutboxStore.open(database_url)
    try:
        async with store.engine.begin() as conn:
            # back to revision 0001 by hand (what a database created by an older mailsc looks like)
            await conn.execute(text("DROP TABLE mailsc_templates"))
            for column in ("template_name", "template_version", "transport", "provider_message_id"):
                await conn.execute(text(f"ALTER TABLE mailsc_messages DROP COLUMN {column}"))
            await conn.execute(text("UPDATE mailsc_alembic_version SET version_num = '0001'"))
            await conn.execute(
                text(
                    "INSERT INTO mailsc_messages (id, fingerprint, status, mime, message_id, sender, recipients,"
                    " subject, tags, meta, next_attempt_at, created_at, updated_at)"
                    " VALUES ('01JOLDROW0000000000000000A', '', 'queued', :mime, '<old@x>', 'a@example.com',"
                    " '[\"b@example.org\"]', 'old', '[]', '{}',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"mime": b"Subject: old\r\n\r\nbody\r\n"},
            )
    finally:
        await store.close()
    upgraded = await OutboxStore.open(database_url)
    try:
        record = await upgraded.get("01JOLDROW0000000000000000A")
        async with upgraded.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await upgraded.close()
    assert record.subject == "old"
    assert record.template_name is None
    assert differences == []
