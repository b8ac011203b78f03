"""The summary's rows and its Markdown: one table, the targets from issue #8, and how each number was measured."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from bench import Settings, markdown_table
from bench.e2e import Plan

# Targets for mailsc end to end on this 2-core machine (issue #8).
PLAIN_TARGET = 1000.0
TLS_TARGET = 800.0
PEER_RATIO_TARGET = 5.0
CEILING_SHARE_TARGET = 0.25


@dataclass(frozen=True)
class Row:
    """One line of the table. Rates in messages/s; CPU in seconds per 1,000 messages delivered."""

    label: str
    group: str  # "limit", "mailsc", "seed", "fastapi-mail"
    tls: bool
    delivered_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_per_1k: float  # the system under test: the server's processes, or the SMTP client process
    helpers_cpu_per_1k: float  # smtp-sink, and stunnel for STARTTLS
    peak_rss_mb: float
    accepted: int
    delivered: int
    backlog_at_stop: int
    other_cores: float
    loadavg: float
    database: str | None = None
    embedded: bool = False  # `serve --embedded-worker`: one process


def _reference(rows: list[Row], tls: bool) -> Row | None:
    """The mailsc row others are compared with: SQLite, `mailsc serve` as it starts by default, same security."""
    return next(
        (r for r in rows if r.group == "mailsc" and r.database == "SQLite" and r.tls == tls and not r.embedded), None
    )


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _table(rows: list[Row]) -> str:
    header = [
        "row",
        "messages/s delivered",
        "accept p50 ms",
        "accept p99 ms",
        "CPU s / 1k msgs",
        "sink (+ stunnel) CPU s / 1k",
        "peak RSS MB",
        "mailsc ÷ row",
        "delivered / accepted",
        "other programs, cores",
    ]
    order = {"limit": 0, "mailsc": 1, "seed": 2, "fastapi-mail": 3}
    body = []
    for row in sorted(rows, key=lambda r: (order[r.group], r.embedded, r.database != "SQLite", r.tls)):
        reference = _reference(rows, row.tls)
        ratio = ""
        if reference is not None:
            ratio = f"{reference.delivered_per_s / row.delivered_per_s:.2f}x" if row.delivered_per_s else "∞"
        body.append(
            [
                row.label,
                f"**{row.delivered_per_s:,.0f}**",
                _ms(row.p50_ms),
                _ms(row.p99_ms),
                f"{row.cpu_per_1k:.2f}",
                f"{row.helpers_cpu_per_1k:.2f}",
                f"{row.peak_rss_mb:,.0f}",
                ratio,
                f"{row.delivered:,} / {row.accepted:,}",
                f"{row.other_cores:.2f}",
            ]
        )
    return markdown_table(header, body, [False, *([True] * 9)])


def _find(rows: list[Row], group: str, tls: bool, database: str | None = None, *, embedded: bool = False) -> Row | None:
    return next(
        (r for r in rows if r.group == group and r.tls == tls and r.embedded == embedded and r.database == database),
        None,
    )


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _targets(rows: list[Row]) -> list[str]:
    lines = []
    for database in ("SQLite", "PostgreSQL"):
        for tls, goal in ((False, PLAIN_TARGET), (True, TLS_TARGET)):
            row = _find(rows, "mailsc", tls, database)
            if row is None:
                continue
            line = (
                f"- mailsc end to end, {database}, {'STARTTLS' if tls else 'plain'}: "
                f"{row.delivered_per_s:,.0f} messages/s (target >= {goal:,.0f}): "
                f"{_verdict(row.delivered_per_s >= goal)}"
            )
            one_process = _find(rows, "mailsc", tls, database, embedded=True)
            if one_process is not None:
                line += f"; `--embedded-worker`: {one_process.delivered_per_s:,.0f}"
            lines.append(line)
    mailsc_tls = _find(rows, "mailsc", True, "SQLite")
    for peer in ("seed", "fastapi-mail"):
        row = _find(rows, peer, True)
        if mailsc_tls is not None and row is not None:
            ratio = mailsc_tls.delivered_per_s / row.delivered_per_s if row.delivered_per_s else float("inf")
            lines.append(
                f"- mailsc / {peer}, STARTTLS: {ratio:.1f}x (target >= {PEER_RATIO_TARGET:g}x): "
                f"{_verdict(ratio >= PEER_RATIO_TARGET)}"
            )
    for tls in (False, True):
        mailsc = _find(rows, "mailsc", tls, "SQLite")
        raw = next((r for r in rows if r.label.startswith("raw client") and r.tls == tls), None)
        if mailsc is not None and raw is not None and raw.delivered_per_s > 0:
            share = mailsc.delivered_per_s / raw.delivered_per_s
            line = (
                f"- mailsc (SQLite) / raw client ceiling, {'STARTTLS' if tls else 'plain'}: "
                f"{share:.0%} (target >= {CEILING_SHARE_TARGET:.0%}): {_verdict(share >= CEILING_SHARE_TARGET)}"
            )
            one_process = _find(rows, "mailsc", tls, "SQLite", embedded=True)
            if one_process is not None:
                line += f"; `--embedded-worker`: {one_process.delivered_per_s / raw.delivered_per_s:.0%}"
            lines.append(line)
    return lines


def report(
    rows: list[Row], settings: Settings, plan: Plan, versions: dict[str, str], machine: str, elapsed: float
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = [r.loadavg for r in rows]
    setup = ", ".join(f"{name} {value}" for name, value in versions.items())
    notes = [
        f"- **HTTP rows**: 50 keep-alive HTTP/1.1 connections from `bench.api loadgen` (its own process, a raw "
        f"asyncio client), each POSTing a ~2 KB JSON message (`to`, `subject`, `text`) and sending the next when the "
        f"answer arrives (closed loop). {plan.warmup:g} s warm-up, {plan.seconds:g} s measured. **messages/s "
        "delivered**: what smtp-sink (`-c`, its own process) counted during the measured window / its length. "
        "**accept latency**: request written -> whole answer read. Then up to "
        f"{plan.drain_limit:g} s for the backlog to drain; **delivered / accepted** at the end.",
        "- **mailsc serve**: `.venv/bin/mailsc serve` configured only by environment: a fresh `MAILSC_DATABASE_URL` "
        "(SQLite file; or a new PostgreSQL database on 127.0.0.1, dropped after), `MAILSC_SMTP_HOST/PORT` the sink, "
        "`MAILSC_SMTP_SECURITY=none`, or `starttls` with `MAILSC_SMTP_CA_FILE` the local CA, "
        "`MAILSC_LOG_LEVEL=warning`; defaults otherwise (on this 2-core machine the API process and the `mailsc "
        "worker` child it starts, SMTP pool of 4). 202 only after the row is committed. **(--embedded-worker)**: "
        "one process, the worker inside the API's event loop.",
        "- **seed pattern** (`bench/seed_app.py`): FastAPI, `BackgroundTasks` + one `aiosmtplib.send()` per message "
        "(new connection; with STARTTLS `start_tls=True, cert_bundle=<CA>`). **fastapi-mail** "
        "(`bench/fastapi_mail_app.py`, in `bench/.venv-fastapi-mail`, created by the bench with pip): "
        "`await FastMail(conf).send_message(message)` in the endpoint (new connection per message; `CERT_BUNDLE` the "
        "CA). Both under uvicorn with uvloop + httptools, as `mailsc serve`. Trusting only the test CA flatters them: "
        "with the system trust store every new `SSLContext` costs 31-36 ms more CPU (docs/benchmarks.md, Transport).",
        "- **physical limit**: Postfix `smtp-source -d -s 4 -l 2048` (4 persistent sessions) -> `smtp-sink`. "
        "**raw client**: `bench/raw_client.py`, `aiosmtplib.SMTP.sendmail` of pre-built 2 KB messages over 4 "
        "persistent connections (one `SSLContext`), nothing else; its latency column is per `sendmail`.",
        "- **STARTTLS**: smtp-sink has no TLS, so every STARTTLS row talks to **stunnel** (`protocol = smtp`, server "
        "mode, a `trustme` certificate, TLS 1.3) relaying to the same smtp-sink; clients verify the certificate. "
        "stunnel's CPU is in the sink column; the raw STARTTLS row is that path's ceiling.",
        "- **CPU s / 1k msgs**: user + system CPU of the system under test (all of the server's processes, from before "
        "the load to the end of the drain; or the SMTP client process) per 1,000 messages the sink received. A server "
        "with an undrained backlog (the seed) is charged for accepting messages it never delivered. **peak RSS**: "
        "VmHWM, summed over the server's processes. **mailsc ÷ row**: delivered/s of mailsc (SQLite, embedded "
        "worker, same security) divided by the row's. **other programs**: user CPU of everything else on the machine "
        "during the measured window.",
    ]
    return "\n\n".join(
        [
            f"Measured {now} on {machine}, in {elapsed:.0f} s"
            + (" (`BENCH_QUICK=1`: short windows, one trial)" if settings.quick else "")
            + f"; load average at the start of the rows {min(loads):.2f}-{max(loads):.2f}. {setup}.",
            _table(rows),
            "Targets (issue #8, this 2-core machine):\n\n" + "\n".join(_targets(rows)),
            "\n".join(notes),
            "How to reproduce: `make bench` (as root the first time: smtp-sink and stunnel get installed from Debian "
            "packages, fastapi-mail into `bench/.venv-fastapi-mail` from PyPI; PostgreSQL on 127.0.0.1:5432, user "
            "`postgres`, trust auth). `BENCH_QUICK=1 make bench` prints the table in under two minutes and writes "
            "nothing. `make bench BENCH=all` runs every benchmark below as well.",
        ]
    )
