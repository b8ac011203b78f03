"""Outbox benchmark: how fast mail goes into the outbox and out of it, on SQLite and PostgreSQL.

**Enqueue**: ``CALLERS`` coroutines at once, each storing one message per call until the count is reached, on one
envelope rendered up front (only the fingerprint differs). ``OutboxStore.add`` group-commits: the calls that arrive
while a transaction is in progress share the next one. The baseline is what a naive outbox does, one transaction
per message (the message row and its ``queued`` event) straight on the store's engine; on SQLite it is also run with
the writers queued behind one lock and ``BEGIN IMMEDIATE``, as the store queues its own, which leaves only the
grouping as the difference.

**Drain**: a backlog filled with ``add_many``, then the real worker, ``python -m mailsc worker --burst``, in its own
process (so its CPU time and peak RSS are its own) delivering everything to Postfix's smtp-sink over plain SMTP on
loopback. Every message must end ``sent``. The same with a larger backlog on SQLite gives the worker's peak RSS.

**Breaker open**: a 100,000-message SQLite backlog and ``python -m mailsc worker`` (no ``--burst``) pointed at a
loopback port where nothing listens, so its circuit breaker opens (it defers without counting attempts, stops
claiming and probes with backoff). Over a 30 s window: the worker process's CPU (``/proc/PID/stat``), and the
50-caller group-commit enqueue against the same database, compared with the same enqueue just before, no worker
running. Nothing may end ``failed`` and no attempt may be burned.

``python -m bench.outbox`` runs this benchmark alone and writes its sections of docs/benchmarks.md (``## Outbox``,
then ``## Outbox: breaker open``); ``python -m bench.outbox breaker`` measures and writes only the latter
(``BENCH_QUICK=1``: fewer messages, one trial, a 10 s window, prints only). ``BENCH_POSTGRES_URL`` names the
PostgreSQL database (created if missing; its mailsc tables are dropped before every trial).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from bench import (
    CLOCK_TICKS,
    Section,
    Settings,
    machine_line,
    machine_user_seconds,
    markdown_table,
    package_version,
    wait_until_quiet,
    write_section,
)
from bench.sink import HOST, Server, free_port, install_postfix_tools, smtp_sink
from bench.transport import MESSAGE_SIZE, build_envelope
from mailsc import Envelope
from mailsc.outbox import tables
from mailsc.outbox.engine import WRITE
from mailsc.outbox.records import NewMessage, utcnow
from mailsc.outbox.store import OutboxStore
from mailsc.outbox.tables import events, messages

T = TypeVar("T")

CALLERS = 50
SENDER = "app@example.com"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/mailsc_bench"
MAILSC_TABLES = (*(t.name for t in reversed(tables.metadata.sorted_tables)), "mailsc_alembic_version")

WORKER_TIMEOUT = 900.0

# Targets from the issue (this 2-core machine).
ENQUEUE_TARGET = 5000.0
DRAIN_TARGET = 2500.0  # on SQLite
RSS_TARGET_MB = 200.0  # worker peak RSS with RSS_BACKLOG queued
BREAKER_CPU_TARGET = 0.02  # cores: the worker with its breaker open and BREAKER_BACKLOG queued
BREAKER_BACKLOG = 100_000
BREAKER_OPEN_TIMEOUT = 180.0  # seconds from starting the worker to its `transport.unavailable`
BREAKER_SETTLE = 2.0  # seconds after the breaker opened, for the deferrals in flight to be recorded

TRIALS = 3  # per case in a full run, interleaved; each row is the median
DISTURBED = 0.25  # other programs' cores during a trial that make it worth repeating
ATTEMPTS = 3

SQLITE, POSTGRES = "SQLite", "PostgreSQL"
Mode = Literal["group", "naive", "naive-queued"]
MODE_LABELS: dict[Mode, str] = {
    "group": "group commit (`OutboxStore.add`)",
    "naive": "one transaction per message",
    "naive-queued": "one transaction per message, writers queued",
}


@dataclass(frozen=True)
class Sizes:
    """How many messages each part uses; a quick run uses fewer."""

    enqueue: int
    naive: int
    backlog: int
    rss_backlog: int

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if quick:
            return cls(enqueue=2000, naive=500, backlog=2000, rss_backlog=10_000)
        return cls(enqueue=20_000, naive=3000, backlog=20_000, rss_backlog=100_000)


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker process is started: ``mailsc worker --concurrency`` and ``MAILSC_SMTP_POOL_SIZE``."""

    concurrency: int
    pool_size: int

    @property
    def label(self) -> str:
        return f"`--concurrency {self.concurrency}`, pool {self.pool_size}"


DEFAULT_WORKER = WorkerConfig(256, 4)  # `mailsc worker`'s defaults (and its claim batch of 200)
WIDE_WORKER = WorkerConfig(256, 8)  # the same with twice the SMTP connections


# -- CPU accounting --------------------------------------------------------------------------------------------


def _proc_cpu(stat: str, children: bool = False) -> tuple[float, float]:
    """User and total CPU seconds from the text of /proc/PID/stat; ``children``: add those of its ended children."""
    fields = stat.rpartition(")")[2].split()  # fields[0] is field 3 (state); utime, stime, cutime, cstime: 14-17
    user, system = int(fields[11]), int(fields[12])
    if children:
        user, system = user + int(fields[13]), system + int(fields[14])
    return user / CLOCK_TICKS, (user + system) / CLOCK_TICKS


