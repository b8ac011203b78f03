"""Request dependencies: the app's services, API-key authentication, rate limiting, content type checks."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from ..config import Settings
from ..errors import DeliveryError
from ..keys import hash_key, same_key
from ..mailer import Mailer
from ..outbox.store import OutboxStore
from .problems import ApiError

if TYPE_CHECKING:
    from .worker_process import WorkerProcess

_KEY_CACHE_SECONDS = 5.0
# What the ``Idempotency-Key`` header's declared pattern accepts, for code that checks it without FastAPI.
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class TransportProblem:
    """Why delivery is paused: the transport's circuit breaker is open because its setup is broken."""

    transport: str
    error: str  # the exception's class name, e.g. ``SmtpAuthError``
    cause: str  # what went wrong
    hint: str | None  # the fix, as ``mailsc doctor`` would give it
    description: str  # the cause followed by its hint

    @classmethod
    def of(cls, transport: str, problem: DeliveryError) -> TransportProblem:
        cause = str(problem.args[0]) if problem.args else type(problem).__name__
        return cls(transport, type(problem).__name__, cause, problem.hint, str(problem))

    @property
    def detail(self) -> str:
        return f"transport {self.transport} unavailable ({self.error}): {self.description}"


@dataclass
class Services:
    """What the routes need, built once in the app's lifespan. ``worker_process``: the delivery worker runs in a
    process of its own (``mailsc serve`` on a multi-core host), and reports its transport's health from there."""

    settings: Settings
    mailer: Mailer
    store: OutboxStore
    worker_process: WorkerProcess | None = None
    _keys_exist_until: float = 0.0
    _keys_exist: bool = False
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _keys_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def delivery_problem(self) -> TransportProblem | None:
        """Why delivery is paused, from the worker in this process or the worker process; None while it runs."""
        if self.worker_process is not None:
            return self.worker_process.problem()
        problem = self.mailer.transport_problem()
        return None if problem is None else TransportProblem.of(self.mailer.transport.name, problem)

    async def keys_required(self) -> bool:
        """True when a bootstrap key or any stored key exists (cached a few seconds)."""
        if self.settings.api_key is not None:
            return True
        if time.monotonic() >= self._keys_exist_until:
            # One query per expiry: without the lock, every request arriving while it runs ran it again
            # (measured: ~50 identical queries per expiry under load).
            async with self._keys_lock:
                if time.monotonic() >= self._keys_exist_until:
                    self._keys_exist = await self.store.has_api_keys()
                    self._keys_exist_until = time.monotonic() + _KEY_CACHE_SECONDS
        return self._keys_exist

    def allow(self, client: str) -> bool:
        """Token bucket per API key: ``rate_limit`` requests per second, bursts up to one second's worth."""
        rate = self.settings.rate_limit
        if rate <= 0:
            return True
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1, now)
        return True


async def services(request: Request) -> Services:  # async: a plain def would cost a thread-pool hop per request
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def authenticated(request: Request, svc: ServicesDep) -> str:
    """The caller's identity (key id, ``bootstrap``, or ``anonymous`` when no key is configured at all)."""
    if not await svc.keys_required():
        client = "anonymous"
    else:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>'",
                slug="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = await identify_key(svc, key.strip())
        if found is None:
            raise ApiError(
                401,
                "unknown or revoked API key",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        client = found
    if not svc.allow(client):
        raise ApiError(
            429,
            f"more than {svc.settings.rate_limit:g} requests per second for this key",
            slug="rate-limited",
            headers={"Retry-After": "1"},
        )
    return client


Caller = Annotated[str, Depends(authenticated)]


async def identify_key(svc: Services, key: str) -> str | None:
    """Whose API key this is: ``bootstrap`` (``MAILSC_API_KEY``), a stored key's id, or None (unknown, revoked).
    Also used by the web pages' login form."""
    bootstrap = svc.settings.api_key
    if bootstrap is not None and same_key(key, bootstrap.get_secret_value()):
        return "bootstrap"
    record = await svc.store.find_api_key(hash_key(key))
    return record.id if record is not None else None


# Dependencies are ``async def`` on purpose: a plain ``def`` makes FastAPI hop to a worker thread on every request.
async def json_body(content_type: Annotated[str | None, Header()] = None) -> None:
    """Refuse a body that is not JSON with 415 before trying to parse it."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(
            415, f"send the body as application/json (got {media or 'no Content-Type'})", slug="unsupported-media-type"
        )


async def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=r"^[\x21-\x7e]{1,255}$",
            description="1-255 printable ASCII characters, no spaces; a retry with the same key and body returns "
            "the first answer",
        ),
    ] = None,
) -> str | None:
    return idempotency_key
