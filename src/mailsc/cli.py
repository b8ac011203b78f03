"""The ``mailsc`` command line (typer + rich).

Commands: ``serve``, ``worker``, ``migrate``, ``check-config``, ``send``, ``send-bulk``,
``keys create|list|revoke``, ``outbox list|show|retry|cancel|purge``.

Exit codes:

=====  ==========================================================================================================
0      done (``send --wait``: the message was sent; ``send-bulk``: every row is queued, now or by an earlier run)
1      the operation failed: the outbox is unreachable, no such message or key, the message's state does not allow
       it, a direct send (``send --now``) was refused, ``send --wait`` ended failed/expired/cancelled, or
       ``send-bulk`` refused some rows (each is listed with its line number)
2      usage or configuration: bad flags or input, an invalid message, invalid settings, or ``serve`` refusing a
       non-loopback address while no API key exists
3      ``send --wait`` timed out; the message stays queued
130    interrupted (Ctrl-C); ``send-bulk`` can simply be re-run: no row is queued twice
=====  ==========================================================================================================

Errors print on stderr as one ``error: ...`` line, never a traceback (invalid settings list each problem on its own
line). Entry points configure logging; nothing else does.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import email
import email.policy
import hashlib
import html as html_module
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from .config import Settings, is_loopback
from .delivery.worker import Worker
from .errors import (
    ConfigError,
    IdempotencyConflictError,
    MailscError,
    MessageError,
    OutboxError,
    TemplateError,
)
from .keys import generate_key, hash_key
from .mailer import Mailer
from .message import Address, Message
from .outbox.engine import async_url
from .outbox.records import AddResult, MessageRecord
from .outbox.store import OutboxStore
from .outbox.tables import FINISHED

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.text import Text

T = TypeVar("T")

app = typer.Typer(
    help="mailsc: durable, pooled, verified-TLS email for Python web apps.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold a freshly generated API key or a password
)
keys_app = typer.Typer(help="API keys: create (shown once, stored hashed), list, revoke.", no_args_is_help=True)
outbox_app = typer.Typer(help="Inspect and manage queued mail.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(outbox_app, name="outbox")

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 130
BULK_CHUNK = 200  # rows enqueued concurrently; the outbox group-commits each chunk in a few transactions
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


class Status(StrEnum):
    queued = "queued"
    sending = "sending"
    deferred = "deferred"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"
    expired = "expired"


# -- plumbing ---------------------------------------------------------------------------------------------------


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Turn mailsc's errors into one line on stderr and the documented exit code."""
    try:
        yield
    except KeyboardInterrupt:
        raise _fail(interrupted, EXIT_INTERRUPTED) from None
    except ConfigError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except MessageError as exc:
        raise _fail(f"invalid message: {exc}", EXIT_USAGE) from None
    except TemplateError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except MailscError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None
    except OSError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None


def _settings() -> Settings:
    with _errors():
        settings = Settings()
    try:
        async_url(settings.database_url.get_secret_value())
    except ValueError as exc:
        raise _fail(f"MAILSC_DATABASE_URL: {exc}", EXIT_USAGE) from None
    except Exception:  # SQLAlchemy's parse error quotes the URL, password and all: say it in our words
        raise _fail(
            "MAILSC_DATABASE_URL is not a database URL (e.g. sqlite:///./mailsc.db or postgresql://user:pass@host/db)",
            EXIT_USAGE,
        ) from None
    return settings


def _configure_logging(settings: Settings, *, interactive: bool = False) -> None:
    """Entry points configure logging. A command a person runs and watches (``send``, ``send-bulk``) logs warnings
    in the console view, unless MAILSC_LOG_LEVEL / MAILSC_LOG_FORMAT say otherwise."""
    from .logs import configure_logging  # imported when needed: structlog loads only for commands that log

    if interactive:
        given = settings.model_fields_set
        update = {"log_level": "warning", "log_format": "console"}
        settings = settings.model_copy(update={k: v for k, v in update.items() if k not in given})
    configure_logging(settings)


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[OutboxStore]:
    store = await OutboxStore.open(settings.database_url.get_secret_value())
    try:
        yield store
    finally:
        await store.close()


