"""Shared plumbing of the ``mailsc`` commands: exit codes, errors as one line, settings, logging, the outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import typer

from ..config import Settings
from ..errors import ConfigError, MailscError, MessageError, TemplateError
from ..outbox.engine import async_url
from ..outbox.store import OutboxStore

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 3, 130


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


def _configure_logging(settings: Settings, *, interactive: bool = False, rotate: bool = True) -> None:
    """Entry points configure logging. A command a person runs and watches (``send``, ``send-bulk``) logs warnings
    in the console view, unless MAILSC_LOG_LEVEL / MAILSC_LOG_FORMAT say otherwise. ``rotate=False``: the log
    file is rotated by another process (see ``logs.configure_logging``)."""
    from ..logs import configure_logging  # imported when needed: structlog loads only for commands that log

    if interactive:
        given = settings.model_fields_set
        update = {"log_level": "warning", "log_format": "console"}
        settings = settings.model_copy(update={k: v for k, v in update.items() if k not in given})
    configure_logging(settings, rotate=rotate)


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
