"""The ``mailsc`` command line through typer's runner, on real SQLite files and a real in-process SMTP server."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from mailsc import cli
from mailsc.cli import common, send, send_bulk, service
from mailsc.config import Settings
from mailsc.errors import OutboxUnavailableError
from mailsc.keys import hash_key
from mailsc.mailer import Mailer
from mailsc.outbox.records import AddResult, MessageRecord
from mailsc.outbox.store import OutboxStore
from tests.smtpd import SmtpServer

T = TypeVar("T")
_OUR_PREFIXES = ("MAILSC_", "SMTP_", "MAIL_")
_OUR_NAMES = ("USE_CREDENTIALS", "VALIDATE_CERTS", "TIMEOUT", "SUPPRESS_SEND", "LOCAL_HOSTNAME")
_TERMINAL = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


@pytest.fixture(autouse=True)
def database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """No MAILSC_/SMTP_/MAIL_ variable from outside, no stray .env, a fresh SQLite outbox, a default sender."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(_OUR_PREFIXES) or upper.removesuffix("_FILE") in _OUR_NAMES or upper in _TERMINAL:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    monkeypatch.setenv("MAILSC_DATABASE_URL", url)
    monkeypatch.setenv("MAILSC_MAIL_FROM", "App <app@example.com>")
    return url


_configure_logging = common._configure_logging
_command = typer.main.get_command(cli.app)


@pytest.fixture(autouse=True)
def build_the_command_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """typer's runner rebuilds the click command from the functions on every invoke (25 ms each, ~100 invokes)."""
    monkeypatch.setattr(
        typer.testing, "_get_command", lambda app: _command if app is cli.app else typer.main.get_command(app), False
    )


@pytest.fixture(autouse=True)
def logging_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, bool]]:
    """configure_logging replaces the root handlers with one bound to the runner's stream: record the calls."""
    calls: list[tuple[Settings, bool]] = []

    def record(settings: Settings, *, interactive: bool = False, rotate: bool = True) -> None:
        calls.append((settings, interactive))

    for module in (service, send, send_bulk):  # the commands that configure logging
        monkeypatch.setattr(module, "_configure_logging", record)
    return calls


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """An SMTP server in its own thread and event loop (the runner is synchronous), configured as the relay."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="smtpd", daemon=True)
    thread.start()
    server = SmtpServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    monkeypatch.setenv("MAILSC_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MAILSC_SMTP_PORT", str(server.port))
    monkeypatch.setenv("MAILSC_SMTP_SECURITY", "none")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def run(*args: str, stdin: str | bytes | None = None) -> Result:
    result = CliRunner().invoke(cli.app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not an exit code: show its traceback
    return result


def one_line_error(result: Result, code: int) -> str:
    """The command failed with ``code`` and said why in one line on stderr."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr.removeprefix("error: ").strip()


def on_store(url: str, action: Callable[[OutboxStore], Awaitable[T]]) -> T:
    async def go() -> T:
        store = await OutboxStore.open(url)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def all_messages(url: str) -> list[MessageRecord]:
    return on_store(url, lambda s: s.list_messages(limit=100_000)).items


def queue(*extra: str) -> str:
    result = run("send", "--to", "a@example.org", "--subject", "Hello", "--text", "Hi", *extra)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# -- the command line itself ----------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "worker", "migrate", "check-config", "send", "send-bulk", "keys", "outbox"):
        assert command in result.stdout


