"""The Prometheus collectors, read back from ``render()``'s exposition text; and the worker feeding them."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailsc import ConnectionConfig, Message
from mailsc.delivery import RetryPolicy
from mailsc.mailer import Mailer
from mailsc.metrics import (
    LATENCY_BUCKETS,
    observe_send,
    record_accepted,
    record_outcome,
    render,
    set_connections_open,
    set_queue_depth,
)
from mailsc.outbox import OutboxStore
from tests.smtpd import SmtpServer


def sample(name: str, **labels: str) -> float:
    """The value of one sample in the exposition text (0 when the series does not exist yet)."""
    text = render()[0].decode()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_render_is_prometheus_text_with_every_collector() -> None:
    body, content_type = render()
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {
        "mailsc_messages_accepted",
        "mailsc_messages_sent",
        "mailsc_messages_deferred",
        "mailsc_messages_failed",
        "mailsc_messages_expired",
        "mailsc_delivery_latency_seconds",
        "mailsc_smtp_transaction_seconds",
        "mailsc_queue_depth",
        "mailsc_smtp_connections_open",
    } <= names


def test_record_accepted_counts_messages() -> None:
    before = sample("mailsc_messages_accepted_total")
    record_accepted()
    record_accepted(3)
    assert sample("mailsc_messages_accepted_total") == before + 4


@pytest.mark.parametrize("status", ["sent", "deferred", "failed", "expired"])
def test_record_outcome_counts_each_status(status: str) -> None:
    before = sample(f"mailsc_messages_{status}_total")
    record_outcome(status)
    assert sample(f"mailsc_messages_{status}_total") == before + 1


def test_a_sent_outcome_observes_the_delivery_latency() -> None:
    count, total = sample("mailsc_delivery_latency_seconds_count"), sample("mailsc_delivery_latency_seconds_sum")
    under_30 = sample("mailsc_delivery_latency_seconds_bucket", le="30.0")
    under_60 = sample("mailsc_delivery_latency_seconds_bucket", le="60.0")
    record_outcome("sent", 42.0)
    record_outcome("deferred", 7.0)  # only deliveries have a latency
    assert sample("mailsc_delivery_latency_seconds_count") == count + 1
    assert sample("mailsc_delivery_latency_seconds_sum") == pytest.approx(total + 42.0)
    assert sample("mailsc_delivery_latency_seconds_bucket", le="30.0") == under_30
    assert sample("mailsc_delivery_latency_seconds_bucket", le="60.0") == under_60 + 1


def test_latency_buckets_reach_a_day() -> None:
    assert max(LATENCY_BUCKETS) == 24 * 3600
    assert sample("mailsc_delivery_latency_seconds_bucket", le="86400.0") <= sample(
        "mailsc_delivery_latency_seconds_count"
    )


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="cancelled"):
        record_outcome("cancelled")


def test_observe_send_feeds_the_smtp_histogram() -> None:
    count = sample("mailsc_smtp_transaction_seconds_count")
    observe_send(0.2)
    assert sample("mailsc_smtp_transaction_seconds_count") == count + 1
    assert sample("mailsc_smtp_transaction_seconds_bucket", le="0.25") >= 1


def test_queue_depth_per_status_and_statuses_that_emptied_read_zero() -> None:
    set_queue_depth({"queued": 5, "deferred": 2})
    assert sample("mailsc_queue_depth", status="queued") == 5
    assert sample("mailsc_queue_depth", status="deferred") == 2
    set_queue_depth({"queued": 1})
    assert sample("mailsc_queue_depth", status="queued") == 1
    assert sample("mailsc_queue_depth", status="deferred") == 0


def test_connections_open_is_a_gauge() -> None:
    set_connections_open(3)
    assert sample("mailsc_smtp_connections_open") == 3
    set_connections_open(0)
    assert sample("mailsc_smtp_connections_open") == 0


async def test_the_worker_records_outcomes_send_durations_and_latency(smtp_server: SmtpServer, tmp_path: Path) -> None:
    names = (
        "mailsc_messages_sent_total",
        "mailsc_messages_deferred_total",
        "mailsc_messages_failed_total",
        "mailsc_delivery_latency_seconds_count",
        "mailsc_smtp_transaction_seconds_count",
    )
    before = {name: sample(name) for name in names}
    latency_sum = sample("mailsc_delivery_latency_seconds_sum")
    config = ConnectionConfig(host="127.0.0.1", port=smtp_server.port, security="none", mail_from="app@example.com")
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    # Replies are consumed in order: the first message is refused for good, the second deferred once, then sent.
    smtp_server.faults.rcpt_any.extend(["550 5.1.1 no such user", "451 4.3.0 try again later"])
    async with Mailer(config, outbox=store, retry_policy=RetryPolicy(base=0.01, cap=0.02)) as mailer:
        failed = await mailer.enqueue(Message(to="gone@example.org", subject="1", text="one"))
        await (await mailer.worker(concurrency=1)).run(burst=True)
        sent = await mailer.enqueue(Message(to="later@example.org", subject="2", text="two"))
        for _ in range(50):
            await (await mailer.worker(concurrency=1)).run(burst=True)
            if (await mailer.status(sent)).status == "sent":
                break
        assert (await mailer.status(failed)).status == "failed"
        assert (await mailer.status(sent)).status == "sent"
    delta = {name: sample(name) - before[name] for name in names}
    assert delta == {
        "mailsc_messages_sent_total": 1,
        "mailsc_messages_deferred_total": 1,
        "mailsc_messages_failed_total": 1,
        "mailsc_delivery_latency_seconds_count": 1,
        "mailsc_smtp_transaction_seconds_count": 3,
    }
    assert 0 < sample("mailsc_delivery_latency_seconds_sum") - latency_sum < 60


def merged_sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def test_a_worker_process_exposition_merges_into_one_set_of_series() -> None:
    record_accepted(3)
    set_queue_depth({"queued": 7})
    own_accepted, own_sent = sample("mailsc_messages_accepted_total"), sample("mailsc_messages_sent_total")
    own_smtp_count = sample("mailsc_smtp_transaction_seconds_count")
    worker = "\n".join(
        [
            "# HELP mailsc_messages_sent_total Messages delivered to the transport.",
            "# TYPE mailsc_messages_sent_total counter",
            "mailsc_messages_sent_total 5.0",
            "# HELP mailsc_messages_sent_created Messages delivered to the transport.",
            "# TYPE mailsc_messages_sent_created gauge",
            "mailsc_messages_sent_created 1.0",
            "# HELP mailsc_smtp_transaction_seconds Duration of one send through the transport, successful or not.",
            "# TYPE mailsc_smtp_transaction_seconds histogram",
            'mailsc_smtp_transaction_seconds_bucket{le="0.005"} 2.0',
            'mailsc_smtp_transaction_seconds_bucket{le="+Inf"} 5.0',
            "mailsc_smtp_transaction_seconds_count 5.0",
            "mailsc_smtp_transaction_seconds_sum 0.02",
            "# HELP mailsc_queue_depth Messages in the outbox by status.",
            "# TYPE mailsc_queue_depth gauge",
            'mailsc_queue_depth{status="queued"} 6.0',
            "# HELP mailsc_only_in_the_worker A family this process does not have.",
            "# TYPE mailsc_only_in_the_worker gauge",
            "mailsc_only_in_the_worker 1.0",
            "",
        ]
    )
    text = render(worker)[0].decode()
    assert merged_sample(text, "mailsc_messages_sent_total") == own_sent + 5  # counters add up
    assert merged_sample(text, "mailsc_messages_accepted_total") == own_accepted  # only this process accepts
    assert merged_sample(text, "mailsc_messages_sent_created") == 1.0  # the earlier creation time
    assert merged_sample(text, "mailsc_smtp_transaction_seconds_count") == own_smtp_count + 5
    assert merged_sample(text, "mailsc_queue_depth", status="queued") == 6.0  # a gauge: the worker's reading
    assert merged_sample(text, "mailsc_only_in_the_worker") == 1.0
    assert text.count("# TYPE mailsc_messages_sent_total counter") == 1
    assert text.splitlines().count("mailsc_messages_sent_created 1.0") == 1  # one sample line, the earlier time
    assert render()[0].decode() != text  # the process's own registry is left as it was
    assert sample("mailsc_messages_sent_total") == own_sent
