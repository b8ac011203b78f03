"""``mailsc worker --status-port``: a worker's own ``/healthz``, ``/readyz`` and ``/metrics``.

A worker process has no API, yet it is where delivery happens: its sent/deferred/failed counters, its delivery
latency, and its transport's circuit breaker live there, not in the API processes. So a worker can serve the same
three routes as the API (the same ``health`` router, on the worker's own mailer and outbox): Prometheus scrapes each
worker, and an orchestrator's readiness probe sees a broken SMTP setup where it is noticed. Served by uvicorn inside
the worker's event loop; the worker keeps its own signal handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from ..config import Settings
from ..mailer import Mailer
from ..outbox.store import OutboxStore
from . import problems
from .deps import Services
from .routes import health


def create_status_app(settings: Settings, mailer: Mailer, store: OutboxStore) -> FastAPI:
    """The three health routes of the API, answering for this worker's mailer and outbox."""
    app = FastAPI(title="mailsc worker", docs_url=None, redoc_url=None, openapi_url=None)
    problems.install(app)
    app.include_router(health.router)
    app.state.services = Services(settings=settings, mailer=mailer, store=store)
    return app


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the worker starts, so a port in use is a one-line start-up error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} for --status-port: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers: the worker's own handlers drain it, then stop this server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StatusServer:
    """The status app served on an already bound socket, as a task of the running loop."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None)
        self._server = _QuietServer(config)
        self._socket = sock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._socket]))

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()