def test_import_stays_light_and_python_m_mailsc_works() -> None:
    probe = (
        "import runpy, sys, mailsc.cli\n"
        "print(sorted({'uvicorn', 'fastapi', 'structlog'} & set(sys.modules)))\n"
        "sys.argv = ['mailsc', 'outbox', '--help']\n"
        "runpy.run_module('mailsc', run_name='__main__', alter_sys=True)  # what `python -m mailsc` does\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    loaded, _, help_text = done.stdout.partition("\n")
    assert loaded == "[]"
    assert "purge" in help_text


def test_check_config_and_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "configuration valid" in run("check-config").stdout
    monkeypatch.setenv("MAILSC_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("MAILSC_SMTP_PORT", "465")
    monkeypatch.setenv("MAILSC_SMTP_SECURITY", "starttls")
    result = run("check-config")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid configuration, 1 problem:")
    assert "MAILSC_SMTP_PORT" in result.stderr
    assert "Traceback" not in result.output


def test_interactive_commands_log_warnings_in_the_console_view_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mailsc.logs

    configured: list[Settings] = []
    monkeypatch.setattr(mailsc.logs, "configure_logging", lambda settings, **_options: configured.append(settings))
    monkeypatch.setenv("MAILSC_SMTP_HOST", "127.0.0.1")
    _configure_logging(Settings(), interactive=True)
    _configure_logging(Settings())
    monkeypatch.setenv("MAILSC_LOG_LEVEL", "debug")
    _configure_logging(Settings(), interactive=True)
    assert [(s.log_level, s.log_format) for s in configured] == [
        ("warning", "console"),
        ("info", "json"),
        ("debug", "console"),
    ]
    assert all(s.smtp is not None for s in configured)  # the copy keeps the validated SMTP profile


def test_migrate_creates_the_schema(database_url: str) -> None:
    result = run("migrate")
    assert result.exit_code == 0
    assert "up to date" in result.stdout
    assert on_store(database_url, lambda s: s.counts()) == {}


def test_an_unusable_outbox_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "not-a-database.db").write_bytes(b"garbage" * 200)
    monkeypatch.setenv("MAILSC_DATABASE_URL", f"sqlite:///{tmp_path / 'not-a-database.db'}")
    assert "the outbox database is unavailable" in one_line_error(run("outbox", "list"), 1)
    assert "unavailable" in one_line_error(run("send", "--to", "a@example.org", "--subject", "s", "--text", "t"), 1)


@pytest.mark.parametrize("url", ["mysql://user:s3cret@db/mail", "::not a url s3cret"])
def test_a_bad_database_url_is_a_usage_error(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSC_DATABASE_URL", url)
    result = run("outbox", "list")
    assert result.exit_code == 2
    assert "MAILSC_DATABASE_URL: must start with sqlite:///" in result.stderr
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


# -- keys -----------------------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(database_url: str) -> None:
    created = run("keys", "create", "--name", "billing app")
    assert created.exit_code == 0
    key = created.stdout.strip()
    assert key.startswith("msc_")
    assert len(key) > 40
    assert "not shown again" in created.stderr
    record = on_store(database_url, lambda s: s.find_api_key(hash_key(key)))
    assert record is not None
    assert record.name == "billing app"
    assert on_store(database_url, lambda s: s.has_api_keys())

    listed = run("keys", "list")
    assert listed.exit_code == 0
    assert "billing app" in listed.stdout
    assert record.id in listed.stdout
    assert key not in listed.output
    assert hash_key(key) not in listed.output
    assert "msc_" not in listed.output
    as_json = json.loads(run("keys", "list", "--json").stdout)
    assert [(k["id"], k["name"], k["revoked_at"]) for k in as_json] == [(record.id, "billing app", None)]
    assert key not in json.dumps(as_json)
    assert hash_key(key) not in json.dumps(as_json)


def test_keys_revoke_by_name_or_id(database_url: str) -> None:
    first = run("keys", "create", "--name", "one").stdout.strip()
    second = run("keys", "create", "--name", "two").stdout.strip()
    assert run("keys", "revoke", "one").exit_code == 0
    assert on_store(database_url, lambda s: s.find_api_key(hash_key(first))) is None
    assert "no active API key" in one_line_error(run("keys", "revoke", "one"), 1)
    record = on_store(database_url, lambda s: s.find_api_key(hash_key(second)))
    assert record is not None
    assert run("keys", "revoke", record.id).exit_code == 0
    assert not on_store(database_url, lambda s: s.has_api_keys())
    listed = run("keys", "list", "--json")
    assert all(k["revoked_at"] for k in json.loads(listed.stdout))


def test_keys_create_needs_a_name() -> None:
    assert "--name" in one_line_error(run("keys", "create", "--name", "  "), 2)
    assert "no API keys" in run("keys", "list").stdout


# -- serve ----------------------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what ``serve`` would run instead of starting uvicorn."""
    import uvicorn

    import mailsc.api.app

    calls: list[dict[str, Any]] = []

    def create_app(
        settings: Settings, *, run_worker: bool = True, worker_process: bool = False, freeze_heap: bool = False
    ) -> str:
        calls.append({"settings": settings, "run_worker": run_worker})
        calls[-1].update(worker_process=worker_process, freeze_heap=freeze_heap)
        return "the app"

    def fake_run(app: object, **options: Any) -> None:
        calls.append({"app": app, **options})

    monkeypatch.setattr(mailsc.api.app, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    return calls


def test_serve_refuses_a_public_address_without_an_api_key(served: list[dict[str, Any]]) -> None:
    message = one_line_error(run("serve", "--host", "0.0.0.0"), 2)
    assert "refusing to listen on 0.0.0.0" in message
    assert "mailsc keys create" in message
    assert served == []


@pytest.mark.parametrize("how", ["stored", "environment"])
def test_serve_listens_publicly_once_a_key_exists(
    how: str, served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, logging_calls: list[Any]
) -> None:
    if how == "stored":
        assert run("keys", "create", "--name", "web").exit_code == 0
    else:
        monkeypatch.setenv("MAILSC_API_KEY", "a-bootstrap-key-of-some-length")
    result = run("serve", "--host", "0.0.0.0", "--port", "9025", "--no-worker")
    assert result.exit_code == 0, result.stderr
    created, started = served
    assert created["run_worker"] is False
    assert started == {
        "app": "the app",
        "host": "0.0.0.0",
        "port": 9025,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,
    }
    assert len(logging_calls) == 1


def test_serve_defaults_to_loopback_from_settings(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("serve").exit_code == 0
    created, started = served
    assert created["run_worker"] is True
    assert created["freeze_heap"] is True  # serve owns its process
    assert (started["host"], started["port"]) == ("127.0.0.1", 8025)
    monkeypatch.setenv("MAILSC_HOST", "::1")
    monkeypatch.setenv("MAILSC_PORT", "8100")
    served.clear()
    assert run("serve").exit_code == 0
    assert (served[1]["host"], served[1]["port"]) == ("::1", 8100)


@pytest.mark.parametrize(("cores", "expected"), [({0}, False), ({0, 1}, True), ({0, 1, 2, 3}, True)])
def test_serve_delivers_from_a_worker_process_when_it_has_two_cores(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, cores: set[int], expected: bool
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: cores)  # e.g. a container's cpuset
    assert run("serve").exit_code == 0
    assert served[0]["worker_process"] is expected
    served.clear()
    assert run("serve", "--embedded-worker").exit_code == 0
    assert served[0]["worker_process"] is False


def test_serve_refuses_a_worker_process_with_several_processes(served: list[dict[str, Any]]) -> None:
    message = one_line_error(run("serve", "--processes", "2", "--worker-process"), 2)
    assert "--worker-process needs --processes 1" in message
    assert served == []


def test_serve_builds_the_real_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from fastapi import FastAPI

    apps: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: apps.append(app))
    assert run("serve").exit_code == 0
    assert isinstance(apps[0], FastAPI)


# -- send -----------------------------------------------------------------------------------------------------


def test_send_queues_in_the_outbox_and_prints_the_id(database_url: str) -> None:
    result = run(
        "send",
        *("--to", "a@example.org", "--to", "b@example.org", "--cc", "c@example.org", "--bcc", "d@example.org"),
        *("--subject", "Hello", "--text", "Hi", "--html", "<p>Hi</p>", "--tag", "welcome", "--tag", "cli"),
    )
    assert result.exit_code == 0, result.stderr
    message_id = result.stdout.strip()
    record = on_store(database_url, lambda s: s.get(message_id))
    assert record.status == "queued"
    assert record.recipients == ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]
    assert (record.subject, record.tags, record.sender) == ("Hello", ["welcome", "cli"], "app@example.com")


def test_send_with_an_idempotency_key_queues_once(database_url: str) -> None:
    first = queue("--idempotency-key", "order-42")
    again = run("send", "--to", "a@example.org", "--subject", "Hello", "--text", "Hi", "--idempotency-key", "order-42")
    assert again.exit_code == 0
    assert again.stdout.strip() == first
    assert "queued earlier" in again.stderr
    assert len(all_messages(database_url)) == 1
    other = run("send", "--to", "a@example.org", "--subject", "Other", "--text", "Hi", "--idempotency-key", "order-42")
    assert "order-42" in one_line_error(other, 1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "not-an-address", "--subject", "s", "--text", "t"], "invalid message: to.0"),
        (["--to", "a@example.org", "--subject", "s"], "needs a text or an html body"),
        (["--to", "a@example.org", "--text", "t"], "--subject is required"),
        (["--subject", "s", "--text", "t"], "at least one recipient"),
        (["--to", "a@example.org", "--subject", "bad\nsubject", "--text", "t"], "line break"),
        (["--to", "a@example.org", "--subject", "s", "--text", "t", "--now", "--wait"], "--now"),
        (["--stdin-json", "--stdin-eml"], "one of"),
        (["--stdin-json", "--to", "a@example.org"], "--to cannot be combined"),
    ],
)
def test_send_usage_errors_are_one_line_and_exit_2(args: list[str], expected: str, database_url: str) -> None:
    assert expected in one_line_error(run("send", *args, stdin=b"{}"), 2)
    assert all_messages(database_url) == []


