"""examples/notification_app.py run by uvicorn, as a user runs it: accepted mail survives SIGKILL of the app
(what BackgroundTasks cannot do), and app processes sharing one outbox deliver each message exactly once."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mailsc.outbox import OutboxStore
from tests.databases import require_postgres, reset_postgres
from tests.smtpd import SmtpServer, closed_port

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


def app_env(database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("MAILSC_", "SMTP_", "MAIL_"))}
    env.update(
        MAILSC_DATABASE_URL=database_url,
        MAILSC_SMTP_HOST="127.0.0.1",
        MAILSC_SMTP_PORT=str(smtp_port),
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM="App <app@example.com>",
        **extra,
    )
    return env


class App:
    """``uvicorn examples.notification_app:app`` in a child process, its log in a file (a pipe would fill up)."""

    def __init__(self, env: dict[str, str], log: Path, *options: str) -> None:
        self.env, self.log, self.options = env, log, options
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> App:
        self.port = await closed_port()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "uvicorn",
                "examples.notification_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                *self.options,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                if self.process.returncode is not None:
                    raise AssertionError(f"the app exited: {self.log.read_text()[-3000:]}")
                try:
                    await client.get(f"{self.url}/openapi.json")
                    return self
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise AssertionError(f"the app did not start: {self.log.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait; a clean SIGTERM shutdown reads as 0 (uvicorn re-raises the signal it handled)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await self.process.wait()
        return 0 if sig == signal.SIGTERM and code == -signal.SIGTERM else code


async def until(predicate: Callable[[], bool], seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")


def recipients_of(server: SmtpServer) -> Counter[str]:
    return Counter(r for received in server.received for r in received.rcpt_tos)


async def test_accepted_mail_survives_sigkill_and_a_restarted_app_delivers_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    smtp_port = await closed_port()  # the SMTP server is down: nothing can be delivered before the kill
    log = tmp_path / "app.log"
    first = await App(app_env(url, smtp_port), log).start()
    async with httpx.AsyncClient(base_url=first.url) as client:
        response = await client.post("/send-notification/ann@example.org", params={"message": "Welcome!"})
    assert response.status_code == 202
    message_id = response.json()["id"]
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL  # no shutdown code ran

    store = await OutboxStore.open(url)
    assert (await store.get(message_id)).status in ("queued", "deferred")  # killed before delivery
    async with SmtpServer() as server:
        await server.stop()
        await server.start(smtp_port)  # the SMTP server is back
        second = await App(app_env(url, smtp_port), log).start()
        await until(lambda: len(server.received) == 1)
        async with httpx.AsyncClient(base_url=second.url) as client:
            status = (await client.get(f"/notifications/{message_id}")).json()
        assert await second.stop() == 0
    assert status["status"] == "sent"
    assert recipients_of(server) == Counter({"ann@example.org": 1})
    sent = email.message_from_bytes(server.received[0].data, policy=email.policy.default)
    assert sent["From"] == "App <app@example.com>"
    assert "Welcome!" in sent.as_string()
    assert (await store.get(message_id)).status == "sent"
    await store.close()
    requests = [json.loads(line) for line in log.read_text().splitlines() if '"http.request"' in line]
    assert any(r["method"] == "POST" and r["status"] == 202 for r in requests)  # (the address in the path is masked)
    assert all(isinstance(r["ms"], float | int) for r in requests)  # JSON lines with the request latency


async def post_many(urls: list[str], count: int, concurrency: int = 32) -> list[int]:
    """``count`` notifications spread over ``urls``, ``concurrency`` at a time; returns the status codes."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def post() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                response = await client.post(f"{urls[i % len(urls)]}/send-notification/user{i}@example.org")
                statuses.append(response.status_code)

        await asyncio.gather(*(post() for _ in range(concurrency)))
    return statuses


async def deliver_under_load(apps: list[App], url: str, server: SmtpServer, count: int) -> None:
    statuses = await post_many([a.url for a in apps], count)
    assert Counter(statuses) == Counter({202: count})
    store = await OutboxStore.open(url)
    for _ in range(3000):
        if (await store.counts()).get("sent") == count:
            break
        await asyncio.sleep(0.05)
    for app in apps:
        assert await app.stop() == 0  # nothing more can arrive after this
    assert await store.counts() == {"sent": count}
    await store.close()
    assert recipients_of(server) == Counter({f"user{i}@example.org": 1 for i in range(count)})


@pytest.mark.slow
async def test_two_uvicorn_workers_on_one_sqlite_outbox_deliver_each_message_once(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = app_env(url, smtp_server.port, MAILSC_LOG_LEVEL="warning")
    app = await App(env, tmp_path / "app.log", "--workers", "2").start()
    await deliver_under_load([app], url, smtp_server, 1000)


@pytest.mark.slow
async def test_two_app_processes_on_one_postgresql_outbox_deliver_each_message_once(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    url = await require_postgres()
    await reset_postgres(url)
    env = app_env(url, smtp_server.port, MAILSC_LOG_LEVEL="warning")
    apps = [await App(env, tmp_path / f"app{i}.log").start() for i in range(2)]
    await deliver_under_load(apps, url, smtp_server, 300)  # fewer: the SQLite test above carries the 1,000
