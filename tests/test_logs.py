"""configure_logging(): JSON lines with the standard fields, the console view, levels, the rotating file, redaction,
request ids, and the library's stdlib log calls coming out structured."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.handlers
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import structlog

from mailsc import Message
from mailsc.config import Settings
from mailsc.delivery import Worker
from mailsc.logs import (
    LOG_FILE_BACKUPS,
    LOG_FILE_MAX_BYTES,
    bind_request_id,
    configure_logging,
    mask_email,
    mask_emails,
    request_context,
    reset_logging,
    unbind_request_id,
)
from mailsc.mailer import Mailer
from mailsc.outbox import OutboxStore
from mailsc.transports import MemoryTransport

WORKER_LOGGER = "mailsc.delivery.worker"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    reset_logging()


def settings(
    log_format: Literal["json", "console"] = "json",
    log_level: Literal["debug", "info", "warning", "error"] = "info",
    log_file: Path | None = None,
) -> Settings:
    return Settings(_env_file=None, log_format=log_format, log_level=log_level, log_file=log_file)


def configured(**options: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings(**options), stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def only_line(stream: io.StringIO) -> dict[str, Any]:
    [line] = lines(stream)
    return line


def test_a_library_log_call_is_one_json_line_with_the_standard_fields_and_extras() -> None:
    stream = configured()
    logging.getLogger(WORKER_LOGGER).info("delivery.sent", extra={"message_id": "msg_1", "attempt": 2})
    line = only_line(stream)
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["event"] == "delivery.sent"
    assert line["level"] == "info"
    assert line["logger"] == WORKER_LOGGER
    assert line["message_id"] == "msg_1"
    assert line["attempt"] == 2
    assert line["timestamp"].endswith("Z")
    stamped = datetime.fromisoformat(line["timestamp"])
    assert stamped.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)


def test_structlog_loggers_come_out_the_same_way() -> None:
    stream = configured()
    structlog.get_logger("mailsc.cli").warning("service.started", worker=True, transport="smtp")
    line = only_line(stream)
    assert line["event"] == "service.started"
    assert (line["level"], line["logger"]) == ("warning", "mailsc.cli")
    assert (line["worker"], line["transport"]) == (True, "smtp")
    assert "timestamp" in line


def test_console_format_is_readable_text_with_the_fields() -> None:
    stream = configured(log_format="console")
    logging.getLogger(WORKER_LOGGER).warning("delivery.failed", extra={"message_id": "msg_1", "code": 550})
    text = stream.getvalue()
    assert "delivery.failed" in text
    assert "message_id=msg_1" in text
    assert "code=550" in text
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_format_masks_addresses_too() -> None:
    stream = configured(log_format="console")
    logging.getLogger("mailsc.mailer").info("mailer.sent", extra={"to": "john@example.org"})
    assert "j***@example.org" in stream.getvalue()
    assert "john@" not in stream.getvalue()


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["debug.event", "info.event", "warning.event", "error.event"]),
        ("info", ["info.event", "warning.event", "error.event"]),
        ("warning", ["warning.event", "error.event"]),
        ("error", ["error.event"]),
    ],
)
def test_the_level_filters_lines(level: Literal["debug", "info", "warning", "error"], expected: list[str]) -> None:
    stream = configured(log_level=level)
    log = logging.getLogger("mailsc.test")
    log.debug("debug.event")
    log.info("info.event")
    log.warning("warning.event")
    log.error("error.event")
    structlog.get_logger("mailsc.test").debug("structlog.debug")
    events = [line["event"] for line in lines(stream)]
    assert events == expected + (["structlog.debug"] if level == "debug" else [])


def test_the_log_file_gets_json_lines_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "mailsc.log"
    stream = configured(log_format="console", log_file=path)
    logging.getLogger(WORKER_LOGGER).info("delivery.sent", extra={"message_id": "msg_1"})
    [file_handler] = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert file_handler.maxBytes == LOG_FILE_MAX_BYTES == 10 * 1024 * 1024
    assert file_handler.backupCount == LOG_FILE_BACKUPS == 5
    file_handler.flush()
    [line] = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
    assert (line["event"], line["message_id"]) == ("delivery.sent", "msg_1")
    assert "message_id=msg_1" in stream.getvalue()  # the stream keeps the console view


def test_a_process_that_does_not_rotate_follows_the_file_another_rotated(tmp_path: Path) -> None:
    """`mailsc serve` rotates the log file; its worker process only appends, and after a rotation writes to the new
    file, not into the rotated one (nor rotates it a second time)."""
    path = tmp_path / "mailsc.log"
    configure_logging(settings(log_file=path), stream=io.StringIO(), rotate=False)
    logger = logging.getLogger(WORKER_LOGGER)
    logger.info("delivery.sent", extra={"message_id": "before"})
    path.rename(tmp_path / "mailsc.log.1")  # what the rotating process does
    path.write_text("")  # ...and the file it starts anew
    logger.info("delivery.sent", extra={"message_id": "after"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert [json.loads(t)["message_id"] for t in (tmp_path / "mailsc.log.1").read_text().splitlines()] == ["before"]
    assert [json.loads(t)["message_id"] for t in path.read_text().splitlines()] == ["after"]


def test_configuring_again_replaces_the_handlers(tmp_path: Path) -> None:
    configured(log_file=tmp_path / "first.log")
    first_file = next(h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler))
    stream = configured()
    assert len(logging.getLogger().handlers) == 1
    assert first_file.stream is None  # closed
    logging.getLogger("mailsc.test").warning("once")
    assert [line["event"] for line in lines(stream)] == ["once"]


def test_secret_looking_fields_are_redacted() -> None:
    stream = configured()
    secrets = {
        "password": "hunter2-a",
        "smtp_password": "hunter2-b",
        "passwd": "hunter2-c",
        "client_secret": "hunter2-d",
        "refresh_token": "hunter2-e",
        "api_key": "hunter2-f",
        "X-Api-Key": "hunter2-g",
        "apikey": "hunter2-h",
        "Authorization": "Bearer hunter2-i",
        "cookie": "session=hunter2-j",
        "smtp_url": "smtp://user:hunter2-k@mail.example.com",
        "database_url": "postgresql://app:hunter2-l@db/mailsc",
    }
    logging.getLogger("mailsc.test").warning("config.loaded", extra={**secrets, "nested": {"token": "hunter2-m"}})
    assert "hunter2" not in stream.getvalue()
    line = only_line(stream)
    assert all(line[key] == "[redacted]" for key in secrets)
    assert line["nested"] == {"token": "[redacted]"}


def test_a_password_inside_a_url_in_any_text_is_redacted() -> None:
    stream = configured()
    logging.getLogger("mailsc.test").error("connect failed for smtp://user:hunter2@mail.example.com:587")
    assert only_line(stream)["event"] == "connect failed for smtp://user:[redacted]@mail.example.com:587"


def test_email_addresses_are_masked_in_the_event_args_and_nested_fields() -> None:
    stream = configured()
    logging.getLogger("mailsc.test").warning(
        "refused john@example.org and %s",
        "ann.lee+tag@example.net",
        extra={
            "recipient": "Zoë <zoe@exämple.org>",
            "detail": {"refused": [{"recipient": "bob@example.com", "code": 550}], "pair": ("x@a.example", 1)},
            "error": ValueError("no mailbox carl@example.com"),
        },
    )
    raw = stream.getvalue()
    for address in ("john@", "ann.lee", "zoe@", "bob@", "x@a", "carl@"):
        assert address not in raw
    line = only_line(stream)
    assert line["event"] == "refused j***@example.org and a***@example.net"
    assert line["recipient"] == "Zoë <z***@exämple.org>"
    assert line["detail"] == {
        "refused": [{"recipient": "b***@example.com", "code": 550}],
        "pair": ["x***@a.example", 1],
    }
    assert line["error"] == "no mailbox c***@example.com"


def test_addresses_in_a_traceback_are_masked() -> None:
    stream = configured()
    try:
        raise ValueError("bad recipient john@example.org")
    except ValueError:
        logging.getLogger(WORKER_LOGGER).exception("delivery.crashed", extra={"message_id": "msg_1"})
    line = only_line(stream)
    assert line["level"] == "error"
    assert "ValueError: bad recipient j***@example.org" in line["exception"]
    assert "john@" not in stream.getvalue()


def test_message_bodies_are_never_logged() -> None:
    stream = configured()
    bodies = {"body": "BODY-1", "text": "BODY-2", "html": "<p>BODY-3</p>", "mime": b"BODY-4", "data": b"BODY-5"}
    logging.getLogger("mailsc.test").info("message.rendered", extra={**bodies, "rendered": {"html": "BODY-6", "n": 1}})
    assert "BODY" not in stream.getvalue()
    line = only_line(stream)
    assert not set(bodies) & set(line)
    assert line["rendered"] == {"n": 1}


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("john@example.org", "j***@example.org"),
        ("a@example.org", "a***@example.org"),
        ("@example.org", "***@example.org"),
        ("not an address", "***"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


def test_masking_is_idempotent() -> None:
    once = mask_emails("to john@example.org, jane@example.org")
    assert once == "to j***@example.org, j***@example.org"
    assert mask_emails(once) == once


def test_a_bound_request_id_is_on_every_line_until_unbound() -> None:
    stream = configured()
    assert bind_request_id("req-1") == "req-1"
    logging.getLogger("mailsc.api.access").info("http.request", extra={"status": 202})
    structlog.get_logger("mailsc.api").info("api.note")
    unbind_request_id()
    logging.getLogger("mailsc.api.access").info("after")
    assert [line.get("request_id") for line in lines(stream)] == ["req-1", "req-1", None]


def test_a_malformed_or_missing_request_id_is_replaced() -> None:
    generated = bind_request_id("bad\nid")
    assert generated != "bad\nid"
    assert len(generated) == 32
    assert bind_request_id() != generated


async def test_request_ids_stay_with_their_own_request() -> None:
    stream = configured()

    async def handle(request_id: str) -> None:
        with request_context(request_id):
            await asyncio.sleep(0)
            logging.getLogger("mailsc.api").info("handled", extra={"for": request_id})

    with request_context("outer") as outer:
        await asyncio.gather(handle("req-a"), handle("req-b"))
        logging.getLogger("mailsc.api").info("handled", extra={"for": outer})
    logging.getLogger("mailsc.api").info("handled", extra={"for": None})
    assert sorted((line["for"], line.get("request_id")) for line in lines(stream) if line["for"]) == [
        ("outer", "outer"),
        ("req-a", "req-a"),
        ("req-b", "req-b"),
    ]
    assert "request_id" not in lines(stream)[-1]


def test_uvicorn_records_come_through_ours_without_its_colour_copy() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    own_handler = logging.StreamHandler(io.StringIO())
    uvicorn_error.addHandler(own_handler)
    uvicorn_error.propagate = False
    stream = configured()
    assert uvicorn_error.handlers == []
    assert uvicorn_error.propagate
    uvicorn_error.info("Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"})
    line = only_line(stream)
    assert (line["event"], line["logger"]) == ("Started server process [42]", "uvicorn.error")
    assert "color_message" not in line


def test_importing_mailsc_configures_no_logging() -> None:
    code = "import logging, mailsc, mailsc.logs, mailsc.delivery; print(len(logging.getLogger().handlers))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "0"


async def test_the_worker_logs_a_delivery_as_structured_json(tmp_path: Path) -> None:
    stream = configured()
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    mailer = Mailer(transport=MemoryTransport(), outbox=store, default_sender="app@example.com")
    try:
        message_id = await mailer.enqueue(Message(to="john@example.org", subject="Hi", text="SECRET-BODY"))
        await Worker(store, mailer.transport).run(burst=True)
    finally:
        await mailer.aclose()
    sent = [line for line in lines(stream) if line["event"] == "delivery.sent"]
    assert sent == [
        {
            "timestamp": sent[0]["timestamp"],
            "level": "info",
            "logger": WORKER_LOGGER,
            "event": "delivery.sent",
            "message_id": message_id,
            "attempt": 1,
        }
    ]
    assert "john@" not in stream.getvalue()
    assert "SECRET-BODY" not in stream.getvalue()