def test_send_without_a_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSC_MAIL_FROM")
    assert "sender" in one_line_error(run("send", "--to", "a@example.org", "--subject", "s", "--text", "t"), 2)
    assert queue("--from", "Other <other@example.com>")


def test_send_stdin_json_takes_the_api_body(database_url: str) -> None:
    body = {
        "from": "Shop <shop@example.com>",
        "to": "a@example.org",
        "cc": ["b@example.org"],
        "reply_to": "help@example.com",
        "subject": "Your order",
        "html": "<p>Thanks</p>",
        "headers": {"List-Unsubscribe": "<mailto:u@example.com>"},
        "tags": ["order"],
        "metadata": {"order": "42"},
        "attachments": [{"filename": "r.txt", "content": "aGVsbG8=", "content_type": "text/plain"}],
        "send_at": "2099-01-01T09:00:00Z",
    }
    result = run("send", "--stdin-json", "--tag", "cli", stdin=json.dumps(body))
    assert result.exit_code == 0, result.stderr
    record = on_store(database_url, lambda s: s.get(result.stdout.strip()))
    assert (record.sender, record.recipients, record.subject) == (
        "shop@example.com",
        ["a@example.org", "b@example.org"],
        "Your order",
    )
    assert (record.tags, record.metadata) == (["order", "cli"], {"order": "42"})
    assert record.send_at is not None
    assert record.send_at.year == 2099


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "one JSON object"),
        ('{"to": "a@example.org", "template": "welcome", "text": "t"}', "either a template or a text/html body"),
        ('{"to": "a@example.org", "subject": "s", "text": "t", "send_at": "tomorrow"}', "send_at"),
        ('{"to": "a@example.org", "subject": "s", "text": "t", "bogus": 1}', "bogus"),
        (
            '{"to": "a@example.org", "subject": "s", "text": "t", "attachments": [{"filename": "a", "content": "@@"}]}',
            "base64",
        ),
    ],
)
def test_send_stdin_json_errors(stdin: str, expected: str) -> None:
    assert expected in one_line_error(run("send", "--stdin-json", stdin=stdin), 2)