def _on_store(settings: Settings, action: Callable[[OutboxStore], Awaitable[T]]) -> T:
    """Open the outbox, run ``action`` on it, close it; errors become one line and an exit code."""

    async def run() -> T:
        async with _store(settings) as store:
            return await action(store)

    with _errors():
        return asyncio.run(run())


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console  # imported when needed: `import mailsc.cli` stays light

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped: keep ids and timestamps whole instead of wrapping at 80 columns
        console = Console(stderr=stderr, highlight=False, width=max(console.width, 160))
    return console


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


# -- service ----------------------------------------------------------------------------------------------------


@app.command("check-config")
def check_config() -> None:
    """Validate the configuration (environment and .env) and list every problem at once."""
    settings = _settings()
    smtp = settings.smtp
    if smtp is None:
        typer.echo("configuration valid: no SMTP server configured (mail is captured, not delivered)")
    else:
        typer.echo(
            f"configuration valid: SMTP {smtp.host}:{smtp.port} security={smtp.security} "
            f"verify_certs={smtp.verify_certs} pool_size={smtp.pool_size}"
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [default: MAILSC_HOST, 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port [default: MAILSC_PORT, 8025]", show_default=False)
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="accept mail only; run `mailsc worker` processes to deliver it")
    ] = False,
) -> None:
    """Run the HTTP API (and, unless --no-worker, a delivery worker in the same process).

    With no API key (MAILSC_API_KEY or `mailsc keys create`) it listens on loopback addresses only.
    """
    settings = _settings()
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    exposed = not is_loopback(host)
    if exposed and settings.api_key is None and not _on_store(settings, lambda store: store.has_api_keys()):
        raise _fail(
            f"refusing to listen on {host}: no API key exists, so anyone who can reach it could send mail; "
            "create one with `mailsc keys create --name NAME` (or set MAILSC_API_KEY), or listen on 127.0.0.1",
            EXIT_USAGE,
        )
    _configure_logging(settings)
    import uvicorn  # the service's dependencies load only when serving

    from .api.app import create_app

    with _errors():
        service = create_app(settings, run_worker=not no_worker)
    uvicorn.run(
        service,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="deliver what is due, then exit")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="sends in flight at once")] = 32,
    lease_seconds: Annotated[float, typer.Option(min=1, help="how long a claim holds a message")] = 300.0,
    grace: Annotated[float, typer.Option(min=0, help="seconds to finish in-flight sends on SIGTERM")] = 30.0,
) -> None:
    """Run the delivery worker: claim due messages from the outbox and send them. SIGTERM drains and stops."""
    settings = _settings()
    _configure_logging(settings)

    async def _run() -> int:
        import signal

        mailer = Mailer.from_env(settings)
        try:
            store = await mailer.outbox_store()
            delivery = Worker(
                store,
                mailer.transport,
                mailer.retry_policy,
                concurrency=concurrency,
                lease=timedelta(seconds=lease_seconds),
                grace=grace,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, delivery.stop)
            await delivery.run(burst=burst)
        finally:
            await mailer.aclose()
        return delivery.sent

    with _errors():
        sent = asyncio.run(_run())
    typer.echo(f"worker stopped after sending {sent} messages", err=True)


@app.command()
def migrate() -> None:
    """Create or upgrade the outbox schema (safe to run from several processes at once)."""
    settings = _settings()

    _on_store(settings, lambda store: store.migrate())  # opening migrates; again is a no-op
    typer.echo("outbox schema is up to date")


# -- send -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    message: Message
    send_at: datetime | None = None
    expires_at: datetime | None = None


def _read_stdin() -> bytes:
    stream = typer.get_binary_stream("stdin")
    if stream.isatty():
        raise _fail("nothing on stdin: pipe the message in, e.g. `mailsc send --stdin-json < message.json`", EXIT_USAGE)
    return stream.read()


def _time(data: dict[str, Any], field: str) -> datetime | None:
    value = data.pop(field, None)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise MessageError.single(field, f"{value!r} is not an RFC 3339 time, e.g. 2030-01-31T09:00:00Z") from None


