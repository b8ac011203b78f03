"""The outbox schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Statuses a worker may claim; the partial index on due rows covers exactly these, so it stays small as sent
# mail piles up. A row in 'sending' is due again when its lease runs out (next_attempt_at = lease end).
CLAIMABLE = ("queued", "deferred", "sending")
FINISHED = ("sent", "failed", "cancelled", "expired")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps naive UTC text that sorts correctly)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the outbox; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


messages = Table(
    "mailsc_messages",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("idempotency_key", String(255), nullable=True, unique=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("mime", LargeBinary, nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("sender", String(320), nullable=False),
    Column("recipients", JSON, nullable=False),
    Column("smtputf8", Integer, nullable=False, server_default=text("0")),
    Column("subject", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("send_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("smtp_code", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    # which stored or file template (and version) the message was rendered from, if any
    Column("template_name", String(100), nullable=True),
    Column("template_version", Integer, nullable=True),
    # who delivered it: the transport's name and the provider's own id for the message (to find it in their console)
    Column("transport", String(64), nullable=True),
    Column("provider_message_id", String(255), nullable=True),
)
Index(
    "ix_mailsc_messages_due",
    messages.c.next_attempt_at,
    postgresql_where=messages.c.status.in_(CLAIMABLE),
    sqlite_where=messages.c.status.in_(CLAIMABLE),
)
# The rows workers hold right now (few): finds abandoned leases without walking the due backlog.
Index(
    "ix_mailsc_messages_leases",
    messages.c.next_attempt_at,
    postgresql_where=messages.c.status == "sending",
    sqlite_where=messages.c.status == "sending",
)
Index("ix_mailsc_messages_updated_at", messages.c.updated_at)

events = Table(
    "mailsc_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(26), ForeignKey("mailsc_messages.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("detail", JSON, nullable=False),
)

api_keys = Table(
    "mailsc_api_keys",
    metadata,
    Column("id", String(26), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("key_hash", String(128), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

# Stored templates: every PUT adds a version; DELETE marks all versions deleted (numbers are never reused, so a
# message's recorded version always names the source it was rendered from).
templates = Table(
    "mailsc_templates",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=True),
    Column("text", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    UniqueConstraint("name", "version"),
)