def eml() -> bytes:
    message = EmailMessage()
    message["From"] = "Ann Example <ann@example.com>"
    message["To"] = "Bob <bob@example.org>, carol@example.org"
    message["Cc"] = "dave@example.org"
    message["Subject"] = "Quarterly report, Zoë"
    message.set_content("See attached.")
    message.add_alternative("<p>See <b>attached</b>.</p>", subtype="html")
    message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="report.csv")
    return message.as_bytes()


def test_send_stdin_eml_and_wait_delivers_it(smtp: SmtpServer) -> None:
    result = run("send", "--stdin-eml", "--wait", stdin=eml())
    assert result.exit_code == 0, result.output
    _, status = result.stdout.split()
    assert status == "sent"
    [received] = smtp.received
    assert received.mail_from == "ann@example.com"
    assert sorted(received.rcpt_tos) == ["bob@example.org", "carol@example.org", "dave@example.org"]
    delivered = parsed(received.data)
    assert delivered["Subject"] == "Quarterly report, Zoë"
    assert delivered["From"] == "Ann Example <ann@example.com>"
    html = delivered.get_body(("html",))
    assert html is not None
    assert "<b>attached</b>" in html.get_content()
    [attachment] = list(delivered.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() == "a,b\n1,2\n"


def test_send_wait_prints_sent_and_exits_0(smtp: SmtpServer, database_url: str, logging_calls: list[Any]) -> None:
    result = run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "Hello", "--wait")
    assert result.exit_code == 0, result.output
    message_id, status = result.stdout.split()
    assert status == "sent"
    assert [r.rcpt_tos for r in smtp.received] == [["a@example.org"]]
    record = on_store(database_url, lambda s: s.get(message_id))
    assert record.status == "sent"
    assert [e["type"] for e in record.events] == ["queued", "attempt", "sent"]
    assert logging_calls
    assert logging_calls[0][1] is True


