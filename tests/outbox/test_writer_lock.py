"""SQLite writers of several processes queue on one ``flock`` (``<database>-writer.lock``) instead of SQLite's
sleeping busy handler: a write waits while another process holds the lock and goes through as soon as it is let go.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from mailsc import Message, render
from mailsc.outbox import NewMessage, OutboxStore, fingerprint

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()  # hold the lock until the test says so
"""


def _message(n: int) -> NewMessage:
    envelope = render(Message(**{"from": "app@example.com"}, to=f"user{n}@example.org", subject="hi", text="body"))
    return NewMessage(envelope, fingerprint(f"message {n}"), None, None, None, (), {})


async def test_a_write_waits_for_another_process_holding_the_writer_lock(tmp_path: Path) -> None:
    database = tmp_path / "outbox.db"
    lock = tmp_path / "outbox.db-writer.lock"
    store = await OutboxStore.open(f"sqlite:///{database}")
    try:
        await store.add(_message(0))  # the lock is free: goes straight through
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(lock), stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert (await holder.stdout.readline()).strip() == b"locked"
            pending = asyncio.ensure_future(store.add(_message(1)))
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            assert not done, "the write went ahead while another process held the writer lock"
            holder.stdin.write(b"\n")
            await holder.stdin.drain()
            result = await asyncio.wait_for(pending, timeout=30)
        finally:
            if holder.returncode is None:
                holder.kill()
            await holder.wait()
        record = await store.get(result.id)
        assert record.status == "queued"
        assert (await store.counts()).get("queued") == 2
    finally:
        await store.close()


async def test_two_stores_on_one_file_both_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    first, second = await OutboxStore.open(url), await OutboxStore.open(url)
    try:
        results = await asyncio.gather(
            *(first.add(_message(n)) for n in range(0, 100)), *(second.add(_message(n)) for n in range(100, 200))
        )
        assert len({r.id for r in results}) == 200
        assert all(not r.replayed for r in results)
    finally:
        await first.close()
        await second.close()


async def test_an_in_memory_database_has_no_writer_lock() -> None:
    store = await OutboxStore.open("sqlite://")
    try:
        await store.add(_message(0))
        assert store._writer_lock is None
    finally:
        await store.close()
