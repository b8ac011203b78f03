"""The classic ``POST /send-notification/{email}`` endpoint, rebuilt on mailsc.

The tutorial version hands ``aiosmtplib.send`` to ``BackgroundTasks``: the client gets its 200 before anything is
stored, so a deploy, a crash or an SMTP hiccup loses the mail without a trace. Here the endpoint stores the
message durably and answers ``202`` with its id; a delivery worker inside this process sends it through a pooled,
verified-TLS connection and retries what fails for a transient reason. Any number of processes may run this app
against one database; each message is delivered once.

Run it (settings from the environment or ``.env``)::

    MAILSC_SMTP_URL=smtp://user:pass@smtp.example.com:587 MAILSC_MAIL_FROM="App <noreply@example.com>" \\
        uvicorn examples.notification_app:app --workers 2

    curl -X POST localhost:8000/send-notification/ann@example.org -H 'Idempotency-Key: signup-42'
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

from mailsc import Message, MessageError, Settings
from mailsc.errors import MessageNotFoundError
from mailsc.integrations.fastapi import MailerDep, mailsc_lifespan
from mailsc.logs import configure_logging

logger = logging.getLogger("notification_app")


settings = Settings()  # MAILSC_* from the environment and .env; invalid settings stop the start with every problem
configure_logging(settings)  # JSON lines (MAILSC_LOG_FORMAT, MAILSC_LOG_LEVEL), uvicorn's included


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own start-up and shutdown code; the mailer is already running here (``app.state.mailer``)."""
    yield


app = FastAPI(title="notifications", lifespan=mailsc_lifespan(lifespan, settings=settings))


@app.middleware("http")
async def log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One JSON line per request with its latency."""
    started = time.perf_counter()
    response = await call_next(request)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    logger.info(
        "http.request",
        extra={"method": request.method, "path": request.url.path, "status": response.status_code, "ms": latency_ms},
    )
    return response


class Accepted(BaseModel):
    id: str
    status: str = "queued"


@app.post("/send-notification/{email}", status_code=202)
async def send_notification(
    email: str,
    mailer: MailerDep,
    message: str = "Thank you for signing up!",
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Accepted:
    """Accept a notification for ``email``; it is stored before this answers and delivered in the background."""
    try:
        mail = Message(to=email, subject="Notification", text=message, html=f"<p>{html.escape(message)}</p>")
        message_id = await mailer.enqueue(mail, idempotency_key=idempotency_key)
    except MessageError as exc:
        raise HTTPException(status_code=422, detail=exc.errors) from None
    return Accepted(id=message_id)


@app.get("/notifications/{message_id}")
async def notification_status(message_id: str, mailer: MailerDep) -> dict[str, object]:
    """Where a notification is: queued, deferred (will retry), sent, failed..."""
    try:
        record = await mailer.status(message_id)
    except MessageNotFoundError:
        raise HTTPException(status_code=404, detail="no such notification") from None
    return {"id": record.id, "status": record.status, "attempts": record.attempts}
