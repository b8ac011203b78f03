"""The real app for the web page tests: served by uvicorn on a loopback port (for the browser) or through an ASGI
client with its lifespan running (for HTTP-level checks), on a SQLite outbox with the capture transport unless a
test asks for SMTP; plus a loopback HTTP server that counts the requests a mail's HTML would make."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from mailsc.api.app import create_app
from mailsc.api.deps import Services
from mailsc.config import Settings
from tests.api.conftest import make_settings
from tests.smtpd import SmtpServer


def settings_for(tmp_path: Path, server: SmtpServer | None = None, **overrides: Any) -> Settings:
    return make_settings(tmp_path, server, **overrides)


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


@dataclass
class Served:
    url: str
    app: FastAPI

    @property
    def services(self) -> Services:
        return services(self.app)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    """``create_app(settings)`` under uvicorn on 127.0.0.1, port chosen by the OS, in the running event loop."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", ws="none", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):  # uvicorn has no "started" event to await
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:  # the lifespan failed: uvicorn logged why and exits
            with contextlib.suppress(SystemExit):
                await task
            raise AssertionError("uvicorn did not start the app")
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        try:
            if not task.done():
                await task
        finally:
            sock.close()


@asynccontextmanager
async def client_for(
    settings: Settings, *, base_url: str = "http://127.0.0.1:8025"
) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client (from 127.0.0.1, like a local browser) against the app with its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


class Beacon:
    """A loopback HTTP server that answers every request with a 1x1 GIF and counts the paths asked for."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        path = head.split(b" ", 2)[1].decode("latin-1")
        self.hits[path.split("?", 1)[0]] += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nAccess-Control-Allow-Origin: *\r\n"
            + f"Content-Length: {len(_GIF)}\r\nConnection: close\r\n\r\n".encode()
            + _GIF
        )
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> Beacon:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