def test_send_wait_exits_1_when_the_message_fails(smtp: SmtpServer) -> None:
    smtp.faults.rcpt_any.append("550 5.1.1 no such user")
    result = run("send", "--to", "gone@example.org", "--subject", "Hi", "--text", "Hello", "--wait")
    assert result.exit_code == 1
    status_line = result.stdout.splitlines()[1]
    assert status_line.startswith("failed: ")
    assert "550" in status_line
    assert smtp.received == []


def test_send_wait_times_out_with_exit_3_and_the_message_stays_queued(smtp: SmtpServer, database_url: str) -> None:
    smtp.faults.rcpt_any.append("451 4.3.0 try again later")
    result = run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "Hello", "--wait", "--timeout", "0.5")
    assert result.exit_code == 3
    message_id, status_line = result.stdout.splitlines()
    assert status_line.startswith("deferred: ")
    assert "451" in status_line
    assert "still deferred after 0.5s" in result.stderr
    assert on_store(database_url, lambda s: s.get(message_id)).status == "deferred"


def test_send_now_skips_the_outbox(smtp: SmtpServer, database_url: str) -> None:
    result = run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "Hello", "--now")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sent <")
    assert "250" in result.stdout
    assert len(smtp.received) == 1
    assert all_messages(database_url) == []


def test_send_now_reports_a_refusal_in_one_line(smtp: SmtpServer) -> None:
    smtp.faults.rcpt_any.append("550 5.1.1 no such user")
    message = one_line_error(run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "x", "--now"), 1)
    assert "550" in message


def test_send_now_needs_an_smtp_server() -> None:
    result = run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "Hello", "--now")
    assert "no SMTP server configured" in one_line_error(result, 2)


def test_worker_burst_delivers_what_send_queued(smtp: SmtpServer, database_url: str) -> None:
    ids = [queue() for _ in range(3)]
    result = run("worker", "--burst")
    assert result.exit_code == 0, result.output
    assert "after sending 3 messages" in result.stderr
    assert len(smtp.received) == 3
    assert {m.id: m.status for m in all_messages(database_url)} == dict.fromkeys(ids, "sent")


# -- send-bulk ------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: int, *, first: int = 0) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "plan"])
        writer.writerows([f"user{i}@example.org", f"User {i}", "pro" if i % 2 else "free"] for i in range(first, rows))
    return path


def bulk(path: Path, *extra: str) -> Result:
    return run("send-bulk", str(path), "--subject", "Hi {name}", "--text", "Your plan: {plan}", *extra)


