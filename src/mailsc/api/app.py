"""``create_app(settings)``: the FastAPI application and its lifespan (outbox, transport, embedded worker)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..mailer import Mailer
from ..outbox.store import OutboxStore
from ..process import freeze_startup_heap
from ..web import install as install_web
from . import problems
from .deps import Services
from .middleware import RequestContext
from .routes import health, messages, templates
from .worker_process import WorkerProcess

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, run_worker: bool = True, worker_process: bool = False, freeze_heap: bool = False
) -> FastAPI:
    """The mailsc HTTP service. ``run_worker`` delivers from inside this process; with ``worker_process`` too, from
    a ``mailsc worker`` child this process starts and watches (``mailsc serve`` on a multi-core host; the child
    reads its settings from the environment, as ``serve`` did). Without ``run_worker`` the API only accepts, and
    ``mailsc worker`` processes deliver. ``freeze_heap``: the app owns its process
    (``mailsc serve``), so once started it takes its long-lived objects out of the garbage collector's full
    passes (``mailsc.process.freeze_startup_heap``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await OutboxStore.open(settings.database_url.get_secret_value())
        mailer = Mailer.from_env(settings, outbox=store)
        services = app.state.services = Services(settings=settings, mailer=mailer, store=store)
        if run_worker and worker_process:
            services.worker_process = WorkerProcess()
            await services.worker_process.start()
            mailer.wake_elsewhere(services.worker_process.wake)
        elif run_worker:
            await mailer.start_worker()
        reloads = _reload_on_sighup(mailer, services.worker_process)
        if freeze_heap:
            freeze_startup_heap()
        where = "process" if services.worker_process is not None else "embedded" if run_worker else None
        logger.info("service.started", extra={"worker": where, "transport": mailer.transport.name})
        try:
            yield
        finally:
            reloads()
            if services.worker_process is not None:
                await services.worker_process.stop()
            await mailer.aclose()
            logger.info("service.stopped")

    app = FastAPI(
        title="mailsc",
        version=__version__,
        summary="Durable, pooled, verified-TLS email for Python web apps.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(messages.router)
    app.include_router(templates.router)
    app.include_router(health.router)
    install_web(app, settings)  # the dev inbox / message log pages at /
    app.add_middleware(RequestContext, max_body=settings.max_request_size)
    return app


def _reload_on_sighup(mailer: Mailer, worker: WorkerProcess | None = None) -> Callable[[], None]:
    """SIGHUP re-reads the configuration (``.env``, ``*_FILE`` secrets) and rebuilds the transport in place.
    Returns the function that removes the handler."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        if worker is not None:
            worker.reload()
        task = loop.create_task(mailer.reload_from_env())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        return lambda: None

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