def _request_from_json(raw: bytes, tags: Sequence[str]) -> _Request:
    """One message in the HTTP API's body shape (DESIGN.md §4)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _fail(f"stdin is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(data, dict):
        raise _fail("stdin must hold one JSON object (a message)", EXIT_USAGE)
    if "template" in data or "variables" in data:
        raise _fail("templates are not available yet: give subject and text/html", EXIT_USAGE)
    send_at, expires_at = _time(data, "send_at"), _time(data, "expires_at")
    attachments = data.get("attachments")
    if isinstance(attachments, list):
        for index, attachment in enumerate(attachments):
            if isinstance(attachment, dict) and isinstance(attachment.get("content"), str):
                try:
                    attachment["content"] = base64.b64decode(attachment["content"], validate=True)
                except ValueError:
                    raise MessageError.single(["attachments", index, "content"], "is not valid base64") from None
    existing = data.get("tags") or []
    if tags and isinstance(existing, list):
        data["tags"] = [*existing, *tags]
    return _Request(Message.from_dict(data), send_at, expires_at)


def _addresses(parsed: EmailMessage, field: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for header in parsed.get_all(field) or []:
        found += [{"name": a.display_name, "email": a.addr_spec} for a in getattr(header, "addresses", ())]
    return found


def _request_from_eml(raw: bytes, tags: Sequence[str]) -> _Request:
    """From/To/Cc/Bcc/Reply-To, Subject, the text and HTML bodies and the attachments of an .eml file."""
    parsed = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    senders = _addresses(parsed, "From")
    bodies: dict[str, str | None] = {}
    for kind in ("plain", "html"):
        part = parsed.get_body(preferencelist=(kind,))
        bodies[kind] = part.get_content() if isinstance(part, EmailMessage) else None
    attachments = []
    for number, part in enumerate(parsed.iter_attachments(), 1):
        content_id = part.get("Content-ID")
        attachments.append(
            {
                "filename": part.get_filename() or f"attachment-{number}",
                "content": part.get_payload(decode=True) or b"",
                "content_type": part.get_content_type(),
                "inline": bool(content_id) and part.get_content_disposition() == "inline",
                "content_id": str(content_id) if content_id else None,
            }
        )
    data: dict[str, Any] = {
        "from": senders[0] if senders else None,
        "to": _addresses(parsed, "To"),
        "cc": _addresses(parsed, "Cc"),
        "bcc": _addresses(parsed, "Bcc"),
        "reply_to": _addresses(parsed, "Reply-To"),
        "subject": str(parsed.get("Subject", "")),
        "text": bodies["plain"],
        "html": bodies["html"],
        "attachments": attachments,
        "tags": list(tags),
    }
    return _Request(Message.from_dict(data), None, None)


async def _wait_for_final(mailer: Mailer, message_id: str, seconds: float) -> tuple[MessageRecord, bool]:
    """Deliver in this process (as a worker would) until the message is final or ``seconds`` pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    delivery = await mailer.worker(grace=5.0)
    task = asyncio.create_task(delivery.run())
    try:
        while True:
            record = await mailer.status(message_id)
            if record.status in FINISHED:
                return record, True
            if task.done():
                task.result()  # the worker stopped on its own: raise its error
            remaining = deadline - loop.time()
            if remaining <= 0:
                return record, False
            await asyncio.sleep(min(0.05, remaining))
    finally:
        delivery.stop()
        await asyncio.gather(task, return_exceptions=True)