def assert_each_row_once(database_url: str, rows: int) -> None:
    messages = all_messages(database_url)
    recipients = Counter(r for m in messages for r in m.recipients)
    assert len(messages) == rows
    assert recipients == Counter({f"user{i}@example.org": 1 for i in range(rows)})


def last_line_error(result: Result, code: int) -> str:
    """Like ``one_line_error``, after the progress bar as far as it got."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    *_progress, message = result.stderr.splitlines()
    assert message.startswith("error: ")
    assert "Traceback" not in result.output
    return message.removeprefix("error: ")


def test_send_bulk_rerun_after_interruptions_sends_no_row_twice(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "recipients.csv"
    write_csv(path, 200)  # the first run saw only the first 200 rows (the file was still being written)
    first = bulk(path)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "queued 200, already queued 0 (by an earlier run), refused 0"
    assert "200/200" in first.stderr  # the progress bar

    write_csv(path, 1000)  # the second run crashes part-way: the database fails at the 601st row
    enqueue = Mailer.enqueue_with_result
    calls = 0

    async def failing(self: Mailer, message: Any, **options: Any) -> AddResult:
        nonlocal calls
        calls += 1
        if calls > 600:
            raise OutboxUnavailableError("the outbox database is unavailable: disk I/O error")
        return await enqueue(self, message, **options)

    monkeypatch.setattr(Mailer, "enqueue_with_result", failing)
    message = last_line_error(bulk(path), 1)
    assert "stopped at line 602" in message
    assert "this run queued 400 rows before it" in message
    assert "re-run" in message
    assert len(all_messages(database_url)) == 600

    monkeypatch.setattr(Mailer, "enqueue_with_result", enqueue)
    rerun = bulk(path)
    assert rerun.exit_code == 0, rerun.output
    assert rerun.stdout.strip() == "queued 400, already queued 600 (by an earlier run), refused 0"
    assert_each_row_once(database_url, 1000)


def test_send_bulk_ctrl_c_exits_130_and_a_rerun_finishes(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_csv(tmp_path / "recipients.csv", 150)
    monkeypatch.setattr(send_bulk, "BULK_CHUNK", 50)
    enqueue = Mailer.enqueue_with_result
    calls = 0

    async def interrupted(self: Mailer, message: Any, **options: Any) -> AddResult:
        nonlocal calls
        calls += 1
        if calls == 120:
            raise KeyboardInterrupt
        return await enqueue(self, message, **options)

    monkeypatch.setattr(Mailer, "enqueue_with_result", interrupted)
    assert "re-run the same command" in last_line_error(bulk(path), 130)
    assert 100 <= len(all_messages(database_url)) < 150  # the first chunk was committed
    monkeypatch.setattr(Mailer, "enqueue_with_result", enqueue)
    assert bulk(path).exit_code == 0
    assert_each_row_once(database_url, 150)


def test_send_bulk_fills_variables_and_escapes_them_in_html(tmp_path: Path, smtp: SmtpServer) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Name,email\nAnn <The Admin>,ann@example.org\n", encoding="utf-8-sig")
    result = run(
        "send-bulk",
        str(path),
        *("--subject", "Hi {Name}", "--text", "Dear {Name}", "--html", "<p style='a {b: c}'>Dear {Name}</p>"),
        *("--tag", "newsletter"),
    )
    assert result.exit_code == 0, result.output
    assert run("worker", "--burst").exit_code == 0
    [received] = smtp.received
    delivered = parsed(received.data)
    assert delivered["Subject"] == "Hi Ann <The Admin>"
    text, html = delivered.get_body(("plain",)), delivered.get_body(("html",))
    assert text is not None
    assert text.get_content().strip() == "Dear Ann <The Admin>"
    assert html is not None
    assert "<p style='a {b: c}'>Dear Ann &lt;The Admin&gt;</p>" in html.get_content()


def test_send_bulk_refuses_bad_rows_by_line_and_queues_the_rest(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "email,name,note\n"
        "ok1@example.org,A,\n"
        "not-an-address,B,\n"
        "\n"
        ",C,\n"
        'ok2@example.org,D,"a note\non two lines"\n'
        'ok3@example.org,"x\r\ny",\n',
        newline="",
    )
    result = run("send-bulk", str(path), "--subject", "Hi {name}", "--text", "t")
    assert result.exit_code == 1
    assert result.stdout.strip() == "queued 2, already queued 0 (by an earlier run), refused 3"
    assert "line 3: to.0: invalid email address 'not-an-address'" in result.stderr
    assert "line 5: to: the 'email' column is empty" in result.stderr
    assert "line 8: subject" in result.stderr  # a line break cannot go into a subject
    assert sorted(r for m in all_messages(database_url) for r in m.recipients) == ["ok1@example.org", "ok2@example.org"]


def test_send_bulk_with_changed_content_refuses_rows_queued_before(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", 3)
    assert bulk(path).exit_code == 0
    changed = run("send-bulk", str(path), "--subject", "Other {name}", "--text", "t")
    assert changed.exit_code == 1
    assert changed.stdout.strip() == "queued 0, already queued 0 (by an earlier run), refused 3"
    assert "line 2: queued by an earlier run with other content" in changed.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--subject", "s", "--text", "t", "--template", "welcome"], "drop --subject, --text"),
        (["--subject", "s"], "--text and/or --html"),
        (["--subject", "Hi {first_name}", "--text", "t"], "{first_name}, which is not a column"),
        (["--subject", "s", "--html", "<p>{x}</p>"], "--html uses {x}"),
    ],
)
def test_send_bulk_usage_errors(tmp_path: Path, args: list[str], expected: str, database_url: str) -> None:
    path = write_csv(tmp_path / "r.csv", 2)
    assert expected in one_line_error(run("send-bulk", str(path), *args), 2)
    assert all_messages(database_url) == []


def test_send_bulk_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = one_line_error(run("send-bulk", "nope.csv", "--subject", "s", "--text", "t"), 2)
    assert "cannot read nope.csv" in missing
    (tmp_path / "empty.csv").write_text("")
    assert "is empty" in one_line_error(run("send-bulk", "empty.csv", "--subject", "s", "--text", "t"), 2)
    (tmp_path / "names.csv").write_text("name,city\nAnn,Oslo\n")
    no_email = one_line_error(run("send-bulk", "names.csv", "--subject", "s", "--text", "t"), 2)
    assert "no 'email' (or 'to') column; its columns: name, city" in no_email
    (tmp_path / "latin1.csv").write_bytes("email,name\nz@example.org,Zo\xeb\n".encode("latin-1"))
    assert "not UTF-8" in one_line_error(run("send-bulk", "latin1.csv", "--subject", "s", "--text", "t"), 2)
    write_csv(tmp_path / "ok.csv", 1)
    bad_from = run("send-bulk", "ok.csv", "--subject", "s", "--text", "t", "--from", "nobody")
    assert "--from: " in one_line_error(bad_from, 2)
    monkeypatch.delenv("MAILSC_MAIL_FROM")
    assert "no sender" in one_line_error(run("send-bulk", "ok.csv", "--subject", "s", "--text", "t"), 2)


def test_send_bulk_accepts_a_to_column(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "r.csv").write_text("To,name\na@example.org,A\n")
    assert run("send-bulk", "r.csv", "--subject", "s {name}", "--text", "t").exit_code == 0
    [message] = all_messages(database_url)
    assert (message.recipients, message.subject) == (["a@example.org"], "s A")
    assert message.metadata == {"bulk_file": "r.csv", "bulk_line": "2"}


# -- outbox ---------------------------------------------------------------------------------------------------


def test_outbox_list_filters_and_pages(database_url: str) -> None:
    first = queue("--tag", "a")
    second = run("send", "--to", "b@example.org", "--subject", "[Second] one", "--text", "t", "--tag", "b")
    second_id = second.stdout.strip()
    third = queue("--tag", "a")

    listed = run("outbox", "list")
    assert listed.exit_code == 0
    assert all(i in listed.stdout for i in (first, second_id, third))
    assert "[Second] one" in listed.stdout  # user text is not rich markup
    assert listed.stdout.index(third) < listed.stdout.index(first)  # newest first

    assert [m["id"] for m in json.loads(run("outbox", "list", "--json", "--tag", "a").stdout)["items"]] == [
        third,
        first,
    ]
    by_recipient = json.loads(run("outbox", "list", "--json", "--recipient", "b@example.org").stdout)
    assert [m["id"] for m in by_recipient["items"]] == [second_id]
    assert json.loads(run("outbox", "list", "--json", "--status", "sent").stdout) == {"items": [], "next_cursor": None}

    page = run("outbox", "list", "--limit", "2")
    assert f"more: --cursor {second_id}" in page.stdout
    assert first not in page.stdout
    rest = json.loads(run("outbox", "list", "--json", "--limit", "2", "--cursor", second_id).stdout)
    assert [m["id"] for m in rest["items"]] == [first]
    assert rest["next_cursor"] is None

    bad = run("outbox", "list", "--status", "bogus")
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output


def test_outbox_show_cancel_purge(database_url: str) -> None:
    message_id = queue("--tag", "welcome")
    shown = run("outbox", "show", message_id)
    assert shown.exit_code == 0
    for text in (message_id, "queued", "a@example.org", "Hello", "welcome", "app@example.com", "events"):
        assert text in shown.stdout

    assert run("outbox", "cancel", message_id).stdout.strip() == f"cancelled: {message_id}"
    assert "it is cancelled" in one_line_error(run("outbox", "cancel", message_id), 1)
    assert "it is cancelled" in one_line_error(run("outbox", "retry", message_id), 1)
    record = json.loads(run("outbox", "show", message_id, "--json").stdout)
    assert record["status"] == "cancelled"
    assert [e["type"] for e in record["events"]] == ["queued", "cancelled"]

    kept = queue()
    assert run("outbox", "purge", "--older-than", "1").stdout.strip() == "purged 0 finished messages older than 1 days"
    assert run("outbox", "purge", "--older-than", "0").stdout.strip() == "purged 1 finished messages older than 0 days"
    assert f"no message {message_id}" in one_line_error(run("outbox", "show", message_id), 1)
    assert [m.id for m in all_messages(database_url)] == [kept]
    assert run("outbox", "purge").exit_code == 2  # --older-than is required: no accidental purge


def test_outbox_retry_queues_a_failed_message_again(smtp: SmtpServer, database_url: str) -> None:
    smtp.faults.rcpt_any.append("550 5.1.1 no such user")
    failed = run("send", "--to", "a@example.org", "--subject", "Hi", "--text", "Hello", "--wait")
    message_id = failed.stdout.split()[0]
    assert failed.exit_code == 1
    shown = run("outbox", "show", message_id)
    assert "550" in shown.stdout
    assert "failed" in shown.stdout
    assert run("outbox", "retry", message_id).stdout.strip() == f"queued again: {message_id}"
    assert on_store(database_url, lambda s: s.get(message_id)).status == "queued"
    assert run("worker", "--burst").exit_code == 0
    assert on_store(database_url, lambda s: s.get(message_id)).status == "sent"


def test_outbox_unknown_ids_exit_1() -> None:
    for command in ("show", "retry", "cancel"):
        assert "no message 01NOSUCHID" in one_line_error(run("outbox", command, "01NOSUCHID"), 1)


def test_reload_signals_a_running_worker_which_rereads_its_settings(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("MAILSC_", "SMTP_", "MAIL_"))}
    (tmp_path / ".env").write_text(f"MAILSC_DATABASE_URL=sqlite:///{tmp_path / 'outbox.db'}\n")
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailsc", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # started and idle
        result = run("reload", "--pid", str(worker.pid))
        assert result.exit_code == 0, result.output
        assert str(worker.pid) in result.stdout
        time.sleep(1.5)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr[-2000:]
    assert "config.reloaded" in stderr


def test_reload_without_a_running_service_says_so() -> None:
    result = run("reload", "--pid", "999999999")
    assert result.exit_code == 1
    assert "cannot signal process 999999999" in result.stderr
