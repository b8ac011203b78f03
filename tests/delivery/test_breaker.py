"""A broken setup keeps the mail (DESIGN.md §6): deferral without burning attempts, a circuit breaker that probes,
readiness that names the cause, one log line per state change, and recovery without operator action."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
from collections import deque
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailsc import ConnectionConfig, Message, render
from mailsc.delivery import RetryPolicy, Worker
from mailsc.delivery.breaker import CircuitBreaker
from mailsc.errors import AuthenticationError, SmtpConnectError
from mailsc.outbox import NewMessage, OutboxStore, fingerprint
from mailsc.transports import SmtpTransport
from tests.api.conftest import make_settings, running
from tests.smtpd import SmtpServer, closed_port


def test_breaker_backs_off_and_closes() -> None:
    breaker = CircuitBreaker("smtp", probe_base=2, probe_cap=10)
    error = AuthenticationError("535 no", transient=False, smtp_code=535)
    assert not breaker.is_open
    breaker.trip(error, now=100)
    assert breaker.is_open
    assert not breaker.probe_due(101)
    assert breaker.probe_due(102)
    delays = []
    now = 102.0
    for _ in range(5):
        breaker.probe_failed(error, now)
        delays.append(breaker.next_probe_at - now)
        now = breaker.next_probe_at
    assert delays == [4, 8, 10, 10, 10]
    breaker.close(now)
    assert not breaker.is_open
    assert breaker.cause is None


async def fill(store: OutboxStore, count: int, subject: str = "m") -> None:
    items = [
        NewMessage(
            render(Message(**{"from": "app@example.com"}, to=f"u{i}@example.org", subject=f"{subject} {i}", text="hi")),
            fingerprint(f"{subject}{i}"),
        )
        for i in range(count)
    ]
    await store.add_many(items)


def unique_message_ids(server: SmtpServer) -> list[str]:
    return [str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"]) for r in server.received]


async def wait_for(predicate: Any, seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_wrong_password_keeps_300_messages_until_it_is_fixed(
    tmp_path: Path, server_tls_context: ssl.SSLContext, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = SmtpServer(starttls_context=server_tls_context, credentials={"app@example.com": "rotated"})
    await server.start()
    settings = make_settings(
        tmp_path,
        None,
        smtp_host="127.0.0.1",
        smtp_port=server.port,
        smtp_security="starttls",
        smtp_ca_file=ca_file,
        smtp_username="app@example.com",
        smtp_password="old-password",
        smtp_timeout=5,
    )
    async with running(settings) as client:
        store: OutboxStore = client.app.state.services.store  # type: ignore[attr-defined]
        await fill(store, 300)
        client.app.state.services.mailer.wake_worker()  # type: ignore[attr-defined]

        async def paused() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await wait_for(paused)
        await asyncio.sleep(0.5)
        ready = (await client.get("/readyz")).json()
        assert "AuthenticationError" in ready["detail"]
        assert "535" in ready["detail"]
        assert "app password" in ready["detail"]
        paused_by = ready["delivery"]  # the same, taken apart for a machine (and the dev inbox banner)
        assert (paused_by["transport"], paused_by["error"]) == ("smtp", "AuthenticationError")
        assert "535" in paused_by["cause"]
        assert "app password" in paused_by["hint"]
        counts = await store.counts()
        assert "failed" not in counts
        assert set(counts) <= {"queued", "deferred"}
        assert server.auth_attempts <= 6  # the pool's first handshakes and a probe, not one per message
        assert server.received == []
        page = await store.list_messages(status="deferred", limit=200)
        assert page.items
        assert {m.attempts for m in page.items} == {0}  # no attempt was burned
        server.credentials = {"app@example.com": "old-password"}  # the operator fixes the account

        async def all_sent() -> bool:
            return (await store.counts()) == {"sent": 300}

        await wait_for(all_sent, 30)
        assert (await client.get("/readyz")).status_code == 200
    await server.stop()
    ids = unique_message_ids(server)
    assert len(ids) == len(set(ids)) == 300
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("transport.")]
    assert events == ["transport.unavailable", "transport.recovered"]


async def _untrusted_tls_server(ca: trustme.CA) -> SmtpServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    return SmtpServer(starttls_context=context)


@pytest.mark.parametrize("problem", ["server down", "starttls missing", "unknown CA"])
async def test_a_broken_server_setup_defers_then_recovers(
    problem: str, tmp_path: Path, ca: trustme.CA, server_tls_context: ssl.SSLContext, ca_file: Path
) -> None:
    port = await closed_port()
    broken: SmtpServer | None = None
    if problem == "starttls missing":
        broken = SmtpServer()
    elif problem == "unknown CA":
        broken = await _untrusted_tls_server(ca)
    if broken is not None:
        await broken.start(port)
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    await fill(store, 40)
    config = ConnectionConfig(host="127.0.0.1", port=port, security="starttls", ca_file=ca_file, timeout=5)
    worker = Worker(store, SmtpTransport(config), RetryPolicy(base=60), probe_base=0.1, probe_cap=0.2)
    task = asyncio.create_task(worker.run())

    async def opened() -> bool:
        return worker.breaker.is_open

    await wait_for(opened)
    expected = SmtpConnectError if problem == "server down" else type(worker.breaker.cause)
    assert isinstance(worker.breaker.cause, expected)
    await asyncio.sleep(0.5)  # several probes fail meanwhile
    counts = await store.counts()
    assert "failed" not in counts
    assert "sent" not in counts
    if broken is not None:
        assert broken.received == []
        assert not [c for c in broken.commands if c.startswith("MAIL")]
        await broken.stop()
    fixed = SmtpServer(starttls_context=server_tls_context)
    await fixed.start(port)

    async def all_sent() -> bool:
        return (await store.counts()) == {"sent": 40}

    await wait_for(all_sent)
    worker.stop()
    await task
    await fixed.stop()
    assert len(set(unique_message_ids(fixed))) == len(fixed.received) == 40
    await store.close()


async def test_a_permanent_refusal_still_fails_while_the_breaker_watches(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        server.faults.rcpt["gone@example.org"] = deque(["550 5.1.1 no such user"])
        store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
        await fill(store, 5)
        bad = render(Message(**{"from": "app@example.com"}, to="gone@example.org", subject="x", text="y"))
        [result] = await store.add_many([NewMessage(bad, fingerprint("bad"))])
        worker = Worker(store, SmtpTransport(ConnectionConfig(host="127.0.0.1", port=server.port, security="none")))
        await worker.run(burst=True)
        assert not isinstance(result, Exception)
        record = await store.get(result.id)
        assert record.status == "failed"
        assert record.attempts == 1
        assert not worker.breaker.is_open
        assert await store.counts() == {"sent": 5, "failed": 1}
        await store.close()


async def test_the_configured_sender_refused_is_a_setup_problem(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        server.faults.mail.extend(["550 5.7.1 sender not verified"] * 3)
        store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
        await fill(store, 3)
        config = ConnectionConfig(host="127.0.0.1", port=server.port, security="none", mail_from="app@example.com")
        worker = Worker(store, SmtpTransport(config), probe_base=0.05, probe_cap=0.1)
        task = asyncio.create_task(worker.run())

        async def done() -> bool:
            return (await store.counts()) == {"sent": 3}

        await wait_for(done)
        worker.stop()
        await task
        assert len(server.received) == 3  # deferred while refused, delivered once the server accepted the sender
        await store.close()


async def test_sighup_reloads_a_rotated_password_without_dropping_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_tls_context: ssl.SSLContext, ca_file: Path
) -> None:
    import os
    import signal

    from mailsc.config import Settings

    server = SmtpServer(starttls_context=server_tls_context, credentials={"app@example.com": "new-password"})
    await server.start()
    monkeypatch.chdir(tmp_path)
    env = (
        f"MAILSC_DATABASE_URL=sqlite:///{tmp_path / 'outbox.db'}\nMAILSC_SMTP_HOST=127.0.0.1\n"
        f"MAILSC_SMTP_PORT={server.port}\nMAILSC_SMTP_CA_FILE={ca_file}\nMAILSC_SMTP_USERNAME=app@example.com\n"
        "MAILSC_MAIL_FROM=app@example.com\n"
    )
    (tmp_path / ".env").write_text(env + "MAILSC_SMTP_PASSWORD=old-password\n")
    async with running(Settings()) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await fill(services.store, 20)
        services.mailer.wake_worker()

        async def paused() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await wait_for(paused)
        (tmp_path / ".env").write_text(env + "MAILSC_SMTP_PORT=not-a-port\n")  # a broken edit is refused...
        assert not await services.mailer.reload_from_env()
        (tmp_path / ".env").write_text(env + "MAILSC_SMTP_PASSWORD=new-password\n")  # ...the right one is taken
        os.kill(os.getpid(), signal.SIGHUP)

        async def all_sent() -> bool:
            return bool((await services.store.counts()) == {"sent": 20})

        await wait_for(all_sent)
        assert (await client.get("/readyz")).status_code == 200
    await server.stop()
    assert len(set(unique_message_ids(server))) == len(server.received) == 20
