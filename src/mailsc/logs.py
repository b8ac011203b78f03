"""Logging set-up for entry points: structlog JSON lines (or a console view), with secrets and addresses redacted.

Library modules only call ``logging.getLogger(__name__)`` and log a dotted event name with fields in ``extra``
(``logger.info("delivery.sent", extra={"message_id": ..., "attempt": 1})``); nothing here runs at import.
``configure_logging(settings)`` is called once by the CLI (``serve``, ``worker``): it routes every stdlib record,
uvicorn's included, through structlog's ``ProcessorFormatter``, so each line carries ``timestamp`` (ISO 8601, UTC),
``level``, ``logger``, ``event`` and the fields, plus ``request_id`` when one is bound in the current context.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .config import Settings

REDACTED = "[redacted]"
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5

_SECRET_KEY = re.compile(r"password|passwd|secret|token|api[_-]?key|authorization|cookie|smtp_url|database_url", re.I)
# Message bodies never reach a log line, whatever they are called by whoever logs them.
_BODY_KEYS = frozenset({"body", "text", "html", "mime", "data"})
# uvicorn adds an ANSI-coloured copy of its message to every record.
_NOISE_KEYS = frozenset({"color_message"})
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]*@", re.I)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_FIRST_KEYS = ("timestamp", "level", "logger", "event")
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Quietest level for chatty libraries: aiosqlite logs every statement at DEBUG, alembic its plugins at every start.
# httpx logs one INFO line per request: the provider transports' sends (which log their own delivery events) and
# `mailsc serve` polling its worker process's health every 2 s.
_CHATTY_LOGGERS = {"aiosqlite": logging.INFO, "alembic": logging.WARNING, "httpx": logging.WARNING}
_installed: list[logging.Handler] = []


def mask_email(address: str) -> str:
    """``john@example.org`` -> ``j***@example.org``: enough to tell recipients apart, not enough to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_emails(text: str) -> str:
    """Mask every email address inside ``text`` (and the password of any ``scheme://user:password@host`` URL)."""
    if "@" not in text:  # both patterns need one; most log fields have none
        return text
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    return _EMAIL.sub(lambda match: mask_email(match.group(0)), text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_emails(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return _scrub_mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    if isinstance(value, bytes):
        return mask_emails(value.decode("utf-8", "replace"))
    # Anything else (an exception, a datetime, an Address) is rendered as text: mask that text, not its repr later.
    return mask_emails(str(value))


def _scrub_mapping(fields: Mapping[Any, Any]) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key)
        if name.lower() in _BODY_KEYS or name in _NOISE_KEYS:
            continue
        scrubbed[name] = REDACTED if _SECRET_KEY.search(name) else _scrub(value)
    return scrubbed


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor, last before the renderer: secret-looking keys -> ``[redacted]``, email addresses in
    every string (nested ones too) masked, body-like keys dropped; the standard keys are put first."""
    scrubbed = _scrub_mapping(event_dict)
    first = {key: scrubbed.pop(key) for key in _FIRST_KEYS if key in scrubbed}
    return {**first, **scrubbed}


def _shared_processors() -> list[Processor]:
    """Applied to every record, structlog's own and stdlib's alike, before formatting."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _formatter(renderer: Processor) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            # Tracebacks become text before redaction, so an address in an exception message is masked too.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )


def _json_renderer() -> Processor:
    return structlog.processors.JSONRenderer()


def configure_logging(settings: Settings, *, stream: TextIO | None = None, rotate: bool = True) -> None:
    """Send all logging to ``stream`` (default: stderr) as JSON lines or the console view, and to the rotating
    ``settings.log_file`` (always JSON) when set. Replaces the root logger's handlers; safe to call again.

    ``rotate=False``: another process rotates the file (``mailsc serve`` for its worker process); this one only
    appends, and reopens the file when it was rotated away, so two processes never rotate one file at once."""
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    out = stream if stream is not None else sys.stderr
    renderer: Processor = (
        _json_renderer() if settings.log_format == "json" else structlog.dev.ConsoleRenderer(colors=_isatty(out))
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(out)]
    handlers[0].setFormatter(_formatter(renderer))
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler: logging.FileHandler = (
            logging.handlers.RotatingFileHandler(
                settings.log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
            )
            if rotate
            else logging.handlers.WatchedFileHandler(settings.log_file, encoding="utf-8")
        )
        file_handler.setFormatter(_formatter(_json_renderer()))
        handlers.append(file_handler)

    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in _installed:
        handler.close()
    _installed[:] = handlers
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own handlers would print a second, unstructured line: its records go up to ours instead.
    # (Pass log_config=None to uvicorn, or its start-up dictConfig installs them again.)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    for name, quietest in _CHATTY_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, quietest))


def reset_logging() -> None:
    """Undo ``configure_logging``: remove and close its handlers, restore structlog's defaults (for tests)."""
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()
    root.setLevel(logging.WARNING)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def _valid_request_id(request_id: str | None) -> str:
    # It may come from a client header: anything odd (a newline, a megabyte) is replaced, not logged.
    if request_id is None or not _REQUEST_ID.fullmatch(request_id):
        return uuid.uuid4().hex
    return request_id


def bind_request_id(request_id: str | None = None) -> str:
    """Bind ``request_id`` to every line logged from this context on (a missing or malformed id is replaced by a
    new one); returns the id bound. ``unbind_request_id()`` ends it."""
    request_id = _valid_request_id(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    return request_id


def unbind_request_id() -> None:
    """Stop adding ``request_id`` to this context's lines."""
    structlog.contextvars.unbind_contextvars("request_id")


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """``with request_context(header) as request_id:``: bound inside, the previous binding restored after."""
    request_id = _valid_request_id(request_id)
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        yield request_id
