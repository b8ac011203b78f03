"""Scale-out, proven: 2 API processes + 2 worker processes on one PostgreSQL, one worker SIGKILLed half-way.

The topology of docs/deploy.md, as real processes: ``mailsc migrate`` once, then two ``mailsc serve --no-worker``
and two ``mailsc worker`` on the same database, delivering to an in-process aiosmtpd server. 5,000 messages go in
through both APIs (``POST /v1/messages/batch``, 100 at a time: one request per message would make this test's
own event loop, which also runs the SMTP server, the bottleneck); when half have arrived at the server, one worker
is killed with SIGKILL (no drain, no release of its claims).
Its claimed rows come back when their lease runs out, and the other worker sends them. At the end every accepted
message reached the server, the database says ``sent`` for exactly the Message-IDs the server saw, and the only
duplicates are messages the dead worker had in flight (the documented at-least-once window).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from tests.databases import require_postgres, reset_postgres
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.timeout(300)  # ~40 s on a quiet 2-core machine; others' tests may share it

MESSAGES = 5000
CLIENTS_PER_API = 2
BATCH = 100  # messages per POST /v1/messages/batch
VICTIM_LEASE_SECONDS = 3  # the killed worker's claims become due again this long after it claimed them


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(database_url: str, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSC_", "SMTP_", "MAIL_"))}
    env.update(
        MAILSC_DATABASE_URL=database_url,
        MAILSC_SMTP_HOST="127.0.0.1",
        MAILSC_SMTP_PORT=str(smtp_port),
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM="app@example.com",
        MAILSC_LOG_LEVEL="warning",
    )
    return env


async def _mailsc(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailsc",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _ready(client: httpx.AsyncClient, process: asyncio.subprocess.Process, base: str) -> None:
    """Wait until the API process answers /readyz with 200 (database and transport usable)."""
    for _ in range(600):
        if process.returncode is not None:
            stderr = await process.stderr.read() if process.stderr else b""
            raise AssertionError(f"API process exited {process.returncode}: {stderr.decode()[-2000:]}")
        try:
            if (await client.get(f"{base}/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base} never became ready")


@asynccontextmanager
async def _processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes started in the block are ended (SIGKILL if still running) however the test ends."""
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
            await process.wait()


def _message_id(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"]).strip("<>")


async def _rows(database_url: str) -> dict[str, tuple[str, str]]:
    """Every outbox row: id -> (status, Message-ID), read straight from PostgreSQL."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT id, status, message_id FROM mailsc_messages")
    finally:
        await conn.close()
    return {row["id"]: (row["status"], row["message_id"].strip("<>")) for row in rows}


async def _count(database_url: str, status: str) -> int:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mailsc_messages WHERE status = $1", status))
    finally:
        await conn.close()


async def test_two_apis_two_workers_one_postgresql_survive_a_sigkilled_worker(
    smtp_server: SmtpServer, record_property: Callable[[str, object], None]
) -> None:
    url = await require_postgres()
    await reset_postgres(url)
    env = _environment(url, smtp_server.port)
    migrate = await _mailsc(env, "migrate")
    _, stderr = await migrate.communicate()
    assert migrate.returncode == 0, stderr.decode()[-2000:]

    ports = [_free_port(), _free_port()]
    async with _processes() as started, httpx.AsyncClient(timeout=30) as client:
        apis = [await _mailsc(env, "serve", "--no-worker", "--port", str(port)) for port in ports]
        started += apis
        victim = await _mailsc(env, "worker", "--lease-seconds", str(VICTIM_LEASE_SECONDS))
        survivor = await _mailsc(env, "worker")
        started += [victim, survivor]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for api, base in zip(apis, bases, strict=True):
            await _ready(client, api, base)

        accepted: list[str] = []
        statuses: Counter[int] = Counter()
        batches = iter(range(0, MESSAGES, BATCH))

        async def post_from(base: str) -> None:
            for first in batches:
                items = [
                    {"to": f"user{n}@example.org", "subject": f"scale-out {n}", "text": f"message {n}\n" * 20}
                    for n in range(first, first + BATCH)
                ]
                response = await client.post(f"{base}/v1/messages/batch", json={"messages": items})
                assert response.status_code == 207, response.text
                for result in response.json()["results"]:
                    statuses[result["status"]] += 1
                    if result["status"] == 202:
                        accepted.append(result["id"])

        load = asyncio.gather(*(post_from(base) for base in bases for _ in range(CLIENTS_PER_API)))

        # Half-way: once half of the messages reached the SMTP server, kill a worker without warning.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while len(smtp_server.received) < MESSAGES // 2:
            assert loop.time() < deadline, f"only {len(smtp_server.received)} delivered after 90 s"
            await asyncio.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        in_flight_at_kill = await _count(url, "sending")
        delivered_at_kill = len(smtp_server.received)

        await load
        assert statuses == {202: MESSAGES}
        assert delivered_at_kill < MESSAGES, "everything was delivered before the kill; the test proves nothing"

        # The survivor delivers the rest, the dead worker's expired claims included.
        deadline = loop.time() + 90
        while await _count(url, "sent") < MESSAGES:
            assert loop.time() < deadline, f"not all sent: {Counter(s for s, _ in (await _rows(url)).values())}"
            await asyncio.sleep(0.2)

        rows = await _rows(url)
        seen = Counter(_message_id(r.data) for r in smtp_server.received)
        duplicates = sum(seen.values()) - len(seen)
        record_property("delivered_at_kill", delivered_at_kill)
        record_property("in_flight_at_kill", in_flight_at_kill)
        record_property("duplicates", duplicates)
        print(
            f"\nscale-out: killed a worker at {delivered_at_kill} delivered, {in_flight_at_kill} rows in flight; "
            f"{duplicates} duplicate deliveries"
        )

        assert len(accepted) == MESSAGES
        assert set(rows) == set(accepted)  # every 202 is a row, and there is no other row
        assert {status for status, _ in rows.values()} == {"sent"}
        assert set(seen) == {message_id for _, message_id in rows.values()}  # database and server agree
        assert duplicates <= in_flight_at_kill  # at-least-once: only what the dead worker had in flight

        for process in [*apis, survivor]:
            process.send_signal(signal.SIGTERM)
        for process, stopped in ((p, (0, -signal.SIGTERM)) for p in apis):  # uvicorn re-raises the SIGTERM it got
            _, stderr = await process.communicate()
            assert process.returncode in stopped, stderr.decode()[-2000:]
        _, stderr = await survivor.communicate()
        assert survivor.returncode == 0, stderr.decode()[-2000:]  # the worker drains and exits cleanly