@app.command()
def send(
    to: Annotated[list[str] | None, typer.Option("--to", help="recipient; repeat for several")] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc recipient; repeat for several")] = None,
    bcc: Annotated[list[str] | None, typer.Option("--bcc", help="Bcc recipient; repeat for several")] = None,
    subject: Annotated[str | None, typer.Option(help="subject line")] = None,
    text: Annotated[str | None, typer.Option(help="plain-text body")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="sender; defaults to MAILSC_MAIL_FROM")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag; repeat for several")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="a re-run with the same key queues nothing new")] = None,
    stdin_json: Annotated[bool, typer.Option(help="read one JSON message (the HTTP API's body) from stdin")] = False,
    stdin_eml: Annotated[bool, typer.Option(help="read one .eml message from stdin")] = False,
    wait: Annotated[bool, typer.Option(help="deliver from this process and print the final status")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="with --wait: give up after this many seconds")] = 60.0,
    now: Annotated[bool, typer.Option(help="skip the outbox: send directly and print the server's reply")] = False,
) -> None:
    """Queue one message in the durable outbox and print its id (a worker, or `serve`, delivers it).

    The message comes from the flags, or from stdin with --stdin-json or --stdin-eml. With --wait this process
    delivers due mail itself until the message is final (exit 0 sent, 1 failed/expired/cancelled, 3 timed out).
    """
    settings = _settings()
    flags = [f"--{n}" for n, v in (("to", to), ("cc", cc), ("bcc", bcc), ("subject", subject)) if v]
    flags += [f"--{n}" for n, v in (("text", text), ("html", html), ("from", sender)) if v is not None]
    if stdin_json and stdin_eml:
        raise _fail("give one of --stdin-json and --stdin-eml", EXIT_USAGE)
    if (stdin_json or stdin_eml) and flags:
        raise _fail(f"the message comes from stdin; {', '.join(flags)} cannot be combined with it", EXIT_USAGE)
    if now and (wait or idempotency_key is not None):
        raise _fail("--now sends directly, without the outbox: drop --wait and --idempotency-key", EXIT_USAGE)
    with _errors():
        if stdin_json:
            request = _request_from_json(_read_stdin(), tag or [])
        elif stdin_eml:
            request = _request_from_eml(_read_stdin(), tag or [])
        else:
            if subject is None:
                raise _fail("--subject is required (or the message on stdin: --stdin-json, --stdin-eml)", EXIT_USAGE)
            fields = {"from": sender, "to": to or [], "cc": cc or [], "bcc": bcc or [], "tags": tag or []}
            request = _Request(Message(**fields, subject=subject, text=text, html=html))
    if now and (request.send_at is not None or request.expires_at is not None):
        raise _fail("--now sends directly: send_at and expires_at need the outbox (drop --now)", EXIT_USAGE)
    _configure_logging(settings, interactive=True)
    if now:
        _send_now(settings, request.message)
        return

    async def _enqueue() -> int:
        async with Mailer.from_env(settings) as mailer:
            result = await mailer.enqueue_with_result(
                request.message,
                idempotency_key=idempotency_key,
                send_at=request.send_at,
                expires_at=request.expires_at,
            )
            typer.echo(result.id)
            if result.replayed:
                typer.echo("note: queued earlier with this idempotency key; nothing new was queued", err=True)
            if not wait:
                return 0
            record, final = await _wait_for_final(mailer, result.id, timeout)
        typer.echo(f"{record.status}: {record.last_error}" if record.last_error else record.status)
        if not final:
            typer.echo(
                f"error: message {record.id} is still {record.status} after {timeout:g}s; it stays queued "
                "(`mailsc worker` delivers it, `mailsc outbox show ID` follows it)",
                err=True,
            )
            return EXIT_TIMEOUT
        return 0 if record.status == "sent" else EXIT_FAILED

    with _errors():
        code = asyncio.run(_enqueue())
    if code:
        raise typer.Exit(code)


def _send_now(settings: Settings, message: Message) -> None:
    if settings.smtp is None:
        raise _fail("no SMTP server configured: set MAILSC_SMTP_URL or MAILSC_SMTP_HOST", EXIT_USAGE)

    async def _send() -> str:
        async with Mailer.from_env(settings) as mailer:
            result = await mailer.send(message)
        refused = "".join(f"\nrefused {r.recipient}: {r.smtp_code} {r.message}" for r in result.refused)
        return f"sent {result.message_id}: {result.reply}{refused}"

    with _errors():
        typer.echo(asyncio.run(_send()))


# -- send-bulk --------------------------------------------------------------------------------------------------


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


