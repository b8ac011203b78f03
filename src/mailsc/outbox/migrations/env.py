"""Alembic environment: migrations run on a connection handed in by ``outbox.migrate`` (never from a URL here)."""

from __future__ import annotations

from alembic import context

from mailsc.outbox.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, version_table="mailsc_alembic_version"
)
with context.begin_transaction():
    context.run_migrations()
