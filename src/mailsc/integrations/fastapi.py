"""mailsc inside your own FastAPI app: a lifespan that runs the mailer, and ``MailerDep`` for your endpoints.

::

    from mailsc import Message
    from mailsc.integrations.fastapi import MailerDep, mailsc_lifespan

    app = FastAPI(lifespan=mailsc_lifespan())            # or mailsc_lifespan(your_own_lifespan)

    @app.post("/send-notification/{email}", status_code=202)
    async def notify(email: str, mailer: MailerDep) -> dict[str, str]:
        return {"id": await mailer.enqueue(Message(to=email, subject="Hi", text="..."))}

At start-up the lifespan reads ``Settings`` (``MAILSC_*`` variables and ``.env``), opens the outbox
(``MAILSC_DATABASE_URL``, by default ``./mailsc.db`` in the folder the app is started from) and runs the delivery
worker in the app's process; at shutdown it stops claiming, finishes in-flight sends and closes. Mail accepted by
``enqueue`` is committed before the endpoint answers, so it survives a crash or a deploy. Any number of app
processes (``uvicorn --workers 4``) may share one SQLite file or PostgreSQL database: each message is claimed by one
worker at a time under a lease, so none is sent twice by the pool (DESIGN.md §6).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from ..config import Settings
from ..mailer import Mailer

logger = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def mailsc_lifespan(
    lifespan: Lifespan | None = None,
    *,
    settings: Settings | None = None,
    run_worker: bool = True,
    **worker_options: Any,
) -> Lifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` that runs a ``Mailer`` built from ``settings`` (read from the
    environment at start-up when not given), around the app's own ``lifespan`` if one is passed.

    ``run_worker=False`` only accepts mail (separate ``mailsc worker`` processes deliver it); ``worker_options``
    go to ``Worker`` (``concurrency``, ``poll_interval``, ``grace``...). When a test overrides ``get_mailer`` in
    ``app.dependency_overrides``, the lifespan builds nothing and the test's mailer is used.
    """

    @asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[Any]:
        if get_mailer in app.dependency_overrides:
            async with _inner(lifespan, app) as state:
                yield state
            return
        mailer = Mailer.from_env(settings if settings is not None else Settings())
        try:
            await mailer.outbox_store()  # open and migrate now: a bad database URL fails the start, not a request
            if run_worker:
                await mailer.start_worker(**worker_options)
            app.state.mailer = mailer
            logger.info("integration.started", extra={"transport": mailer.transport.name, "worker": run_worker})
            async with _inner(lifespan, app) as state:
                yield state
        finally:
            await mailer.aclose()
            logger.info("integration.stopped")

    return wrapped


@asynccontextmanager
async def _inner(lifespan: Lifespan | None, app: FastAPI) -> AsyncIterator[Any]:
    if lifespan is None:
        yield None
        return
    async with lifespan(app) as state:
        yield state


def get_mailer(request: Request) -> Mailer:
    """The app's ``Mailer`` (the dependency behind ``MailerDep``; override it in tests)."""
    mailer = getattr(request.app.state, "mailer", None)
    if not isinstance(mailer, Mailer):
        raise RuntimeError("no Mailer on this app: create it with FastAPI(lifespan=mailsc_lifespan())")
    return mailer


MailerDep = Annotated[Mailer, Depends(get_mailer)]
"""``async def endpoint(mailer: MailerDep)``: the ``Mailer`` run by ``mailsc_lifespan``."""
