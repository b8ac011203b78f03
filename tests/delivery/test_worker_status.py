"""``mailsc worker --status-port``: a worker process answers /healthz, /readyz and /metrics for its own delivery."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from mailsc.outbox import OutboxStore
from tests.delivery.test_processes import fill, worker_env
from tests.smtpd import SmtpServer, closed_port
from tests.test_serve_processes import free_port

pytestmark = pytest.mark.timeout(120)


async def start(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailsc",
        "worker",
        "--status-port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def get_until(client: httpx.AsyncClient, path: str, done: object, seconds: float = 30) -> httpx.Response:
    """GET ``path`` until ``done(response)`` holds (the worker starts, delivers, or notices a broken setup)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            answer = await client.get(path)
            if done(answer):  # type: ignore[operator]
                return answer
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{path} never reached the expected answer")
        await asyncio.sleep(0.05)


async def stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 30)


async def test_a_worker_serves_its_own_delivery_metrics_and_readiness(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    store = await OutboxStore.open(url)
    await fill(store, 5)
    await store.close()
    port = free_port()
    async with SmtpServer() as server:
        process = await start(worker_env(url, server), port)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                health = await get_until(client, "/healthz", lambda r: r.status_code == 200)
                assert health.json()["status"] == "ok"
                sent = ("mailsc_messages_sent_total 5.0", 'mailsc_queue_depth{status="sent"} 5.0')
                # the counter moves at the SMTP 250, the depth once the outcome is committed: wait for both
                await get_until(client, "/metrics", lambda r: all(line in r.text for line in sent))
                ready = await client.get("/readyz")
                assert ready.status_code == 200
                assert ready.json()["checks"] == {"database": "ok", "transport": "smtp"}
                assert (await client.get("/v1/messages")).status_code == 404  # health routes only, no API
        finally:
            assert await stop(process) == 0
    assert len(server.received) == 5


async def test_a_worker_with_a_broken_setup_is_not_ready_and_keeps_the_mail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    store = await OutboxStore.open(url)
    await fill(store, 2)
    port = free_port()
    async with SmtpServer() as server:
        env = worker_env(url, server)
    env["MAILSC_SMTP_PORT"] = str(await closed_port())  # nothing listens there
    process = await start(env, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            answer = await get_until(client, "/readyz", lambda r: r.status_code == 503)
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["type"].endswith("transport-unavailable")
            assert "refused" in problem["detail"]
            assert "mailsc_transport_up" in (await client.get("/metrics")).text
    finally:
        assert await stop(process) == 0
    counts = await store.counts()
    await store.close()
    assert counts.get("sent", 0) == 0
    assert sum(counts.values()) == 2  # both messages kept, to be sent once the setup is fixed


async def test_a_status_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with SmtpServer() as server:
            process = await start(worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server), port)
            assert process.stderr is not None
            stderr = (await process.stderr.read()).decode()
            assert await process.wait() == 1
    assert stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} for --status-port: Address already in use"
    ]
