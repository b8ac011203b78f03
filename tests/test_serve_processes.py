"""`mailsc serve --processes 2`: two server processes on one port and one SQLite outbox, each with its delivery
worker; every accepted message is delivered exactly once."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.delivery.test_processes import message_ids, wait_until, worker_env
from tests.smtpd import SmtpServer

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@asynccontextmanager
async def serving(env: dict[str, str], cwd: Path, *options: str) -> AsyncIterator[tuple[Process, httpx.AsyncClient]]:
    """`mailsc serve OPTIONS` on a free port, and a client for it once it answers; killed on exit if still up."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mailsc", "serve", "--port", str(port), *options),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(400):  # until it listens
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            yield process, client
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_server_processes_share_the_port_and_deliver_each_message_once(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
        async with serving(env, tmp_path, "--processes", "2") as (process, client):
            await wait_until(lambda: len(children(process.pid)) >= 2, 30)

            async def send(i: int) -> str:
                answer = await client.post(
                    "/v1/messages", json={"to": f"u{i}@example.org", "subject": f"m {i}", "text": "hi"}
                )
                assert answer.status_code == 202, answer.text
                return str(answer.json()["id"])

            ids = await asyncio.gather(*(send(i) for i in range(300)))
            await wait_until(lambda: len(server.received) >= 300, 60)
            statuses = {(await client.get(f"/v1/messages/{i}")).json()["status"] for i in ids[:20]}
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        assert len(set(ids)) == 300
        received = message_ids(server)
        assert len(received) == 300
        assert max(received.values()) == 1
        assert statuses == {"sent"}
