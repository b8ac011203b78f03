"""The ``mailsc`` command line (typer). Entry points configure logging; errors print as one readable line."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from .config import Settings
from .delivery.worker import Worker
from .errors import ConfigError, MailscError
from .mailer import Mailer
from .message import Message
from .outbox.store import OutboxStore

app = typer.Typer(help="mailsc: durable, pooled, verified-TLS email for Python web apps.", no_args_is_help=True)


def _fail(error: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ConfigError as exc:
        raise _fail(exc, 2) from None


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
def send(
    to: Annotated[list[str], typer.Option("--to", help="recipient; repeat for several")],
    subject: Annotated[str, typer.Option(help="subject line")],
    text: Annotated[str | None, typer.Option(help="plain-text body")] = None,
    html: Annotated[str | None, typer.Option(help="HTML body")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="sender; defaults to MAILSC_MAIL_FROM")] = None,
) -> None:
    """Send one message now through the configured SMTP server, and print the server's reply."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    settings = _settings()
    if settings.smtp is None:
        raise _fail(ValueError("no SMTP server configured: set MAILSC_SMTP_URL or MAILSC_SMTP_HOST"), 2)
    try:
        message = Message(**{"from": sender}, to=to, subject=subject, text=text, html=html)
    except MailscError as exc:
        raise _fail(exc, 2) from None

    async def _send() -> str:
        async with Mailer.from_env(settings) as mailer:
            result = await mailer.send(message)
        refused = "".join(f"\nrefused {r.recipient}: {r.smtp_code} {r.message}" for r in result.refused)
        return f"sent {result.message_id}: {result.reply}{refused}"

    try:
        typer.echo(asyncio.run(_send()))
    except MailscError as exc:
        raise _fail(exc, 1) from None


@app.command()
def migrate() -> None:
    """Create or upgrade the outbox schema (safe to run from several processes at once)."""
    settings = _settings()

    async def _migrate() -> None:
        store = await OutboxStore.open(settings.database_url.get_secret_value(), migrate=True)
        await store.close()

    try:
        asyncio.run(_migrate())
    except MailscError as exc:
        raise _fail(exc, 1) from None
    typer.echo("outbox schema is up to date")


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="deliver what is due, then exit")] = False,
    concurrency: Annotated[int, typer.Option(help="sends in flight at once")] = 32,
    lease_seconds: Annotated[float, typer.Option(help="how long a claim holds a message")] = 300.0,
    grace: Annotated[float, typer.Option(help="seconds to finish in-flight sends on SIGTERM")] = 30.0,
) -> None:
    """Run the delivery worker: claim due messages from the outbox and send them. SIGTERM drains and stops."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    settings = _settings()

    async def _run() -> int:
        import signal
        from datetime import timedelta

        mailer = Mailer.from_env(settings)
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
        try:
            await delivery.run(burst=burst)
        finally:
            await mailer.aclose()
        return delivery.sent

    try:
        sent = asyncio.run(_run())
    except MailscError as exc:
        raise _fail(exc, 1) from None
    typer.echo(f"worker stopped after sending {sent} messages", err=True)
