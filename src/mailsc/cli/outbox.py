"""``outbox list|show|retry|cancel|purge``: inspect and manage queued mail."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer

from .common import _console, _dumps, _on_store, _settings, _when

outbox_app = typer.Typer(help="Inspect and manage queued mail.", no_args_is_help=True)


class Status(StrEnum):
    queued = "queued"
    sending = "sending"
    deferred = "deferred"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"


@outbox_app.command("list")
def outbox_list(
    status: Annotated[Status | None, typer.Option(help="only messages in this status")] = None,
    tag: Annotated[str | None, typer.Option(help="only messages with this tag")] = None,
    recipient: Annotated[str | None, typer.Option(help="only messages to this address")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="messages per page")] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next page, as printed after the previous one")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List messages, newest first."""
    settings = _settings()
    page = _on_store(
        settings,
        lambda store: store.list_messages(
            status=status.value if status else None, tag=tag, recipient=recipient, cursor=cursor, limit=limit
        ),
    )
    if as_json:
        typer.echo(_dumps({"items": [asdict(r) for r in page.items], "next_cursor": page.next_cursor}))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("id", "status", "to", "subject", "attempts", "created (UTC)")
    table.columns[0].no_wrap = True
    for record in page.items:
        to = ", ".join(record.recipients)
        table.add_row(
            record.id,
            record.status,
            Text(to, overflow="ellipsis", no_wrap=True),
            Text(record.subject, overflow="ellipsis", no_wrap=True),
            str(record.attempts),
            _when(record.created_at),
        )
    console = _console()
    console.print(table)
    if page.next_cursor:
        console.print(Text(f"more: --cursor {page.next_cursor}"))


@outbox_app.command("show")
def outbox_show(
    message_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show one message and its event timeline."""
    settings = _settings()
    record = _on_store(settings, lambda store: store.get(message_id))
    if as_json:
        typer.echo(_dumps(asdict(record)))
        return
    from rich.table import Table
    from rich.text import Text

    fields = Table.grid(padding=(0, 2))
    for label, value in (
        ("id", record.id),
        ("status", record.status),
        ("from", record.sender),
        ("to", ", ".join(record.recipients)),
        ("subject", record.subject),
        ("tags", ", ".join(record.tags)),
        ("metadata", _dumps(record.metadata) if record.metadata else ""),
        ("attempts", str(record.attempts)),
        ("created (UTC)", _when(record.created_at)),
        ("send at (UTC)", _when(record.send_at)),
        ("next attempt (UTC)", _when(record.next_attempt_at)),
        ("sent (UTC)", _when(record.sent_at)),
        ("expires (UTC)", _when(record.expires_at)),
        ("last error", record.last_error or ""),
        ("smtp code", str(record.smtp_code) if record.smtp_code is not None else ""),
        ("Message-ID", record.message_id),
    ):
        if value:
            fields.add_row(label, Text(value))
    timeline = Table("at (UTC)", "event", "detail", title="events", title_justify="left")
    for event in record.events:
        detail = event.get("detail") or {}
        timeline.add_row(_when(event["at"]), event["type"], Text(_dumps(detail) if detail else ""))
    console = _console()
    console.print(fields)
    console.print(timeline)


@outbox_app.command("retry")
def outbox_retry(message_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Queue a failed or expired message again, due now."""
    settings = _settings()
    _on_store(settings, lambda store: store.retry(message_id))
    typer.echo(f"queued again: {message_id}")


@outbox_app.command("cancel")
def outbox_cancel(message_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a message no worker has claimed yet."""
    settings = _settings()
    _on_store(settings, lambda store: store.cancel(message_id))
    typer.echo(f"cancelled: {message_id}")


@outbox_app.command("purge")
def outbox_purge(
    older_than: Annotated[float, typer.Option(min=0, metavar="DAYS", help="finished this many days ago or more")],
) -> None:
    """Delete finished messages (sent, failed, cancelled, expired) and their events."""
    settings = _settings()
    count = _on_store(settings, lambda store: store.purge(timedelta(days=older_than)))
    typer.echo(f"purged {count} finished messages older than {older_than:g} days")
