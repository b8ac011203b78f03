"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
import dataclasses

from fastapi import APIRouter, Response

from ... import metrics
from ...delivery.router import FailoverTransport
from ...errors import OutboxUnavailableError
from ..deps import ServicesDep
from ..problems import ApiError, problem_responses
from ..schemas import Health
from ..worker_process import WorkerProcess

router = APIRouter(tags=["health"], responses=problem_responses(503))


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (no dependencies checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health)
async def readyz(svc: ServicesDep) -> Health:
    """Ready to accept mail: the database answers and a transport is configured."""
    try:
        await svc.store.ping()
    except OutboxUnavailableError as exc:
        raise ApiError(503, f"database: {exc}", slug="not-ready", headers={"Retry-After": "5"}) from None
    if svc.worker_process is not None:
        return await _worker_process_readiness(svc.worker_process)
    name = svc.mailer.transport.name
    problem = svc.delivery_problem()
    if problem is not None:
        raise ApiError(  # its description ends with the hint, the fix `mailsc doctor` would give
            503,
            problem.detail,
            slug="transport-unavailable",
            headers={"Retry-After": "30"},
            extensions={"delivery": dataclasses.asdict(problem)},
        )
    checks = {"database": "ok", "transport": name}
    transport = svc.mailer.transport
    if isinstance(transport, FailoverTransport):
        # Mail still goes out through a healthy member, so still ready; each paused member is named with its cause.
        for member, cause in transport.health():
            checks[f"transport.{member}"] = "ok" if cause is None else f"unavailable ({type(cause).__name__}): {cause}"
        if any(cause is not None for _, cause in transport.health()):
            return Health(status="degraded", checks=checks)
    return Health(status="ready", checks=checks)


async def _worker_process_readiness(worker: WorkerProcess) -> Health:
    """Ready as `mailsc serve`'s worker process says it is (its breaker and transport live there)."""
    answer = await worker.readiness()
    if answer is None:
        raise ApiError(
            503,
            "the delivery worker process does not answer (mailsc serve restarts it; its exit is in the log)",
            slug="worker-unavailable",
            headers={"Retry-After": "5"},
        )
    status, body = answer
    if status != 200:
        slug = str(body.get("type", "")).rsplit("/", 1)[-1] or "not-ready"
        paused = body.get("delivery")
        raise ApiError(
            503,
            str(body.get("detail", "the delivery worker process is not ready")),
            slug=slug,
            headers={"Retry-After": "30"},
            extensions={"delivery": paused} if isinstance(paused, dict) else None,
        )
    checks = {str(k): str(v) for k, v in dict(body.get("checks") or {}).items()}
    checks["worker"] = f"process {worker.pid}"
    return Health(status=str(body.get("status", "ready")), checks=checks)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus(svc: ServicesDep) -> Response:
    """Prometheus exposition: counters, latency histograms, queue depth by status, open SMTP connections."""
    # With a worker process, the delivery series (and the queue depth, counted once per scrape) come from it and are
    # served with this process's as one set; else this process holds them all.
    worker = await svc.worker_process.metrics() if svc.worker_process is not None else None
    if worker is None:
        with contextlib.suppress(OutboxUnavailableError):  # the other metrics matter most when the database is down
            metrics.set_queue_depth(await svc.store.counts())
        connections = getattr(svc.mailer.transport, "open_connections", None)
        if isinstance(connections, int) and svc.worker_process is None:
            metrics.set_connections_open(connections)
    body, content_type = metrics.render(worker)
    return Response(body, media_type=content_type)