def postgres_cpu() -> tuple[float, float]:
    """User and total CPU seconds of PostgreSQL: its running processes, plus the backends that ended (the
    postmaster reaps them, so their time is in its children's times; a worker's connections end with it)."""
    user = total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        if stat.partition("(")[2].startswith("postgres)"):
            u, t = _proc_cpu(stat, children=True)
            user, total = user + u, total + t
    return user, total


@dataclass(frozen=True)
class Cpu:
    """Wall clock and CPU seconds so far: this process, the sink, PostgreSQL, and the whole machine (user)."""

    wall: float
    self_user: float
    self_total: float
    sink_user: float
    sink_total: float
    db_user: float
    db_total: float
    machine_user: float

    @classmethod
    def take(cls, sink: Server | None = None) -> Cpu:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        sink_user, sink_total = (
            (0.0, 0.0) if sink is None else _proc_cpu(Path(f"/proc/{sink.process.pid}/stat").read_text())
        )
        db_user, db_total = postgres_cpu()
        return cls(
            time.perf_counter(),
            usage.ru_utime,
            usage.ru_utime + usage.ru_stime,
            sink_user,
            sink_total,
            db_user,
            db_total,
            machine_user_seconds(),
        )


@dataclass(frozen=True)
class Used:
    """What a trial used between two ``Cpu`` snapshots, plus a child process's own CPU (``child_*``)."""

    seconds: float
    self_cpu: float
    sink_cpu: float
    db_cpu: float
    other_cpu: float  # user CPU of every other program on the machine

    @classmethod
    def between(cls, start: Cpu, end: Cpu, child_user: float = 0.0) -> Used:
        own = (
            (end.self_user - start.self_user)
            + (end.sink_user - start.sink_user)
            + (end.db_user - start.db_user)
            + child_user
        )
        return cls(
            end.wall - start.wall,
            end.self_total - start.self_total,
            end.sink_total - start.sink_total,
            end.db_total - start.db_total,
            max(end.machine_user - start.machine_user - own, 0.0),
        )

    @property
    def other_cores(self) -> float:
        return self.other_cpu / self.seconds


# -- databases -------------------------------------------------------------------------------------------------


@dataclass
class Database:
    """One outbox database; ``fresh()`` returns the URL of an empty one (SQLite: a new file; PostgreSQL: the
    mailsc tables dropped)."""

    name: str
    url: str
    directory: Path | None = None
    _files: int = 0

    def fresh(self) -> str:
        if self.directory is not None:
            for old in self.directory.glob("outbox-*.db*"):
                old.unlink()
            self._files += 1
            return f"sqlite:///{self.directory / f'outbox-{self._files}.db'}"
        asyncio.run(_drop_tables(self.url))
        return self.url


