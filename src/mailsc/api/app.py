"""``create_app(settings)``: the FastAPI application and its lifespan (outbox, transport, embedded worker)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..delivery.retry import RetryPolicy
from ..mailer import Mailer
from ..outbox.store import OutboxStore
from ..transports.base import Transport
from ..transports.capture import CaptureTransport
from ..transports.smtp import SmtpTransport
from . import problems
from .deps import Services
from .middleware import RequestContext
from .routes import health, messages

logger = logging.getLogger(__name__)


def build_transport(settings: Settings) -> Transport:
    """SMTP when a server is configured; otherwise mail is captured for the dev inbox."""
    if settings.smtp is None:
        logger.warning(
            "service.capture_mode",
            extra={
                "detail": "no SMTP server configured (MAILSC_SMTP_URL / MAILSC_SMTP_HOST): mail is captured, not sent"
            },
        )
        return CaptureTransport()
    return SmtpTransport(settings.smtp)


def create_app(settings: Settings, *, run_worker: bool = True) -> FastAPI:
    """The mailsc HTTP service. ``run_worker`` delivers from inside this process (``mailsc serve``); without it
    the API only accepts, and ``mailsc worker`` processes deliver."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await OutboxStore.open(settings.database_url.get_secret_value())
        mailer = Mailer(
            transport=build_transport(settings),
            default_sender=settings.sender,
            max_size=settings.max_message_size,
            max_recipients=settings.max_recipients,
            outbox=store,
            retry_policy=RetryPolicy(max_age=settings.retry_max_age),
        )
        app.state.services = Services(settings=settings, mailer=mailer, store=store)
        if run_worker:
            await mailer.start_worker()
        logger.info("service.started", extra={"worker": run_worker, "transport": mailer.transport.name})
        try:
            yield
        finally:
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
    app.include_router(health.router)
    app.add_middleware(RequestContext, max_body=settings.max_request_size)
    return app
