"""`mailsc serve --worker-process` (the default on a multi-core host): the API process starts a `mailsc worker`
child, restarts it if it dies, stops it with itself, and reports its delivery through /readyz, /metrics and the
dev inbox banner, as if the worker ran inside."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.delivery.test_processes import wait_until, worker_env
from tests.delivery.test_worker_status import get_until
from tests.smtpd import SmtpServer, closed_port
from tests.test_serve_processes import children, serving

pytestmark = pytest.mark.timeout(120)


def workers(pid: int) -> list[int]:
    """The `mailsc worker` children of ``pid`` (start-up may briefly run other children, e.g. `uname`)."""
    found = []
    for child in children(pid):
        try:
            if b"worker" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                found.append(child)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def the_worker(serve: int) -> int:
    """The one `mailsc worker` child of ``serve``, once it has started."""
    await wait_until(lambda: len(workers(serve)) == 1, 30)
    (worker,) = workers(serve)
    return worker


async def post(client: httpx.AsyncClient, n: int) -> str:
    answer = await client.post("/v1/messages", json={"to": f"u{n}@example.org", "subject": f"m {n}", "text": "hi"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_the_worker_process_delivers_and_the_api_reports_it(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
        async with serving(env, tmp_path, "--worker-process") as (process, client):
            worker = await the_worker(process.pid)
            await asyncio.gather(*(post(client, n) for n in range(100)))
            await wait_until(lambda: len(server.received) >= 100, 60)

            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["worker"] == f"process {worker}"
            # the delivery series come from the worker process, the accepted count from this one: one set
            # the sent count moves at the 250, the depth once the outcome is committed
            sent = 'mailsc_queue_depth{status="sent"} 100.0'
            text = (await get_until(client, "/metrics", lambda r: sent in r.text)).text
            assert "mailsc_messages_accepted_total 100.0" in text
            assert "mailsc_messages_sent_total 100.0" in text
            assert 'mailsc_queue_depth{status="sent"} 100.0' in text
            assert text.count("# TYPE mailsc_messages_sent_total counter") == 1
            assert text.count("# TYPE mailsc_messages_sent_created gauge") == 1

            process.send_signal(signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it caught
            assert await asyncio.wait_for(process.wait(), 60) in (0, -signal.SIGTERM)
            await wait_until(lambda: not alive(worker), 10)
    assert len(server.received) == 100


async def test_a_dead_worker_process_is_restarted(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
        async with serving(env, tmp_path, "--worker-process") as (process, client):
            first = await the_worker(process.pid)
            os.kill(first, signal.SIGKILL)
            await wait_until(lambda: workers(process.pid) not in ([], [first]), 30)
            (second,) = workers(process.pid)
            await post(client, 1)
            await wait_until(lambda: len(server.received) == 1, 30)
            ready = await client.get("/readyz")
            assert ready.json()["checks"]["worker"] == f"process {second}"


async def test_the_worker_process_stops_when_the_api_process_is_killed(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
        async with serving(env, tmp_path, "--worker-process") as (process, _client):
            worker = await the_worker(process.pid)
            process.kill()  # no chance to stop its child
            await process.wait()
            await wait_until(lambda: not alive(worker), 15)


async def test_a_broken_setup_in_the_worker_process_shows_in_readyz_and_the_banner(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
    env["MAILSC_SMTP_PORT"] = str(await closed_port())
    async with serving(env, tmp_path, "--worker-process") as (_process, client):
        await post(client, 1)
        answer = await get_until(client, "/readyz", lambda r: r.status_code == 503)
        assert answer.status_code == 503
        problem = answer.json()
        assert problem["type"].endswith("transport-unavailable")
        assert "refused" in problem["detail"]
        assert problem["delivery"]["transport"] == "smtp"
        # the banner reads what the API last polled from the worker (every 2 s)
        banner = (await get_until(client, "/messages.json", lambda r: r.json()["banner"])).json()["banner"]
        assert banner is not None
        assert banner["transport"] == "smtp"
        assert "refused" in banner["cause"]
        assert banner["hint"]


async def test_reload_signals_serve_which_passes_it_on_to_its_worker_process(tmp_path: Path) -> None:
    async with SmtpServer() as server:
        env = worker_env(f"sqlite:///{tmp_path / 'outbox.db'}", server)
        async with serving(env, tmp_path, "--worker-process") as (process, _client):
            worker = await the_worker(process.pid)
            reload = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailsc", "reload", env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await reload.communicate()
            assert reload.returncode == 0
            signalled = out.decode().rsplit(":", 1)[1].replace(" ", "").strip().split(",")
            assert str(process.pid) in signalled
            assert str(worker) not in signalled  # serve passes SIGHUP on: one reload, not two