def _async_pg(url: str) -> str:
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _drop_tables(url: str) -> None:
    engine = create_async_engine(_async_pg(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {', '.join(MAILSC_TABLES)} CASCADE"))
    finally:
        await engine.dispose()


async def _ensure_postgres(url: str) -> None:
    """Create the benchmark's PostgreSQL database if it does not exist (connecting to ``postgres`` to do so)."""
    parsed = make_url(url)
    name = parsed.database or "mailsc_bench"
    admin = create_async_engine(_async_pg(parsed.set(database="postgres").render_as_string(hide_password=False)))
    try:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


def postgres_database() -> tuple[Database | None, str]:
    """The PostgreSQL database to use, or None and the reason it is unavailable; and the server's version."""
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        asyncio.run(_ensure_postgres(url))
        version = asyncio.run(_postgres_version(url))
    except (OSError, SQLAlchemyError) as exc:
        return None, f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return Database(POSTGRES, url), version


async def _postgres_version(url: str) -> str:
    engine = create_async_engine(_async_pg(url))
    try:
        async with engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version"))
            sync = await conn.scalar(text("SHOW synchronous_commit"))
            fsync = await conn.scalar(text("SHOW fsync"))
    finally:
        await engine.dispose()
    return f"PostgreSQL {str(version).split()[0]} (synchronous_commit={sync}, fsync={fsync})"


def new_messages(envelope: Envelope, start: int, count: int) -> list[NewMessage]:
    """``count`` messages on the same envelope; only the fingerprint (64 characters) differs."""
    return [NewMessage(envelope, f"bench-{n:058d}") for n in range(start, start + count)]


# -- enqueue ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueCase:
    database: str
    mode: Mode
    messages: int


@dataclass(frozen=True)
class EnqueueTrial:
    messages: int
    used: Used
    latencies: tuple[float, ...]  # seconds, one per add call

    @property
    def rate(self) -> float:
        return self.messages / self.used.seconds

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


def _one_transaction_each(store: OutboxStore, queued: bool) -> Callable[[NewMessage], Awaitable[object]]:
    """A naive outbox's add: its own transaction per message on the store's engine (the same row and event).

    ``queued``: writers wait their turn on an asyncio lock and take SQLite's write lock at ``BEGIN IMMEDIATE``,
    as ``OutboxStore`` does; without it they contend inside SQLite (its busy handler sleeps and retries).
    """
    lock = asyncio.Lock()

    async def write(item: NewMessage) -> None:
        now = utcnow()
        row = OutboxStore._row(item, now)  # the store's own row, so both write the same bytes
        event = {"message_id": row["id"], "type": "queued", "at": now, "detail": {}}
        if queued:
            async with lock, store.engine.connect() as conn:
                conn = await conn.execution_options(**WRITE)
                async with conn.begin():
                    await conn.execute(insert(messages), row)
                    await conn.execute(insert(events), event)
        else:
            async with store.engine.begin() as conn:
                await conn.execute(insert(messages), row)
                await conn.execute(insert(events), event)

    return write


async def _enqueue(url: str, case: EnqueueCase, envelope: Envelope) -> EnqueueTrial:
    store = await OutboxStore.open(url)
    try:
        add: Callable[[NewMessage], Awaitable[object]]
        add = store.add if case.mode == "group" else _one_transaction_each(store, case.mode == "naive-queued")
        await asyncio.gather(*(add(m) for m in new_messages(envelope, 0, CALLERS)))  # warm the pool up
        items = iter(new_messages(envelope, CALLERS, case.messages))
        latencies: list[float] = []

        async def caller() -> None:
            for item in items:
                began = time.perf_counter()
                await add(item)
                latencies.append(time.perf_counter() - began)

        start = Cpu.take()
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        used = Used.between(start, Cpu.take())
        return EnqueueTrial(case.messages, used, tuple(latencies))
    finally:
        await store.close()


# -- drain -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainCase:
    database: str
    backlog: int
    worker: WorkerConfig


@dataclass(frozen=True)
class DrainTrial:
    backlog: int
    used: Used  # wall clock from starting the worker process to its exit
    worker_cpu: float  # user + system seconds of the worker process, startup included
    worker_rss_mb: float  # its peak resident set (VmHWM)
    delivery_seconds: float  # first attempt started -> last outcome recorded, from the database
    counts: dict[str, int]
    exit_code: int

    @property
    def rate(self) -> float:
        """Messages per second while delivering (process startup and shutdown not counted)."""
        return self.backlog / self.delivery_seconds if self.delivery_seconds > 0 else 0.0

    @property
    def wall_rate(self) -> float:
        return self.backlog / self.used.seconds

    @property
    def all_sent(self) -> bool:
        return self.exit_code == 0 and self.counts == {"sent": self.backlog}


async def _fill(url: str, envelope: Envelope, count: int, chunk: int = 5000) -> None:
    store = await OutboxStore.open(url)
    try:
        for start in range(0, count, chunk):
            results = await store.add_many(new_messages(envelope, start, min(chunk, count - start)))
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise RuntimeError(f"filling the backlog failed: {failed[0]!r}")
    finally:
        await store.close()


async def _outcome(url: str) -> tuple[dict[str, int], float]:
    """Messages by status, and seconds from the first attempt's start to the last ``sent`` commit."""
    store = await OutboxStore.open(url, migrate=False)
    try:
        counts = await store.counts()
        async with store.engine.connect() as conn:
            first: datetime | None = await conn.scalar(
                select(events.c.at).where(events.c.type == "attempt").order_by(events.c.at).limit(1)
            )
            last: datetime | None = await conn.scalar(select(func.max(messages.c.sent_at)))
    finally:
        await store.close()
    if isinstance(last, str):  # SQLite returns an aggregate untyped
        last = datetime.fromisoformat(last)
    if first is None or last is None:
        return counts, 0.0
    return counts, (last.replace(tzinfo=None) - first.replace(tzinfo=None)).total_seconds()


def worker_environment(url: str, sink: Server, config: WorkerConfig) -> dict[str, str]:
    """The environment of ``mailsc worker``: ours without any MAILSC_* of the caller's, plus the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSC_")}
    env.update(
        MAILSC_DATABASE_URL=url,
        MAILSC_SMTP_HOST=sink.host,
        MAILSC_SMTP_PORT=str(sink.port),
        MAILSC_SMTP_SECURITY="none",
        MAILSC_SMTP_POOL_SIZE=str(config.pool_size),
        MAILSC_MAIL_FROM=SENDER,
    )
    return env


def worker_command(config: WorkerConfig) -> list[str]:
    return [sys.executable, "-m", "mailsc", "worker", "--burst", "--concurrency", str(config.concurrency)]


@dataclass(frozen=True)
class Child:
    """How a child process ended: exit code, CPU seconds (user, user + system), peak RSS in MB."""

    exit_code: int
    user: float
    total: float
    rss_mb: float


def _peak_rss_kb(pid: int) -> int:
    """VmHWM of a running process (0 once it has exited: a zombie has no memory left to report)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Child:
    """Run ``command`` to its end; its CPU time from ``wait4`` (this child's alone), its peak RSS from VmHWM
    read every 10 ms until it exits (``ru_maxrss`` would count this process's RSS, copied at the fork)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    deadline = time.monotonic() + WORKER_TIMEOUT
    peak = 0
    while True:
        peak = max(peak, _peak_rss_kb(process.pid))
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Child(process.returncode, usage.ru_utime, usage.ru_utime + usage.ru_stime, peak / 1024)


@dataclass(frozen=True)
class Bench:
    """What every trial needs: the databases, the sink, the envelope, a scratch folder and the settings."""

    databases: dict[str, Database]
    sink: Server
    envelope: Envelope
    directory: Path
    settings: Settings
    startup: dict[str, Child] = field(default_factory=dict)

    def run(self, work: Coroutine[object, object, EnqueueTrial]) -> EnqueueTrial:
        with asyncio.Runner(loop_factory=self.settings.loop_factory) as runner:
            return runner.run(work)

    def enqueue(self, case: EnqueueCase) -> EnqueueTrial:
        url = self.databases[case.database].fresh()
        return self.run(_enqueue(url, case, self.envelope))

    def drain(self, case: DrainCase) -> DrainTrial:
        url = self.databases[case.database].fresh()
        asyncio.run(_fill(url, self.envelope, case.backlog))
        load = wait_until_quiet(self.settings.quiet_timeout)
        if load >= DISTURBED:
            print(f"  (other programs keep {load:.2f} cores busy; measuring anyway)", flush=True)
        env = worker_environment(url, self.sink, case.worker)
        start = Cpu.take(self.sink)
        child = run_child(worker_command(case.worker), env, self.directory, self.directory / "worker.log")
        used = Used.between(start, Cpu.take(self.sink), child.user)
        counts, delivery = asyncio.run(_outcome(url))
        trial = DrainTrial(case.backlog, used, child.total, child.rss_mb, delivery, counts, child.exit_code)
        if not trial.all_sent:
            tail = (self.directory / "worker.log").read_text(errors="replace")[-2000:]
            print(f"  worker exit {child.exit_code}, counts {counts}; its log ends:\n{tail}", flush=True)
        if case.database not in self.startup:  # once per database: what starting and stopping alone costs
            idle = run_child(worker_command(case.worker), env, self.directory, self.directory / "idle.log")
            self.startup[case.database] = idle
        return trial


def _quiet_enqueue(bench: Bench, case: EnqueueCase) -> EnqueueTrial:
    attempts: list[EnqueueTrial] = []
    for _ in range(ATTEMPTS):
        load = wait_until_quiet(bench.settings.quiet_timeout)
        if load >= DISTURBED:
            print(f"  (other programs keep {load:.2f} cores busy; measuring anyway)", flush=True)
        attempts.append(bench.enqueue(case))
        if attempts[-1].used.other_cores < DISTURBED or bench.settings.quick:
            break
        print(f"  (other programs used {attempts[-1].used.other_cores:.2f} cores during the trial: again)", flush=True)
    return min(attempts, key=lambda t: t.used.other_cores)


def _quiet_drain(bench: Bench, case: DrainCase) -> DrainTrial:
    attempts: list[DrainTrial] = []
    for _ in range(ATTEMPTS):
        attempts.append(bench.drain(case))
        if attempts[-1].used.other_cores < DISTURBED or bench.settings.quick:
            break
        print(f"  (other programs used {attempts[-1].used.other_cores:.2f} cores during the trial: again)", flush=True)
    return min(attempts, key=lambda t: t.used.other_cores)


def enqueue_cases(databases: dict[str, Database], sizes: Sizes) -> list[EnqueueCase]:
    cases = []
    for name in databases:
        modes: list[Mode] = ["group", "naive", "naive-queued"] if name == SQLITE else ["group", "naive"]
        cases += [EnqueueCase(name, mode, sizes.enqueue if mode == "group" else sizes.naive) for mode in modes]
    return cases


def _median(trials: list[T], rate: Callable[[T], float]) -> T:
    ordered = sorted(trials, key=rate)
    return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class Results:
    enqueue: dict[EnqueueCase, list[EnqueueTrial]]
    drain: dict[DrainCase, list[DrainTrial]]
    rss: tuple[DrainCase, DrainTrial] | None

    def enqueue_median(self, case: EnqueueCase) -> EnqueueTrial:
        return _median(self.enqueue[case], lambda t: t.rate)

    def drain_median(self, case: DrainCase) -> DrainTrial:
        return _median(self.drain[case], lambda t: t.rate)

    def enqueue_rate(self, database: str, mode: Mode) -> float | None:
        for case in self.enqueue:
            if (case.database, case.mode) == (database, mode):
                return self.enqueue_median(case).rate
        return None

    def drain_trial(self, database: str, worker: WorkerConfig) -> DrainTrial | None:
        for case in self.drain:
            if (case.database, case.worker) == (database, worker):
                return self.drain_median(case)
        return None


def measure(bench: Bench, sizes: Sizes, trials: int) -> Results:
    planned = enqueue_cases(bench.databases, sizes)
    enqueue: dict[EnqueueCase, list[EnqueueTrial]] = {case: [] for case in planned}
    drains = [DrainCase(name, sizes.backlog, w) for w in (DEFAULT_WORKER, WIDE_WORKER) for name in bench.databases]
    drain: dict[DrainCase, list[DrainTrial]] = {case: [] for case in drains}
    for number in range(1, trials + 1):
        for case in planned:
            trial = _quiet_enqueue(bench, case)
            enqueue[case].append(trial)
            print(
                f"  enqueue {number}/{trials}: {case.database}, {case.mode}: {trial.messages} in "
                f"{trial.used.seconds:.2f} s = {trial.rate:,.0f} msg/s, p50 {trial.latency_ms(0.5):.1f} ms, "
                f"p99 {trial.latency_ms(0.99):.1f} ms (other programs: {trial.used.other_cores:.2f} cores)",
                flush=True,
            )
        for dcase in drains:
            dtrial = _quiet_drain(bench, dcase)
            drain[dcase].append(dtrial)
            print(
                f"  drain {number}/{trials}: {dcase.database}, {dcase.worker.label}: {_drain_line(dtrial)}", flush=True
            )
    rss = None
    if SQLITE in bench.databases:
        rcase = DrainCase(SQLITE, sizes.rss_backlog, DEFAULT_WORKER)
        rtrial = _quiet_drain(bench, rcase)
        print(f"  memory: {rcase.database}: {_drain_line(rtrial)}", flush=True)
        rss = (rcase, rtrial)
    return Results(enqueue, drain, rss)


def _drain_line(trial: DrainTrial) -> str:
    return (
        f"{trial.backlog} delivered in {trial.delivery_seconds:.2f} s = {trial.rate:,.0f} msg/s (process "
        f"{trial.used.seconds:.2f} s), worker CPU {trial.worker_cpu:.2f} s, peak RSS {trial.worker_rss_mb:.0f} MB, "
        f"all sent: {trial.all_sent} (other programs: {trial.used.other_cores:.2f} cores)"
    )


# -- report ----------------------------------------------------------------------------------------------------


def _per_1k(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.3f}"


def enqueue_table(results: Results) -> str:
    header = [
        "database",
        "writes",
        "messages",
        "seconds",
        "msg/s",
        "msg/s, all trials",
        "add p50 ms",
        "add p99 ms",
        "bench process CPU s / 1k msgs",
        "PostgreSQL CPU s / 1k msgs",
        "other programs, cores",
        "group / one per message",
    ]
    body = []
    for case, trials in results.enqueue.items():
        trial = results.enqueue_median(case)
        ratio = ""
        if case.mode == "group":
            naive = results.enqueue_rate(case.database, "naive")
            ratio = f"**{trial.rate / naive:.1f}x**" if naive else ""
        body.append(
            [
                case.database,
                MODE_LABELS[case.mode],
                f"{case.messages:,}",
                f"{trial.used.seconds:.2f}",
                f"**{trial.rate:,.0f}**",
                " / ".join(f"{t.rate:,.0f}" for t in trials),
                f"{trial.latency_ms(0.5):.1f}",
                f"{trial.latency_ms(0.99):.1f}",
                _per_1k(trial.used.self_cpu, case.messages),
                _per_1k(trial.used.db_cpu, case.messages) if case.database == POSTGRES else "",
                f"{trial.used.other_cores:.2f}",
                ratio,
            ]
        )
    return markdown_table(header, body, [False, False, *([True] * 10)])


def drain_table(results: Results, startup: dict[str, Child]) -> str:
    header = [
        "database",
        "worker",
        "backlog",
        "delivering, s",
        "msg/s delivered",
        "msg/s, all trials",
        "worker process, s",
        "worker CPU s / 1k msgs",
        "worker peak RSS, MB",
        "smtp-sink CPU s / 1k msgs",
        "PostgreSQL CPU s / 1k msgs",
        "other programs, cores",
        "all sent",
    ]
    rows: list[tuple[DrainCase, DrainTrial, list[DrainTrial]]] = [
        (case, results.drain_median(case), trials) for case, trials in results.drain.items()
    ]
    if results.rss is not None:
        rows.append((results.rss[0], results.rss[1], [results.rss[1]]))
    body = []
    for case, trial, trials in rows:
        idle = startup.get(case.database)
        worker_cpu = trial.worker_cpu - (idle.total if idle else 0.0)
        body.append(
            [
                case.database,
                case.worker.label + (" (defaults)" if case.worker == DEFAULT_WORKER else ""),
                f"{case.backlog:,}",
                f"{trial.delivery_seconds:.2f}",
                f"**{trial.rate:,.0f}**",
                " / ".join(f"{t.rate:,.0f}" for t in trials),
                f"{trial.used.seconds:.2f}",
                _per_1k(worker_cpu, case.backlog),
                f"**{trial.worker_rss_mb:.0f}**",
                _per_1k(trial.used.sink_cpu, case.backlog),
                _per_1k(trial.used.db_cpu, case.backlog) if case.database == POSTGRES else "",
                f"{trial.used.other_cores:.2f}",
                "yes" if trial.all_sent else f"**no**: {trial.counts}, exit {trial.exit_code}",
            ]
        )
    return markdown_table(header, body, [False, False, *([True] * 10), False])


def _verdict(value: float | None, target: float, at_least: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= target if at_least else value < target
    return "**met**" if met else "**missed**"


def targets(results: Results) -> list[str]:
    lines = []
    for name in (SQLITE, POSTGRES):
        rate = results.enqueue_rate(name, "group")
        shown = f"{rate:,.0f} msg/s" if rate is not None else "not measured"
        lines.append(
            f"- enqueue, {name}, 50 callers: {shown} (target >= {ENQUEUE_TARGET:,.0f} msg/s): "
            f"{_verdict(rate, ENQUEUE_TARGET, True)}"
        )
    for worker in (DEFAULT_WORKER, WIDE_WORKER):
        drain = results.drain_trial(SQLITE, worker)
        label = f"drain to smtp-sink, SQLite, {worker.label}{' (defaults)' if worker == DEFAULT_WORKER else ''}"
        if drain is None:
            lines.append(f"- {label}: not measured (target >= {DRAIN_TARGET:,.0f} msg/s)")
            continue
        verdict = _verdict(drain.rate, DRAIN_TARGET, True) if drain.all_sent else "**missed** (not all sent)"
        lines.append(
            f"- {label}: {drain.rate:,.0f} msg/s while delivering, {drain.wall_rate:,.0f} msg/s counting the "
            f"worker process's start and exit (target >= {DRAIN_TARGET:,.0f} msg/s): {verdict}"
        )
    if results.rss is None:
        lines.append(f"- worker peak RSS: not measured (target < {RSS_TARGET_MB:.0f} MB)")
    else:
        case, trial = results.rss
        lines.append(
            f"- worker peak RSS, {case.backlog:,}-message backlog on SQLite: {trial.worker_rss_mb:.0f} MB "
            f"(target < {RSS_TARGET_MB:.0f} MB with 100,000): {_verdict(trial.worker_rss_mb, RSS_TARGET_MB, False)}"
        )
    return lines


REPRODUCE = """How to reproduce (as root the first time: smtp-sink gets installed; PostgreSQL on 127.0.0.1:5432, user
`postgres`, or `BENCH_POSTGRES_URL`):

- `python -m bench.outbox` (or `make bench`, with the other benchmarks): these tables (about 20 minutes: three
  trials per row, each waiting for a quiet machine); writes this section.
- `BENCH_QUICK=1 python -m bench.outbox`: fewer messages, one trial, about a minute; prints the tables, writes
  nothing. `BENCH_QUIET_TIMEOUT=0` skips waiting for other programs to go quiet."""


def report(results: Results, bench: Bench, postgres: str, trials: int) -> str:
    versions = (
        f"mailsc {package_version('mailsc')}, SQLAlchemy {package_version('sqlalchemy')}, aiosqlite "
        f"{package_version('aiosqlite')}, asyncpg {package_version('asyncpg')}, aiosmtplib "
        f"{package_version('aiosmtplib')}; {postgres}; SQLite "
        f"{sqlite3.sqlite_version}."
    )
    startup = "; ".join(
        f"{name}: {child.total:.2f} s CPU, {child.rss_mb:.0f} MB peak RSS" for name, child in bench.startup.items()
    )
    how = f"median of {trials} trials, cases interleaved (every trial listed)" if trials > 1 else "one trial"
    setup = [
        f"- Message: one {len(bench.envelope.data):,}-byte text message to one recipient, rendered once by "
        "`mailsc.render`; only the request fingerprint differs from one message to the next.",
        "- SQLite: a new database file in a temporary folder for every trial, WAL, `synchronous=FULL` (the "
        "store's default). PostgreSQL: local server, the mailsc tables dropped before every trial.",
        f"- **Enqueue**: {CALLERS} coroutines at once, each `await store.add(NewMessage(...))` of one message per "
        "call until the count is reached, in the benchmark process (its event loop as stated above), after one "
        "untimed call per coroutine. **group commit** is `OutboxStore.add`: the calls waiting while a "
        "transaction runs share the next one. **one transaction per message** is a naive outbox: "
        "`async with store.engine.begin() as conn:` insert the message row and its `queued` event, per call, "
        "concurrently (on SQLite the writers then wait in SQLite's busy handler); **writers queued** does the "
        "same behind one `asyncio.Lock` with `BEGIN IMMEDIATE`, as the store queues its own writers, so only "
        "the grouping differs. Latency: one `add` call, from its start to its return (after the commit).",
        "- **Drain**: the backlog stored first with `add_many`, then `python -m mailsc worker --burst "
        "--concurrency N` started in its own process with `MAILSC_SMTP_SECURITY=none` and "
        "`MAILSC_SMTP_POOL_SIZE` (pool), until it exits, delivering to Postfix smtp-sink on 127.0.0.1 "
        f"({bench.sink.name}, its own process). The CLI as shipped: uvloop, claims of at most "
        "200, JSON log lines at INFO (one per message, to a file). Rows: the CLI's defaults, and "
        f"{WIDE_WORKER.label}. **msg/s delivered** = backlog / (first attempt started -> last `sent` "
        "recorded), from the database; **worker process** is the wall clock from its start to its exit. Worker "
        "CPU (user + system, from `wait4`) and peak RSS (VmHWM, read every 10 ms until it exits) are the worker "
        "process's own; its CPU per 1k leaves out starting and stopping, measured once per database on an empty "
        f"queue ({startup or 'not measured'}). **all sent**: the worker exited 0 and every row is `sent`.",
        "- PostgreSQL CPU: all `postgres` processes, ended backends included (whatever else uses the server "
        "counts too). Other programs: user CPU of everything else on the machine during the trial, in cores; a "
        f"trial is repeated (up to {ATTEMPTS} attempts) if they used {DISTURBED:g} cores or more.",
    ]
    return "\n\n".join(
        [
            f"{machine_line(bench.settings)} {versions}",
            "\n".join(setup),
            f"**msg/s**: {how}. The memory row is one trial.",
            "Enqueue:\n\n" + enqueue_table(results),
            "Drain:\n\n" + drain_table(results, bench.startup),
            "Targets:\n\n" + "\n".join(targets(results)),
            REPRODUCE,
        ]
    )


def run(settings: Settings) -> Section:
    """Measure enqueue and drain on SQLite and PostgreSQL; returns the ``## Outbox`` section."""
    trials = 1 if settings.quick else TRIALS
    sizes = Sizes.for_run(settings.quick)
    postfix = install_postfix_tools()
    pg, postgres = postgres_database()
    if pg is None:
        print(f"outbox: PostgreSQL {postgres}: measuring SQLite only", flush=True)
    with tempfile.TemporaryDirectory(prefix="mailsc-bench-outbox-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        databases = {SQLITE: Database(SQLITE, "", directory)}
        if pg is not None:
            databases[POSTGRES] = pg
        sink = stack.enter_context(smtp_sink(postfix))
        bench = Bench(databases, sink, build_envelope(MESSAGE_SIZE), directory, settings)
        print(f"outbox: {', '.join(databases)}, {trials} trial(s), {settings.loop_name}", flush=True)
        results = measure(bench, sizes, trials)
        return Section("Outbox", report(results, bench, postgres if pg else f"PostgreSQL {postgres}", trials))


# -- breaker open ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerTrial:
    """The worker paused by its open breaker, with a backlog queued, while the API-side enqueue runs beside it."""

    backlog: int
    opened_after: float  # seconds from starting the worker to `transport.unavailable` in its log
    window: float  # seconds the worker's CPU was measured over
    worker_cpu: float  # its user + system seconds within the window
    worker_cpu_enqueue: float  # ... of which while the enqueue ran
    worker_rss_mb: float  # its peak resident set (VmHWM) when stopped
    baseline: EnqueueTrial  # the enqueue just before, no worker running
    loaded: EnqueueTrial  # the enqueue in the window, beside the paused worker
    used: Used  # the window (other programs' CPU)
    counts: dict[str, int]  # rows by status after the worker stopped
    deferred_max_attempts: int  # largest `attempts` of the `deferred` rows
    max_attempts: int  # largest `attempts` of any row
    exit_code: int  # the worker's, after SIGTERM

    @property
    def cores(self) -> float:
        return self.worker_cpu / self.window

    @property
    def ratio(self) -> float:
        return self.loaded.rate / self.baseline.rate

    @property
    def intact(self) -> bool:
        """Nothing failed, some rows were deferred, and no deferral counted an attempt."""
        return self.counts.get("failed", 0) == 0 and self.counts.get("deferred", 0) > 0 and self.max_attempts <= 1


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds a running process has used (/proc/PID/stat)."""
    return _proc_cpu(Path(f"/proc/{pid}/stat").read_text())[1]


def breaker_environment(url: str, port: int) -> dict[str, str]:
    """``mailsc worker``'s environment for the breaker trial: SMTP on a loopback port where nothing listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSC_")}
    env.update(
        MAILSC_DATABASE_URL=url,
        MAILSC_SMTP_HOST=HOST,
        MAILSC_SMTP_PORT=str(port),
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM=SENDER,
        MAILSC_LOG_LEVEL="warning",
    )
    return env


def _wait_for_breaker(process: subprocess.Popen[bytes], log: Path, timeout: float) -> float:
    """Seconds until the worker logs ``transport.unavailable`` (its breaker opened); raises if it never does."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if "transport.unavailable" in log.read_text(errors="replace"):
            return time.monotonic() - began
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the worker's breaker did not open (exit {process.poll()}); its log ends:\n{tail}")


async def _attempts(url: str) -> tuple[dict[str, int], int, int]:
    """Rows by status, and the largest ``attempts`` among the deferred rows and among all rows."""
    store = await OutboxStore.open(url, migrate=False)
    try:
        counts = await store.counts()
        async with store.engine.connect() as conn:
            deferred = await conn.scalar(select(func.max(messages.c.attempts)).where(messages.c.status == "deferred"))
            anywhere = await conn.scalar(select(func.max(messages.c.attempts)))
    finally:
        await store.close()
    return counts, int(deferred or 0), int(anywhere or 0)


def measure_breaker(
    settings: Settings, directory: Path, envelope: Envelope, backlog: int, enqueue: int, window: float
) -> BreakerTrial:
    """One trial: fill, enqueue with no worker, start the worker against a dead port, wait for its breaker, then
    measure its CPU over ``window`` seconds while the same enqueue runs again; SIGTERM it; check the rows."""
    url = f"sqlite:///{directory / 'breaker.db'}"
    asyncio.run(_fill(url, envelope, backlog))
    case = EnqueueCase(SQLITE, "group", enqueue)

    def run_enqueue() -> EnqueueTrial:
        with asyncio.Runner(loop_factory=settings.loop_factory) as runner:
            return runner.run(_enqueue(url, case, envelope))

    load = wait_until_quiet(settings.quiet_timeout)
    if load >= DISTURBED:
        print(f"  (other programs keep {load:.2f} cores busy; measuring anyway)", flush=True)
    baseline = run_enqueue()
    print(f"  breaker: enqueue, no worker: {baseline.messages} at {baseline.rate:,.0f} msg/s", flush=True)
    port = free_port()  # bound and closed again: nothing listens there
    log = directory / "breaker.log"
    command = [sys.executable, "-m", "mailsc", "worker"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=breaker_environment(url, port),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        opened_after = _wait_for_breaker(process, log, BREAKER_OPEN_TIMEOUT)
        time.sleep(BREAKER_SETTLE)
        wait_until_quiet(min(settings.quiet_timeout, 30.0))
        start, cpu_start = Cpu.take(), _process_cpu(process.pid)
        loaded = run_enqueue()
        cpu_enqueue = _process_cpu(process.pid) - cpu_start
        time.sleep(max(0.0, start.wall + window - time.perf_counter()))
        cpu_end, end = _process_cpu(process.pid), Cpu.take()
        rss = _peak_rss_kb(process.pid) / 1024
        worker_cpu = cpu_end - cpu_start
        used = Used.between(start, end, worker_cpu)  # the worker counted as ours, not as another program
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            exit_code = process.wait()
    counts, deferred_max, max_attempts = asyncio.run(_attempts(url))
    return BreakerTrial(
        backlog,
        opened_after,
        used.seconds,
        worker_cpu,
        cpu_enqueue,
        rss,
        baseline,
        loaded,
        used,
        counts,
        deferred_max,
        max_attempts,
        exit_code,
    )


def breaker_report(trial: BreakerTrial, settings: Settings) -> str:
    header = ["measured", "value"]
    rows = [
        ["backlog queued (SQLite)", f"{trial.backlog:,}"],
        ["breaker opened after worker start, s", f"{trial.opened_after:.1f}"],
        ["window, s", f"{trial.window:.1f}"],
        ["worker CPU in the window, s", f"{trial.worker_cpu:.2f}"],
        ["worker CPU, % of one core", f"**{trial.cores * 100:.2f}**"],
        [
            f"... of which while the enqueue ran ({trial.loaded.used.seconds:.1f} s), s",
            f"{trial.worker_cpu_enqueue:.2f}",
        ],
        ["worker peak RSS, MB", f"{trial.worker_rss_mb:.0f}"],
        [f"enqueue, no worker: {trial.baseline.messages:,} msgs, msg/s", f"{trial.baseline.rate:,.0f}"],
        [f"enqueue, breaker open: {trial.loaded.messages:,} msgs, msg/s", f"{trial.loaded.rate:,.0f}"],
        [
            "enqueue add p99 ms, no worker / breaker open",
            f"{trial.baseline.latency_ms(0.99):.1f} / {trial.loaded.latency_ms(0.99):.1f}",
        ],
        ["breaker open / no worker", f"**{trial.ratio:.2f}x**"],
        ["rows by status after SIGTERM", ", ".join(f"{k} {v:,}" for k, v in sorted(trial.counts.items()))],
        ["max attempts: deferred rows / any row", f"{trial.deferred_max_attempts} / {trial.max_attempts}"],
        ["worker exit code after SIGTERM", str(trial.exit_code)],
        ["other programs, cores", f"{trial.used.other_cores:.2f}"],
    ]
    table = markdown_table(header, rows, [False, True])
    intact = (
        "**yes**"
        if trial.intact
        else f"**no** (failed {trial.counts.get('failed', 0)}, max attempts {trial.max_attempts})"
    )
    setup = (
        f"- A {trial.backlog:,}-message SQLite backlog (as for Drain), then the {CALLERS}-caller group-commit enqueue "
        f"of {trial.baseline.messages:,} messages (as for Enqueue) on that database with no worker running. Then "
        "`python -m mailsc worker` (no `--burst`, the CLI's defaults) in its own process with "
        "`MAILSC_SMTP_HOST=127.0.0.1`, `MAILSC_SMTP_PORT` a loopback port where nothing listens (bound to port 0 "
        "and closed), `MAILSC_SMTP_SECURITY=none`, `MAILSC_LOG_LEVEL=warning`. Once it logs "
        f"`transport.unavailable` (the breaker opened) and {BREAKER_SETTLE:g} s more, a {trial.window:.0f} s window: "
        "the worker's user + system CPU from `/proc/PID/stat`, and the same enqueue again against the same database "
        "at the start of the window. Then SIGTERM. **breaker open / no worker** is the ratio of the two enqueue "
        "rates.\n"
        "- Deferrals with the breaker open must not count attempts: every row ends `queued`, `deferred` (due again, "
        "uncounted) or was released by the SIGTERM; none `failed`, and no row has more than 1 attempt."
    )
    targets_lines = [
        f"- worker CPU with breaker open < {BREAKER_CPU_TARGET * 100:g}% of a core: {trial.cores * 100:.2f}%: "
        f"{_verdict(trial.cores, BREAKER_CPU_TARGET, False)}",
        f"- API accept rate with breaker open vs normal: {trial.loaded.rate:,.0f} / {trial.baseline.rate:,.0f} msg/s "
        f"= **{trial.ratio:.2f}x**",
        f"- nothing failed, no attempts burned: {intact}",
    ]
    reproduce = (
        "How to reproduce: `python -m bench.outbox breaker` (about 3 minutes; writes only this section); "
        "`BENCH_QUICK=1 python -m bench.outbox breaker`: 10 s window, prints only. `python -m bench.outbox` "
        "measures the Outbox section and this one."
    )
    return "\n\n".join(
        [
            f"{machine_line(settings)} mailsc {package_version('mailsc')}; SQLite {sqlite3.sqlite_version}. One trial.",
            setup,
            table,
            "Targets:\n\n" + "\n".join(targets_lines),
            reproduce,
        ]
    )


def run_breaker(settings: Settings) -> Section:
    """The breaker-open measurement alone; returns the ``## Outbox: breaker open`` section."""
    sizes = Sizes.for_run(settings.quick)
    window = 10.0 if settings.quick else 30.0
    with tempfile.TemporaryDirectory(prefix="mailsc-bench-breaker-") as tmp:
        print(f"outbox, breaker open: {BREAKER_BACKLOG:,} queued, {window:.0f} s window", flush=True)
        envelope = build_envelope(MESSAGE_SIZE)
        trial = measure_breaker(settings, Path(tmp), envelope, BREAKER_BACKLOG, sizes.enqueue, window)
        print(
            f"  breaker: worker {trial.cores * 100:.2f}% of a core, enqueue {trial.loaded.rate:,.0f} vs "
            f"{trial.baseline.rate:,.0f} msg/s ({trial.ratio:.2f}x), counts {trial.counts}, max attempts "
            f"{trial.max_attempts}",
            flush=True,
        )
        return Section("Outbox: breaker open", breaker_report(trial, settings))


def _main(argv: list[str]) -> None:
    settings = Settings.from_env()
    if argv not in ([], ["breaker"]):
        raise SystemExit("usage: python -m bench.outbox [breaker]")
    sections = [run_breaker(settings)] if argv else [run(settings), run_breaker(settings)]
    for section in sections:
        print(f"\n## {section.title}\n\n{section.markdown}\n", flush=True)
        if settings.quick:
            print("(quick run: docs/benchmarks.md left unchanged)")
        else:
            write_section(section)
            print("(written to docs/benchmarks.md)")


if __name__ == "__main__":
    _main(sys.argv[1:])
