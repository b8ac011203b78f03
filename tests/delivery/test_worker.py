"""The worker in-process, against real outboxes (SQLite and PostgreSQL) and a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import deque
from datetime import UTC, datetime, timedelta

from mailsc import ConnectionConfig, Mailer, Message
from mailsc.delivery import RetryPolicy, Worker
from mailsc.outbox import OutboxStore
from mailsc.transports import SmtpTransport
from tests.smtpd import SmtpServer

FAST = RetryPolicy(base=0.05, cap=0.1)


def mailer_for(server: SmtpServer, store: OutboxStore, policy: RetryPolicy = FAST) -> Mailer:
    config = ConnectionConfig(
        host="127.0.0.1", port=server.port, security="none", timeout=5, mail_from="App <app@example.com>"
    )
    return Mailer(config, outbox=store, retry_policy=policy)


def message(n: int = 0, **extra: object) -> Message:
    return Message(to=f"user{n}@example.org", subject=f"message {n}", text=f"body {n}", **extra)


async def drain(mailer: Mailer, *, until: set[str] | None = None, rounds: int = 40) -> None:
    """Run burst workers until the given messages are finished (retries need their delay to pass)."""
    for _ in range(rounds):
        await (await mailer.worker()).run(burst=True)
        if until is None:
            return
        statuses = {(await mailer.status(i)).status for i in until}
        if statuses <= {"sent", "failed", "expired", "cancelled"}:
            return
        await asyncio.sleep(0.05)


async def test_enqueue_then_deliver_exactly(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    ids = [await mailer.enqueue(message(i)) for i in range(20)]
    await drain(mailer)
    assert len(smtp_server.received) == 20
    record = await mailer.status(ids[0])
    assert record.status == "sent"
    assert record.attempts == 1
    assert [e["type"] for e in record.events] == ["queued", "attempt", "sent"]
    assert record.events[-1]["detail"]["reply"].startswith("250")
    sent_ids = [
        email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"] for r in smtp_server.received
    ]
    assert sorted(sent_ids) == sorted([(await mailer.status(i)).message_id for i in ids])


async def test_451_then_250_is_delivered_on_the_second_attempt(smtp_server: SmtpServer, store: OutboxStore) -> None:
    smtp_server.faults.mail.append("451 4.3.0 try again later")
    mailer = mailer_for(smtp_server, store)
    message_id = await mailer.enqueue(message())
    await drain(mailer, until={message_id})
    record = await mailer.status(message_id)
    assert record.status == "sent"
    assert record.attempts == 2
    assert [e["type"] for e in record.events] == ["queued", "attempt", "deferred", "attempt", "sent"]
    assert record.events[2]["detail"]["code"] == 451
    assert len(smtp_server.received) == 1


async def test_550_fails_after_one_attempt(smtp_server: SmtpServer, store: OutboxStore) -> None:
    smtp_server.faults.rcpt_any.append("550 5.1.1 no such user")
    mailer = mailer_for(smtp_server, store)
    message_id = await mailer.enqueue(message())
    await drain(mailer, until={message_id})
    record = await mailer.status(message_id)
    assert record.status == "failed"
    assert record.attempts == 1
    assert record.smtp_code == 550
    assert record.events[-1]["detail"]["refused"][0]["code"] == 550
    assert smtp_server.received == []


async def test_partial_refusal_is_recorded(smtp_server: SmtpServer, store: OutboxStore) -> None:
    smtp_server.faults.rcpt["gone@example.org"] = deque(["550 5.1.1 gone"])
    mailer = mailer_for(smtp_server, store)
    message_id = await mailer.enqueue(Message(to=["ok@example.org", "gone@example.org"], subject="s", text="t"))
    await drain(mailer)
    record = await mailer.status(message_id)
    assert record.status == "sent"
    assert record.events[-1]["detail"]["refused"] == [
        {"recipient": "gone@example.org", "code": 550, "message": "5.1.1 gone"}
    ]
    assert smtp_server.received[0].rcpt_tos == ["ok@example.org"]


async def test_scheduled_mail_is_not_sent_early(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    soon = datetime.now(UTC) + timedelta(milliseconds=400)
    message_id = await mailer.enqueue(message(), send_at=soon)
    await drain(mailer)
    assert smtp_server.received == []
    assert (await mailer.status(message_id)).status == "queued"
    await asyncio.sleep(0.5)
    await drain(mailer)
    assert len(smtp_server.received) == 1


async def test_expired_mail_is_dropped(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    message_id = await mailer.enqueue(message(), expires_at=datetime.now(UTC) + timedelta(milliseconds=50))
    await asyncio.sleep(0.1)
    await drain(mailer)
    record = await mailer.status(message_id)
    assert record.status == "expired"
    assert smtp_server.received == []


async def test_retries_that_outlive_expires_at_expire(smtp_server: SmtpServer, store: OutboxStore) -> None:
    smtp_server.faults.mail.extend(["451 4.3.0 later"] * 3)
    mailer = mailer_for(smtp_server, store, RetryPolicy(base=60))
    message_id = await mailer.enqueue(message(), expires_at=datetime.now(UTC) + timedelta(seconds=30))
    await drain(mailer)
    record = await mailer.status(message_id)
    assert record.status == "expired"
    assert record.attempts == 1


async def test_cancelled_before_claim_is_never_sent(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    message_id = await mailer.enqueue(message())
    await store.cancel(message_id)
    await drain(mailer)
    assert smtp_server.received == []
    assert (await mailer.status(message_id)).status == "cancelled"


async def test_idempotent_enqueue(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    first = await mailer.enqueue(message(1), idempotency_key="signup-1")
    again = await mailer.enqueue(message(1), idempotency_key="signup-1")
    assert first == again
    await drain(mailer)
    assert len(smtp_server.received) == 1


async def test_background_worker_delivers_and_aclose_drains(smtp_server: SmtpServer, store: OutboxStore) -> None:
    mailer = mailer_for(smtp_server, store)
    await mailer.start_worker(poll_interval=5.0)
    ids = [await mailer.enqueue(message(i)) for i in range(10)]
    for _ in range(100):
        if len(smtp_server.received) == 10:
            break
        await asyncio.sleep(0.02)  # woken by enqueue, not by the 5 s poll
    assert len(smtp_server.received) == 10
    await mailer.aclose()
    assert {(await store.get(i)).status for i in ids} == {"sent"}


async def test_stop_mid_delivery_leaves_nothing_leased(smtp_server: SmtpServer, store: OutboxStore) -> None:
    smtp_server.faults.delay = 0.2
    mailer = mailer_for(smtp_server, store)
    for i in range(40):
        await mailer.enqueue(message(i))
    transport = SmtpTransport(ConnectionConfig(host="127.0.0.1", port=smtp_server.port, security="none"))
    worker = Worker(store, transport, FAST, concurrency=8, grace=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    worker.stop()
    await task
    counts = await store.counts()
    assert "sending" not in counts
    assert counts.get("queued", 0) + counts.get("sent", 0) == 40
    assert counts.get("queued", 0) > 0


async def test_postgresql_workers_wake_on_notify_from_another_process(smtp_server: SmtpServer) -> None:
    from tests.databases import require_postgres, reset_postgres

    url = await require_postgres()
    await reset_postgres(url)
    worker_store = await OutboxStore.open(url)
    api_store = await OutboxStore.open(url)  # another process's connection pool
    transport = SmtpTransport(ConnectionConfig(host="127.0.0.1", port=smtp_server.port, security="none"))
    worker = Worker(worker_store, transport, FAST, poll_interval=60.0)  # a poll would come far too late
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)  # the worker is idle, listening
    sender = Mailer(transport=SmtpTransport(transport.config), default_sender="app@example.com", outbox=api_store)
    await sender.enqueue(message())
    for _ in range(250):
        if smtp_server.received:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    assert len(smtp_server.received) == 1
    await transport.aclose()
    await sender.aclose()
    await worker_store.close()
