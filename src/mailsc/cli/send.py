"""``send``: queue one message (from flags, JSON or .eml on stdin), or wait for its delivery, or send it directly."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Annotated, Any

import typer

from ..config import Settings
from ..errors import MessageError
from ..mailer import Mailer
from ..message import Message
from ..outbox.records import MessageRecord
from ..outbox.tables import FINISHED
from .common import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, _configure_logging, _errors, _fail, _settings


@dataclass(frozen=True)
class _Request:
    message: Message | dict[str, Any]  # with a template: the fields the rendered template completes
    send_at: datetime | None = None
    expires_at: datetime | None = None
    template: str | None = None
    variables: dict[str, Any] | None = None


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    """``--var name=value`` flags as template variables."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise _fail(f"--var {pair!r}: write it as name=value", EXIT_USAGE)
        found[name.strip()] = value
    return found


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
    template, variables = data.pop("template", None), data.pop("variables", None)
    if template is not None and not isinstance(template, str):
        raise MessageError.single("template", "must be a template name (a string)")
    if variables is not None and not isinstance(variables, dict):
        raise MessageError.single("variables", "must be a JSON object")
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
    if template is not None:
        return _Request(data, send_at, expires_at, template, variables)
    if variables is not None:
        raise MessageError.single("variables", "variables are only used with a template")
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
    template: Annotated[
        str | None, typer.Option(help="render this template (stored, else a file of MAILSC_TEMPLATES_DIR)")
    ] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="template variable name=value; repeat for several")
    ] = None,
) -> None:
    """Queue one message in the durable outbox and print its id (a worker, or `serve`, delivers it).

    The message comes from the flags (with --template and --var name=value, the template gives the subject and
    body), or from stdin with --stdin-json or --stdin-eml. With --wait this process
    delivers due mail itself until the message is final (exit 0 sent, 1 failed/expired/cancelled, 3 timed out).
    """
    settings = _settings()
    flags = [f"--{n}" for n, v in (("to", to), ("cc", cc), ("bcc", bcc), ("subject", subject)) if v]
    flags += [f"--{n}" for n, v in (("text", text), ("html", html), ("from", sender)) if v is not None]
    flags += [f"--{n}" for n, v in (("template", template), ("var", var)) if v]
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
            fields = {"from": sender, "to": to or [], "cc": cc or [], "bcc": bcc or [], "tags": tag or []}
            if template is not None:
                if text is not None or html is not None:
                    raise _fail("--template gives the body: drop --text and --html", EXIT_USAGE)
                request = _Request({**fields, "subject": subject}, template=template, variables=_variables(var or []))
            else:
                if var:
                    raise _fail("--var is only used with --template", EXIT_USAGE)
                if subject is None:
                    raise _fail(
                        "--subject is required (or --template, or the message on stdin: --stdin-json, --stdin-eml)",
                        EXIT_USAGE,
                    )
                request = _Request(Message(**fields, subject=subject, text=text, html=html))
    if now and (request.send_at is not None or request.expires_at is not None):
        raise _fail("--now sends directly: send_at and expires_at need the outbox (drop --now)", EXIT_USAGE)
    _configure_logging(settings, interactive=True)
    if now:
        _send_now(settings, request)
        return

    async def _enqueue() -> int:
        async with Mailer.from_env(settings) as mailer:
            result = await mailer.enqueue_with_result(
                request.message,
                template=request.template,
                variables=request.variables,
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


def _send_now(settings: Settings, request: _Request) -> None:
    if settings.smtp is None:
        raise _fail("no SMTP server configured: set MAILSC_SMTP_URL or MAILSC_SMTP_HOST", EXIT_USAGE)

    async def _send() -> str:
        async with Mailer.from_env(settings) as mailer:
            result = await mailer.send(request.message, template=request.template, variables=request.variables)
        refused = "".join(f"\nrefused {r.recipient}: {r.smtp_code} {r.message}" for r in result.refused)
        return f"sent {result.message_id}: {result.reply}{refused}"

    with _errors():
        typer.echo(asyncio.run(_send()))
