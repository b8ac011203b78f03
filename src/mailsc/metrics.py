"""Prometheus collectors for the service, on mailsc's own registry.

The collectors live in ``REGISTRY``, not prometheus-client's global default, so several apps (or test cases) in one
process share one set of series and never trip over a duplicate registration. Code records through the functions
below; ``render()`` is what ``GET /metrics`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

REGISTRY = CollectorRegistry()

# Accepted -> sent spans retries with backoff for up to MAILSC_RETRY_MAX_AGE (24 h by default).
LATENCY_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
SMTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

MESSAGES_ACCEPTED = Counter("mailsc_messages_accepted", "Messages accepted into the outbox.", registry=REGISTRY)
MESSAGES_SENT = Counter("mailsc_messages_sent", "Messages delivered to the transport.", registry=REGISTRY)
MESSAGES_DEFERRED = Counter(
    "mailsc_messages_deferred", "Delivery attempts that failed transiently and will be retried.", registry=REGISTRY
)
MESSAGES_FAILED = Counter("mailsc_messages_failed", "Messages that failed permanently.", registry=REGISTRY)
MESSAGES_EXPIRED = Counter(
    "mailsc_messages_expired", "Messages dropped undelivered past their expiry.", registry=REGISTRY
)
DELIVERY_LATENCY = Histogram(
    "mailsc_delivery_latency_seconds",
    "Time from acceptance to successful delivery, retries included.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SMTP_TRANSACTION = Histogram(
    "mailsc_smtp_transaction_seconds",
    "Duration of one send through the transport, successful or not.",
    buckets=SMTP_BUCKETS,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("mailsc_queue_depth", "Messages in the outbox by status.", ["status"], registry=REGISTRY)
SMTP_CONNECTIONS_OPEN = Gauge("mailsc_smtp_connections_open", "Open pooled SMTP connections.", registry=REGISTRY)
TRANSPORT_UP = Gauge(
    "mailsc_transport_up",
    "1 while a transport is usable, 0 while its setup is broken.",
    ["transport"],
    registry=REGISTRY,
)
BREAKER_OPENINGS = Counter(
    "mailsc_breaker_openings",
    "Times a transport was paused because its setup broke.",
    ["transport"],
    registry=REGISTRY,
)

_OUTCOMES: dict[str, Counter] = {
    "sent": MESSAGES_SENT,
    "deferred": MESSAGES_DEFERRED,
    "failed": MESSAGES_FAILED,
    "expired": MESSAGES_EXPIRED,
}
_reported_statuses: set[str] = set()


def record_accepted(n: int = 1) -> None:
    """``n`` messages were committed to the outbox (replays of an idempotency key are not new messages)."""
    MESSAGES_ACCEPTED.inc(n)


def record_outcome(status: str, latency_seconds: float | None = None) -> None:
    """One delivery attempt ended ``sent``, ``deferred``, ``failed`` or ``expired``; for ``sent``, pass the time
    since acceptance."""
    counter = _OUTCOMES.get(status)
    if counter is None:
        raise ValueError(f"unknown delivery outcome {status!r}; expected one of {sorted(_OUTCOMES)}")
    counter.inc()
    if status == "sent" and latency_seconds is not None:
        DELIVERY_LATENCY.observe(max(0.0, latency_seconds))


def observe_send(seconds: float) -> None:
    """One ``transport.send`` took ``seconds``."""
    SMTP_TRANSACTION.observe(seconds)


def set_queue_depth(counts: Mapping[str, int]) -> None:
    """Set the per-status depth; a status reported before and absent from ``counts`` now reads 0."""
    for status in _reported_statuses | set(counts):
        QUEUE_DEPTH.labels(status=status).set(counts.get(status, 0))
    _reported_statuses.update(counts)


def set_connections_open(n: int) -> None:
    """The number of open pooled SMTP connections (summed over transports)."""
    SMTP_CONNECTIONS_OPEN.set(n)


def set_transport_up(transport: str, *, up: bool) -> None:
    TRANSPORT_UP.labels(transport=transport).set(1 if up else 0)


def record_breaker_opened(transport: str) -> None:
    BREAKER_OPENINGS.labels(transport=transport).inc()


def render(worker_exposition: str | None = None) -> tuple[bytes, str]:
    """The exposition text of every mailsc collector and its content type, for ``GET /metrics``.

    ``worker_exposition``: what ``mailsc serve``'s own worker process answered on its ``/metrics``; the two are
    served as one set of series, as one process's would be: counters and histograms added up (``_created``: the
    earlier), gauges as the worker reports them (it holds the connections and the breaker; both read the same
    queue depth)."""
    if worker_exposition is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    return generate_latest(_Merged(_merge(list(REGISTRY.collect()), worker_exposition))), CONTENT_TYPE_LATEST


class _Merged:
    """A registry-shaped holder of already merged families, for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _merge(own: list[Metric], exposition: str) -> list[Metric]:
    families = {family.name: family for family in own}
    # The text format writes a counter's or histogram's ``_created`` as a gauge family of its own: find a parsed
    # family's home by its samples' names too.
    by_sample = {sample.name: family for family in own for sample in family.samples}
    for family in text_string_to_metric_families(exposition):
        mine = families.get(family.name) or next(
            (by_sample[s.name] for s in family.samples if s.name in by_sample), None
        )
        if mine is None:
            families[family.name] = family
            continue
        samples = {(s.name, tuple(sorted(s.labels.items()))): s for s in mine.samples}
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            present = samples.get(key)
            if present is None or mine.type == "gauge":
                samples[key] = sample
            elif sample.name.endswith("_created"):
                samples[key] = present._replace(value=min(present.value, sample.value))
            else:
                samples[key] = present._replace(value=present.value + sample.value)
        mine.samples = list(samples.values())
    return list(families.values())
