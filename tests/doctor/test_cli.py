"""``mailsc doctor`` through typer's runner: exit codes, the terminal and ``--json`` views, settings from the
environment and one-off flags, the dispatch to provider diagnoses, and no secret in any output."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mailsc import cli
from mailsc.doctor import Step
from mailsc.doctor.dispatch import diagnose_transport
from mailsc.envelope import Envelope
from mailsc.transports.base import SendResult
from mailsc.transports.capture import CaptureTransport
from tests.smtpd import SmtpServer, closed_port

USER = "app@example.com"
PASSWORD = "s3cret-Pa55-word"
STEP_KEYS = {"name", "title", "ok", "detail", "fix", "data"}


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer's .env


@pytest.fixture
def threaded() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in its own thread for the servers (the runner is synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="smtpd", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def start(loop: asyncio.AbstractEventLoop, server: SmtpServer) -> SmtpServer:
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    return server


def stop(loop: asyncio.AbstractEventLoop, server: SmtpServer) -> None:
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)


@pytest.fixture
def secured(
    threaded: asyncio.AbstractEventLoop,
    server_tls_context: ssl.SSLContext,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SmtpServer]:
    """A STARTTLS server wanting USER/PASSWORD, configured through the environment as a user would."""
    server = start(threaded, SmtpServer(starttls_context=server_tls_context, credentials={USER: PASSWORD}))
    monkeypatch.setenv("MAILSC_SMTP_URL", f"smtp://app%40example.com:{PASSWORD}@127.0.0.1:{server.port}")
    monkeypatch.setenv("MAILSC_SMTP_CA_FILE", str(ca_file))
    monkeypatch.setenv("MAILSC_SMTP_TIMEOUT", "5")
    monkeypatch.setenv("MAILSC_MAIL_FROM", f"App <{USER}>")
    yield server
    stop(threaded, server)


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli.app, ["doctor", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def no_secret(result: Result, secret: str = PASSWORD) -> None:
    output = result.stdout + result.stderr
    assert secret not in output
    assert base64.b64encode(f"\0{USER}\0{secret}".encode()).decode() not in output


def steps_of(result: Result) -> list[dict[str, Any]]:
    document = json.loads(result.stdout)
    assert set(document) == {"ok", "steps"}
    assert all(set(step) == STEP_KEYS for step in document["steps"])
    steps: list[dict[str, Any]] = document["steps"]
    assert document["ok"] is all(step["ok"] for step in steps)
    return steps


def test_help_lists_doctor() -> None:
    result = CliRunner().invoke(cli.app, ["--help"])
    assert "doctor" in result.stdout


def test_all_good_json_exit_0_and_no_secret(secured: SmtpServer) -> None:
    result = run("--json")
    assert result.exit_code == 0, result.output
    steps = steps_of(result)
    assert [s["name"] for s in steps] == [
        "config",
        "resolve",
        "connect",
        "banner",
        "mode",
        "ehlo",
        "starttls",
        "tls",
        "ehlo_tls",
        "auth",
        "login",
        "mail_from",
    ]
    assert steps[0]["data"]["smtp"]["password_set"] is True
    assert steps[7]["data"]["certificate"]["names"] == ["127.0.0.1", "localhost"]
    no_secret(result)
    assert secured.received == []


@pytest.mark.parametrize("as_json", [False, True])
def test_wrong_password_exit_1_with_the_fix_and_no_secret(
    as_json: bool, secured: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wr0ng-Passw0rd"
    monkeypatch.setenv("MAILSC_SMTP_URL", f"smtp://app%40example.com:{wrong}@127.0.0.1:{secured.port}")
    result = run(*(["--json"] if as_json else []))
    assert result.exit_code == 1
    if as_json:
        last = steps_of(result)[-1]
        assert (last["name"], last["ok"], last["data"]["code"]) == ("login", False, 535)
        assert "app password" in last["fix"]
    else:
        assert "✘ Login: the server refused the login for 'app@example.com': 535" in result.stdout
        assert "fix: " in result.stdout
        assert "stopped at the first failing step: login" in result.stdout
    no_secret(result, wrong)
    no_secret(result)


def test_invalid_configuration_lists_every_problem_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSC_SMTP_URL", f"ftp://app:{PASSWORD}@smtp.example.com")
    monkeypatch.setenv("MAILSC_SMTP_TIMEOUT", "-1")
    for args in ([], ["--json"]):
        result = run(*args)
        assert result.exit_code == 2
        no_secret(result)
    [step] = steps_of(result)
    assert step["name"] == "config"
    assert {p["variable"] for p in step["data"]["problems"]} == {"MAILSC_SMTP_URL", "MAILSC_SMTP_TIMEOUT"}


def test_capture_mode_says_so_and_exits_0() -> None:
    result = run()
    assert result.exit_code == 0
    assert "mail is captured for the dev inbox, not delivered" in result.stdout
    assert "MAILSC_SMTP_URL" in result.stdout
    steps = steps_of(run("--json"))
    assert [(s["name"], s["ok"]) for s in steps] == [("config", True), ("transport", True)]


def test_one_off_flags_need_no_settings(threaded: asyncio.AbstractEventLoop) -> None:
    server = start(threaded, SmtpServer())
    try:
        args = ["--host", "127.0.0.1", "--port", str(server.port), "--security", "none", "--from", "a@example.com"]
        result = run(*args, "--json")
    finally:
        stop(threaded, server)
    assert result.exit_code == 0, result.output
    steps = steps_of(result)
    assert steps[0]["data"]["smtp"]["port"] == server.port
    assert steps[-1]["data"] == {"sender": "a@example.com"}
    assert "MAIL FROM:a@example.com" in server.commands


def test_a_flag_overrides_the_configured_port_and_a_short_timeout(secured: SmtpServer) -> None:
    async def free_port() -> int:
        return await closed_port()

    port = asyncio.run(free_port())
    result = run("--port", str(port), "--timeout", "0.5")
    assert result.exit_code == 1
    assert f"TCP connection to 127.0.0.1:{port}: connection refused" in result.stdout
    assert "timeout 0.5 s" in result.stdout


def test_to_sends_a_real_test_message(secured: SmtpServer) -> None:
    result = run("--to", "someone@example.org")
    assert result.exit_code == 0, result.output
    assert "✔ Test message to someone@example.org" in result.stdout
    [received] = secured.received
    assert received.rcpt_tos == ["someone@example.org"]
    no_secret(result)


def test_a_bad_from_is_a_usage_error() -> None:
    result = run("--host", "127.0.0.1", "--security", "none", "--from", "not an address")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --from:")


class ProviderStandIn:
    """A transport shaped like the HTTP provider transports: ``diagnose(to)`` returns its own Steps."""

    name = "standin"

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    async def send(self, envelope: Envelope) -> SendResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    async def diagnose(self, to: str | None) -> list[Step]:
        self.asked.append(to)
        return [
            Step("api_key", "API key accepted", True, "200 OK"),
            Step("sender", "Sender verified", False, "no", "x"),
        ]


async def test_a_provider_transport_diagnoses_itself() -> None:
    provider = ProviderStandIn()
    seen: list[Step] = []
    steps = await diagnose_transport(provider, to="someone@example.org", on_step=seen.append)
    assert provider.asked == ["someone@example.org"]
    assert [s.name for s in steps] == ["api_key", "sender"]
    assert seen == steps


async def test_the_capture_transport_has_nothing_to_diagnose() -> None:
    [step] = await diagnose_transport(CaptureTransport())
    assert step.ok
    assert step.data == {"transport": "capture"}


class Route:
    def __init__(self, transport: object) -> None:
        self.transport = transport


class ChainStandIn:
    """Shaped like the failover router: ``routes``, each with its ``transport``."""

    name = "failover(standin,capture)"

    def __init__(self, *members: object) -> None:
        self.routes = [Route(member) for member in members]


async def test_a_failover_chain_is_diagnosed_member_by_member() -> None:
    first, second = ProviderStandIn(), ProviderStandIn()
    steps = await diagnose_transport(ChainStandIn(first, second), to=None)
    assert [s.name for s in steps] == ["transport", "api_key", "sender", "transport", "api_key", "sender"]
    assert steps[0].title == "Transport 1 of 2: standin"
    assert first.asked == second.asked == [None]  # the second is checked although the first failed


def test_a_secret_in_anything_printed_is_masked(secured: SmtpServer) -> None:
    """Second line of defence: even a server reply quoting the password (here, its greeting) is printed masked."""
    secured.faults.banner = f"554 5.7.1 go away {PASSWORD}"
    for args in ([], ["--json"]):
        result = run(*args)
        assert result.exit_code == 1
        assert "554 5.7.1 go away ********" in result.stdout
        no_secret(result)
