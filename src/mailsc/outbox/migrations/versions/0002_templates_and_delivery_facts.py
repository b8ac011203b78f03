"""Stored templates; on each message the template it was rendered from and the transport that delivered it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailsc.outbox.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailsc_messages") as batch:
        batch.add_column(sa.Column("template_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("template_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("transport", sa.String(64), nullable=True))
        batch.add_column(sa.Column("provider_message_id", sa.String(255), nullable=True))
    op.create_table(
        "mailsc_templates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailsc_templates")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_mailsc_templates_name_version")),
    )


def downgrade() -> None:
    op.drop_table("mailsc_templates")
    with op.batch_alter_table("mailsc_messages") as batch:
        batch.drop_column("provider_message_id")
        batch.drop_column("transport")
        batch.drop_column("template_version")
        batch.drop_column("template_name")
