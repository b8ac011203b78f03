"""Worker processes against one outbox: scale-out without double sends, SIGKILL crash recovery, SIGTERM drain,
and a poison message that crashes its worker every time."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from mailsc import Message, render
from mailsc.outbox import NewMessage, OutboxStore, fingerprint
from tests.databases import require_postgres, reset_postgres
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.timeout(300)


def worker_env(database_url: str, server: SmtpServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSC_", "SMTP_", "MAIL_"))}
    env.update(
        MAILSC_DATABASE_URL=database_url,
        MAILSC_SMTP_HOST="127.0.0.1",
        MAILSC_SMTP_PORT=str(server.port),
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM="app@example.com",
    )
    return env


async def start_worker(database_url: str, server: SmtpServer, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailsc",
        "worker",
        *args,
        env=worker_env(database_url, server),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def fill(store: OutboxStore, count: int, subject: str = "bulk") -> None:
    for start in range(0, count, 500):
        items = []
        for i in range(start, min(count, start + 500)):
            envelope = render(
                Message(
                    **{"from": "app@example.com"}, to=f"user{i}@example.org", subject=f"{subject} {i}", text="x" * 1500
                )
            )
            items.append(NewMessage(envelope, fingerprint(str(i))))
        await store.add_many(items)


def message_ids(server: SmtpServer) -> Counter[str]:
    return Counter(
        str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"]) for r in server.received
    )


async def wait_until(predicate: object, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


async def empty_database(kind: str, tmp_path: Path) -> str:
    """The URL of an empty outbox database: a fresh SQLite file, or this run's PostgreSQL database reset."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
    url = await require_postgres()
    await reset_postgres(url)
    return url


@pytest.fixture
async def pg_store(tmp_path: Path) -> OutboxStore:
    return await OutboxStore.open(await empty_database("postgresql", tmp_path))


async def test_two_workers_on_postgresql_send_each_message_exactly_once(
    smtp_server: SmtpServer, pg_store: OutboxStore
) -> None:
    from tests.databases import PG_URL

    await fill(pg_store, 5000)
    workers = [await start_worker(PG_URL, smtp_server, "--burst") for _ in range(2)]
    results = await asyncio.gather(*(w.communicate() for w in workers))
    assert [w.returncode for w in workers] == [0, 0], [r[1].decode()[-2000:] for r in results]
    counts = message_ids(smtp_server)
    assert len(counts) == 5000
    assert max(counts.values()) == 1
    assert await pg_store.counts() == {"sent": 5000}
    sent_by = [int(r[1].decode().rsplit("after sending ", 1)[1].split()[0]) for r in results]
    assert sum(sent_by) == 5000
    assert min(sent_by) > 0  # both did share the work
    await pg_store.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_sigkill_mid_run_loses_nothing_and_duplicates_only_what_was_in_flight(
    smtp_server: SmtpServer, database: str, tmp_path: Path
) -> None:
    url = await empty_database(database, tmp_path)
    store = await OutboxStore.open(url)
    await fill(store, 2000)
    victim = await start_worker(url, smtp_server, "--lease-seconds", "1")
    await wait_until(lambda: len(smtp_server.received) >= 500, 60)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    in_flight_at_kill = (await store.counts()).get("sending", 0)
    delivered_before = len(smtp_server.received)
    assert delivered_before < 2000, "the worker finished before the kill; the test proves nothing"
    await asyncio.sleep(1.2)  # the dead worker's leases run out
    survivor = await start_worker(url, smtp_server, "--burst")
    _, stderr = await survivor.communicate()
    assert survivor.returncode == 0, stderr.decode()[-2000:]
    counts = message_ids(smtp_server)
    duplicates = sum(counts.values()) - len(counts)
    assert len(counts) == 2000  # every message arrived
    assert duplicates <= in_flight_at_kill
    assert await store.counts() == {"sent": 2000}
    await store.close()


async def test_sigterm_drains_and_gives_leases_back(smtp_server: SmtpServer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    store = await OutboxStore.open(url)
    await fill(store, 300)
    smtp_server.faults.delay = 0.01
    worker = await start_worker(url, smtp_server, "--grace", "5")
    await wait_until(lambda: len(smtp_server.received) >= 20, 60)
    worker.send_signal(signal.SIGTERM)
    _, stderr = await worker.communicate()
    assert worker.returncode == 0, stderr.decode()[-2000:]
    counts = await store.counts()
    assert "sending" not in counts  # finished or given back, none left leased
    assert counts.get("sent", 0) == len(message_ids(smtp_server))
    assert counts.get("sent", 0) + counts.get("queued", 0) == 300
    await store.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_message_that_crashes_its_worker_every_time_ends_failed(
    smtp_server: SmtpServer, database: str, tmp_path: Path
) -> None:
    url = await empty_database(database, tmp_path)
    store = await OutboxStore.open(url)
    poison = render(Message(**{"from": "app@example.com"}, to="p@example.org", subject="poison", text="boom"))
    [result] = await store.add_many([NewMessage(poison, fingerprint("poison"))])
    await fill(store, 20)
    script = Path(__file__).with_name("crashing_worker.py")
    exit_codes = []
    for _ in range(6):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), url, str(smtp_server.port), env={**os.environ, "PYTHONPATH": os.getcwd()}
        )
        exit_codes.append(await process.wait())
        counts = await store.counts()
        if counts.get("sent") == 20 and "sending" not in counts:
            break
        await asyncio.sleep(0.35)  # let the lease of the crashed attempt run out
    assert 17 in exit_codes  # it really crashed the process
    assert not isinstance(result, Exception)
    record = await store.get(result.id)
    assert record.status == "failed"
    assert record.attempts == 3
    assert await store.counts() == {"sent": 20, "failed": 1}
    await store.close()
