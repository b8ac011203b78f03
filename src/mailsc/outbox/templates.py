"""Stored templates in the outbox database: every PUT adds a version; a delete marks every version deleted.

Version numbers are never reused (the next one is one more than the highest ever stored, deleted or not), so the
``(template_name, template_version)`` a message records always names the source it was rendered from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import OutboxError
from .base import OutboxBase
from .records import utcnow
from .tables import templates


@dataclass(frozen=True)
class StoredTemplate:
    """One version of a stored template."""

    name: str
    version: int
    subject: str
    html: str | None
    text: str | None
    created_at: datetime


def _stored(row: Any) -> StoredTemplate:
    return StoredTemplate(row.name, row.version, row.subject, row.html, row.text, row.created_at)


class OutboxTemplates(OutboxBase):
    """Versioned templates (``/v1/templates``)."""

    async def put_template(self, name: str, *, subject: str, html: str | None, text: str | None) -> StoredTemplate:
        """Store a new version of ``name`` (version 1 for a new name) and return it."""

        def work(conn: Connection, now: datetime) -> int:
            if self.dialect == "postgresql":  # writers of one name queue here (SQLite has one writer anyway)
                conn.execute(sql("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
            highest = conn.scalar(select(func.max(templates.c.version)).where(templates.c.name == name))
            version = int(highest or 0) + 1
            conn.execute(
                insert(templates).values(
                    name=name, version=version, subject=subject, html=html, text=text, created_at=now
                )
            )
            return version

        for _ in range(5):  # UNIQUE(name, version) makes a writer that lost a race retry with the next number
            now = utcnow()
            try:
                version = await self._run_write(functools.partial(work, now=now))
            except IntegrityError:
                continue
            return StoredTemplate(name, version, subject, html, text, now)
        raise OutboxError(f"could not store template {name!r}: other writers kept taking the next version")

    async def get_template(self, name: str, version: int | None = None) -> StoredTemplate | None:
        """The latest version of ``name`` (or the given ``version``), unless deleted; ``None`` otherwise."""
        query = select(templates).where(templates.c.name == name, templates.c.deleted_at.is_(None))
        if version is not None:
            query = query.where(templates.c.version == version)
        query = query.order_by(templates.c.version.desc()).limit(1)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return _stored(row) if row is not None else None

    async def list_templates(self) -> list[StoredTemplate]:
        """The latest version of every template not deleted, by name."""
        latest = (
            select(templates.c.name, func.max(templates.c.version).label("version"))
            .where(templates.c.deleted_at.is_(None))
            .group_by(templates.c.name)
            .subquery()
        )
        query = (
            select(templates)
            .join(latest, (templates.c.name == latest.c.name) & (templates.c.version == latest.c.version))
            .order_by(templates.c.name)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_stored(row) for row in rows]

    async def delete_template(self, name: str) -> bool:
        """Mark every version of ``name`` deleted; False when there was none left to delete."""
        statement = (
            update(templates)
            .where(templates.c.name == name, templates.c.deleted_at.is_(None))
            .values(deleted_at=utcnow())
        )
        return await self._run_write(lambda conn: bool(conn.execute(statement).rowcount))
