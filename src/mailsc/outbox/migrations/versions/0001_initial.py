"""The outbox: messages, their events, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailsc.outbox.tables import CLAIMABLE, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailsc_messages",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mime", sa.LargeBinary(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("smtputf8", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("send_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mailsc_messages"),
        sa.UniqueConstraint("idempotency_key", name="uq_mailsc_messages_idempotency_key"),
    )
    claimable = sa.column("status").in_(CLAIMABLE)
    op.create_index(
        "ix_mailsc_messages_due",
        "mailsc_messages",
        ["next_attempt_at"],
        postgresql_where=claimable,
        sqlite_where=claimable,
    )
    leased = sa.column("status") == "sending"
    op.create_index(
        "ix_mailsc_messages_leases",
        "mailsc_messages",
        ["next_attempt_at"],
        postgresql_where=leased,
        sqlite_where=leased,
    )
    op.create_index("ix_mailsc_messages_updated_at", "mailsc_messages", ["updated_at"])
    op.create_table(
        "mailsc_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(26), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["mailsc_messages.id"],
            ondelete="CASCADE",
            name="fk_mailsc_events_message_id_mailsc_messages",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_mailsc_events"),
    )
    op.create_index("ix_mailsc_events_message_id", "mailsc_events", ["message_id"])
    op.create_table(
        "mailsc_api_keys",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mailsc_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_mailsc_api_keys_key_hash"),
    )


def downgrade() -> None:
    op.drop_table("mailsc_api_keys")
    op.drop_index("ix_mailsc_events_message_id", table_name="mailsc_events")
    op.drop_table("mailsc_events")
    op.drop_index("ix_mailsc_messages_updated_at", table_name="mailsc_messages")
    op.drop_index("ix_mailsc_messages_leases", table_name="mailsc_messages")
    op.drop_index("ix_mailsc_messages_due", table_name="mailsc_messages")
    op.drop_table("mailsc_messages")
