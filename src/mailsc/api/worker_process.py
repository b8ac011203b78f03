"""``mailsc serve``'s delivery worker in a process of its own, started and watched by the API process.

One event loop is one core. With the worker inside the API process, a host's second core sat idle, and on
PostgreSQL the HTTP side took most of the loop while delivery lagged (accepting ~2,700/s, delivering 670/s). So on
a host with two or more cores ``serve`` runs ``mailsc worker`` as a child: the same code and settings (the child
reads the same environment and ``.env``), restarted if it dies, stopped (SIGTERM: drain, then exit) with the API,
and given SIGHUP when the API reloads. The child serves its health routes on a loopback socket the API bound for
it (``--status-fd``); the API reads them for ``/readyz``, the dev inbox banner and ``/metrics``, since the breaker,
the connections and the delivery counters live in the child. The child watches its parent (``--parent-pid``) and
stops if the API process is gone, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import httpx

from .deps import TransportProblem

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0
WAKE_SECONDS = 0.005
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after 1, 2, 3 ... failures in a row
STABLE_SECONDS = 60.0  # a child that ran this long starts the count again
STOP_MARGIN_SECONDS = 5.0  # on top of the worker's own --grace before SIGKILL


class WorkerProcess:
    """Runs and supervises one ``mailsc worker`` child of this process."""

    def __init__(self, *, grace: float = 30.0) -> None:
        self.grace = grace
        self._socket = socket.create_server(("127.0.0.1", 0))  # kept for the children's lifetime: a stable port
        self.port: int = self._socket.getsockname()[1]
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=POLL_SECONDS)
        self._child: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._ready: tuple[int, dict[str, Any]] | None = None  # the child's last /readyz: status and body
        self._started_at = 0.0
        self._woken_at = 0.0
        self._wake_pending: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.returncode is None else None

    async def start(self) -> None:
        await self._spawn()
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise())
        self._poller = loop.create_task(self._poll())

    async def _spawn(self) -> None:
        fd = self._socket.fileno()
        command = [sys.executable, "-m", "mailsc", "worker", "--status-fd", str(fd), "--parent-pid", str(os.getpid())]
        command += ["--grace", str(self.grace)]
        # its own session: a Ctrl-C at a terminal reaches the API process, which then stops the child itself
        self._child = await asyncio.create_subprocess_exec(*command, pass_fds=(fd,), start_new_session=True)
        self._ready = None
        self._started_at = time.monotonic()
        logger.info("worker_process.started", extra={"pid": self._child.pid})

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            assert self._child is not None
            code = await self._child.wait()
            if self._stopping:
                return
            self._ready = None
            if time.monotonic() - self._started_at > STABLE_SECONDS:
                failures = 0  # it had been running fine: a crash now is not part of a crash loop
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            logger.error(
                "worker_process.exited", extra={"pid": self._child.pid, "code": code, "restart_in_seconds": delay}
            )
            failures += 1
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn()

    async def _poll(self) -> None:
        while not self._stopping:
            await self.readiness()
            await asyncio.sleep(POLL_SECONDS)

    async def readiness(self) -> tuple[int, dict[str, Any]] | None:
        """The child's ``/readyz`` now (status, body), or None when it does not answer."""
        try:
            answer = await self._client.get("/readyz")
            self._ready = (answer.status_code, answer.json())
        except (httpx.HTTPError, ValueError):
            self._ready = None
        return self._ready

    def problem(self) -> TransportProblem | None:
        """Why delivery is paused, as the child last reported it (polled every few seconds)."""
        if self.pid is None:
            return TransportProblem(
                "worker",
                "WorkerProcessDown",
                "the delivery worker process is not running",
                "it is restarted by `mailsc serve`; its exit is in the service log",
                "the delivery worker process is not running (it is restarted by `mailsc serve`)",
            )
        if self._ready is None or self._ready[0] != 503:
            return None
        paused = self._ready[1].get("delivery")
        if not isinstance(paused, dict):
            return None
        hint = paused.get("hint")
        return TransportProblem(
            _text(paused.get("transport")),
            _text(paused.get("error")),
            _text(paused.get("cause")),
            hint if isinstance(hint, str) else None,
            _text(paused.get("description")),
        )

    async def metrics(self) -> str | None:
        """The child's ``/metrics`` exposition, or None when it does not answer."""
        try:
            answer = await self._client.get("/metrics")
        except httpx.HTTPError:
            return None
        return answer.text if answer.status_code == 200 else None

    def wake(self) -> None:
        """Mail was accepted: SIGUSR1 makes the child look for due mail now rather than at its next poll. At most
        one signal per ``WAKE_SECONDS``; one asked for meanwhile is sent at the end of it, so none is lost."""
        if self._wake_pending is not None:
            return
        wait = self._woken_at + WAKE_SECONDS - time.monotonic()
        if wait > 0:
            self._wake_pending = asyncio.get_running_loop().call_later(wait, self._signal_wake)
        else:
            self._signal_wake()

    def _signal_wake(self) -> None:
        self._wake_pending = None
        self._woken_at = time.monotonic()
        # Only once the child has answered on its status socket: it installs its SIGUSR1 handler before serving
        # it, and before that SIGUSR1's default action would kill it. Until then it looks for due mail by itself.
        if self.pid is not None and self._ready is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGUSR1)

    def reload(self) -> None:
        """Pass SIGHUP on: the child re-reads the configuration too."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGHUP)

    async def stop(self) -> None:
        """SIGTERM the child (it drains in-flight sends for up to ``grace``), SIGKILL it if it outlasts that."""
        self._stopping = True
        if self._wake_pending is not None:
            self._wake_pending.cancel()
        for task in (self._poller, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        child = self._child
        if child is not None and child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), self.grace + STOP_MARGIN_SECONDS)
            except TimeoutError:
                child.kill()
                await child.wait()
        await self._client.aclose()
        self._socket.close()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