@app.command("send-bulk")
def send_bulk(
    csv_file: Annotated[
        Path, typer.Argument(help="recipients: an 'email' (or 'to') column, other columns are variables")
    ],
    subject: Annotated[str | None, typer.Option(help="subject; {column} placeholders are filled from each row")] = None,
    text: Annotated[str | None, typer.Option(help="plain-text body, with {column} placeholders")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body, with {column} placeholders (values are escaped)")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="sender; defaults to MAILSC_MAIL_FROM")] = None,
    template: Annotated[str | None, typer.Option(help="a stored template (not available yet)")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag every message; repeat for several")] = None,
) -> None:
    """Queue one message per CSV row. Idempotent: after a crash or Ctrl-C, re-run the same command on the same
    file and no row is queued twice (rows are identified by the file's path, their line and their content)."""
    if template is not None:
        raise _fail("templates are not available yet: use --subject with --text and/or --html", EXIT_USAGE)
    if subject is None or (text is None and html is None):
        raise _fail("give --subject and --text and/or --html", EXIT_USAGE)
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

    def build(row: _Row) -> Message:
        recipient = row.values.get(column, "").strip()
        if not recipient:
            raise MessageError.single("to", f"the {column!r} column is empty")
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
        asyncio.run(_queue_rows(settings, rows, build, counts))
    typer.echo(
        f"queued {counts.queued}, already queued {counts.replayed} (by an earlier run), refused {counts.refused}"
    )
    if counts.refused:
        raise typer.Exit(EXIT_FAILED)


async def _queue_rows(
    settings: Settings, rows: list[_Row], build: Callable[[_Row], Message], counts: _BulkCounts
) -> None:
    from rich.text import Text

    console = _console(stderr=True)

    def refuse(row: _Row, reason: str) -> None:
        counts.refused += 1
        console.print(Text(f"line {row.line}: {reason}"))

    async with Mailer.from_env(settings) as mailer:
        with _progress(console) as progress:
            task = progress.add_task("queueing", total=len(rows))
            for start in range(0, len(rows), BULK_CHUNK):
                chunk = rows[start : start + BULK_CHUNK]
                valid: list[tuple[_Row, Message]] = []
                for row in chunk:
                    try:
                        valid.append((row, build(row)))
                    except MessageError as exc:
                        refuse(row, str(exc))
                results = await asyncio.gather(
                    *(mailer.enqueue_with_result(message, idempotency_key=row.key) for row, message in valid),
                    return_exceptions=True,
                )
                stopped: tuple[_Row, BaseException] | None = None
                for (row, _), result in zip(valid, results, strict=True):
                    if isinstance(result, AddResult):
                        counts.replayed += result.replayed
                        counts.queued += not result.replayed
                    elif isinstance(result, IdempotencyConflictError):
                        refuse(row, f"queued by an earlier run with other content (message {result.existing_id})")
                    elif isinstance(result, MessageError):
                        refuse(row, str(result))
                    elif stopped is None:
                        stopped = (row, result)
                progress.advance(task, len(chunk))
                if stopped is not None:
                    row, error = stopped
                    if not isinstance(error, OutboxError):
                        raise error
                    raise OutboxError(
                        f"stopped at line {row.line}: {error}; this run queued {counts.queued} rows before it; "
                        "re-run the same command to continue (no row is queued twice)"
                    )


# -- keys -------------------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="what the key is for, e.g. the app using it")]) -> None:
    """Create an API key and print it, once: only its hash is stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise _fail("--name must be 1-100 characters", EXIT_USAGE)
    settings = _settings()
    key = generate_key()

    record = _on_store(settings, lambda store: store.add_api_key(name, hash_key(key)))
    typer.echo(key)
    typer.echo(f"created API key {name!r} (id {record.id}); it is not shown again: store it now", err=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List API keys (never any key material)."""
    settings = _settings()
    records = _on_store(settings, lambda store: store.list_api_keys())
    if as_json:
        typer.echo(_dumps([asdict(r) for r in records]))
        return
    if not records:
        typer.echo("no API keys; create one with `mailsc keys create --name NAME`")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("id", "name", "created (UTC)", "revoked (UTC)")
    for record in records:
        table.add_row(record.id, Text(record.name), _when(record.created_at), _when(record.revoked_at))
    _console().print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="the key's id or name")]) -> None:
    """Revoke an API key (every active key of that name)."""
    settings = _settings()
    if not _on_store(settings, lambda store: store.revoke_api_key(key)):
        raise _fail(f"no active API key with id or name {key!r}", EXIT_FAILED)
    typer.echo(f"revoked {key}")


# -- outbox -----------------------------------------------------------------------------------------------------


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
