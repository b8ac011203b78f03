"""``send-bulk``: queue one message per CSV row, idempotently, with a progress bar."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import html as html_module
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..config import Settings
from ..errors import IdempotencyConflictError, MessageError, OutboxError, TemplateError, TemplateNotFoundError
from ..mailer import Mailer
from ..message import Address, Message
from ..outbox.records import AddResult
from .common import EXIT_FAILED, EXIT_USAGE, _configure_logging, _console, _errors, _fail, _settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.text import Text

BULK_CHUNK = 200  # rows enqueued concurrently; the outbox group-commits each chunk in a few transactions
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass(frozen=True)
class _Row:
    line: int  # where the row starts in the file: what a person looks up, and part of the row's idempotency key
    key: str
    values: dict[str, str]


@dataclass
class _BulkCounts:
    queued: int = 0
    replayed: int = 0
    refused: int = 0


def _read_rows(path: Path) -> tuple[list[str], list[_Row]]:
    """The header and the non-blank rows. A row's idempotency key hashes the file's path, the row's line and its
    content, so re-running the same file queues no row twice."""
    source = str(path.resolve())
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            try:
                header = [name.strip() for name in next(reader)]
            except StopIteration:
                raise _fail(f"{path} is empty: expected a header row with an 'email' column", EXIT_USAGE) from None
            rows: list[_Row] = []
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1
                if not any(value.strip() for value in values):
                    continue
                content = "\n".join((source, str(line), json.dumps(values, ensure_ascii=False)))
                key = "bulk:" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:32]
                rows.append(_Row(line, key, dict(zip(header, values, strict=False))))
    except UnicodeDecodeError:
        raise _fail(f"{path} is not UTF-8 text", EXIT_USAGE) from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    except csv.Error as exc:
        raise _fail(f"{path}: line {reader.line_num}: {exc}", EXIT_USAGE) from None
    return header, rows


def _fill(template: str, values: dict[str, str], *, escape: bool = False) -> str:
    def value(match: re.Match[str]) -> str:
        found = values.get(match[1], "")
        return html_module.escape(found) if escape else found

    return _PLACEHOLDER.sub(value, template)


def _progress(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def send_bulk(
    csv_file: Annotated[
        Path, typer.Argument(help="recipients: an 'email' (or 'to') column, other columns are variables")
    ],
    subject: Annotated[str | None, typer.Option(help="subject; {column} placeholders are filled from each row")] = None,
    text: Annotated[str | None, typer.Option(help="plain-text body, with {column} placeholders")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body, with {column} placeholders (values are escaped)")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="sender; defaults to MAILSC_MAIL_FROM")] = None,
    template: Annotated[
        str | None,
        typer.Option(help="a stored template (else a file of MAILSC_TEMPLATES_DIR); the columns are its variables"),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag every message; repeat for several")] = None,
) -> None:
    """Queue one message per CSV row. Idempotent: after a crash or Ctrl-C, re-run the same command on the same
    file and no row is queued twice (rows are identified by the file's path, their line and their content).
    With --template, each row's columns are the template's variables and the template gives subject and body."""
    if template is not None:
        given = [f"--{n}" for n, v in (("subject", subject), ("text", text), ("html", html)) if v is not None]
        if given:
            raise _fail(f"--template gives the subject and body: drop {', '.join(given)}", EXIT_USAGE)
    elif subject is None or (text is None and html is None):
        raise _fail("give --subject and --text and/or --html (or --template)", EXIT_USAGE)
    settings = _settings()
    with _errors():
        if sender is None and settings.sender is None:
            raise _fail("no sender: give --from or set MAILSC_MAIL_FROM", EXIT_USAGE)
        header, rows = _read_rows(csv_file)
    if sender is not None:
        try:
            Address.parse(sender)
        except MessageError as exc:
            raise _fail(f"--from: {exc}", EXIT_USAGE) from None
    column = next((name for name in header if name.lower() in ("email", "to")), None)
    if column is None:
        raise _fail(f"{csv_file} has no 'email' (or 'to') column; its columns: {', '.join(header)}", EXIT_USAGE)
    for option, value in (("--subject", subject), ("--text", text), ("--html", html)):
        unknown = sorted(set(_PLACEHOLDER.findall(value or "")) - set(header))
        if unknown:
            raise _fail(
                f"{option} uses {{{unknown[0]}}}, which is not a column of {csv_file} ({', '.join(header)})", EXIT_USAGE
            )
    _configure_logging(settings, interactive=True)
    tags = list(tag or [])

    def build(row: _Row) -> Message | dict[str, Any]:
        recipient = row.values.get(column, "").strip()
        if not recipient:
            raise MessageError.single("to", f"the {column!r} column is empty")
        if template is not None:
            return {
                "from": sender,
                "to": [recipient],
                "tags": tags,
                "metadata": {"bulk_file": csv_file.name, "bulk_line": str(row.line)},
            }
        assert subject is not None
        return Message(
            **{"from": sender},
            to=[recipient],
            subject=_fill(subject, row.values),
            text=_fill(text, row.values) if text is not None else None,
            html=_fill(html, row.values, escape=True) if html is not None else None,
            tags=tags,
            metadata={"bulk_file": csv_file.name, "bulk_line": str(row.line)},
        )

    counts = _BulkCounts()
    with _errors("interrupted: the rows queued so far stay queued; re-run the same command to continue"):
        asyncio.run(_queue_rows(settings, rows, build, counts, template))
    typer.echo(
        f"queued {counts.queued}, already queued {counts.replayed} (by an earlier run), refused {counts.refused}"
    )
    if counts.refused:
        raise typer.Exit(EXIT_FAILED)


async def _queue_rows(
    settings: Settings,
    rows: list[_Row],
    build: Callable[[_Row], Message | dict[str, Any]],
    counts: _BulkCounts,
    template: str | None = None,
) -> None:
    from rich.text import Text

    console = _console(stderr=True)

    def refuse(row: _Row, reason: str) -> None:
        counts.refused += 1
        console.print(Text(f"line {row.line}: {reason}"))

    async with Mailer.from_env(settings) as mailer:
        if template is not None:
            await mailer.templates.ensure_exists(template)  # a misspelt name fails once, not once per row
        with _progress(console) as progress:
            task = progress.add_task("queueing", total=len(rows))
            for start in range(0, len(rows), BULK_CHUNK):
                chunk = rows[start : start + BULK_CHUNK]
                valid: list[tuple[_Row, Message | dict[str, Any]]] = []
                for row in chunk:
                    try:
                        valid.append((row, build(row)))
                    except MessageError as exc:
                        refuse(row, str(exc))
                results = await asyncio.gather(
                    *(
                        mailer.enqueue_with_result(
                            message,
                            template=template,
                            variables=row.values if template is not None else None,
                            idempotency_key=row.key,
                        )
                        for row, message in valid
                    ),
                    return_exceptions=True,
                )
                stopped: tuple[_Row, BaseException] | None = None
                for (row, _), result in zip(valid, results, strict=True):
                    if isinstance(result, AddResult):
                        counts.replayed += result.replayed
                        counts.queued += not result.replayed
                    elif isinstance(result, IdempotencyConflictError):
                        refuse(row, f"queued by an earlier run with other content (message {result.existing_id})")
                    elif isinstance(result, TemplateNotFoundError) and stopped is None:
                        stopped = (row, result)  # no row can be rendered: stop at once
                    elif isinstance(result, MessageError | TemplateError):
                        refuse(row, str(result))
                    elif stopped is None:
                        stopped = (row, result)
                progress.advance(task, len(chunk))
                if stopped is not None:
                    row, error = stopped
                    if not isinstance(error, OutboxError):
                        raise error  # a TemplateNotFoundError ends the command as a usage error
                    raise OutboxError(
                        f"stopped at line {row.line}: {error}; this run queued {counts.queued} rows before it; "
                        "re-run the same command to continue (no row is queued twice)"
                    )
