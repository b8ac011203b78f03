"""One end-to-end trial for the summary: a server under HTTP load, delivering to smtp-sink (through stunnel for
STARTTLS), measured from outside its processes.

The servers: ``mailsc serve`` (the real entry point of ``.venv/bin/mailsc``, configured only by ``MAILSC_*``
variables, on SQLite or PostgreSQL), the seed pattern (``bench/seed_app.py``) and fastapi-mail
(``bench/fastapi_mail_app.py`` in its own virtual environment). The load generator is ``bench.api``'s raw
asyncio HTTP/1.1 client in its own process (50 keep-alive connections, closed loop, ~2 KB JSON bodies); smtp-sink
``-c`` counts what arrives. Every process is started here and ended by its PID.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg

from bench import REPO, machine_user_seconds
from bench.api import (
    CONNECTIONS,
    SENDER,
    CountingSink,
    _clean_environment,
    _next_event,
    _peak_rss_mb,
    _proc_cpu,
    _read_events,
    _wait_listening,
    counting_sink,
)
from bench.sink import HOST, Postfix, free_port, stop
from bench.tls_proxy import Certificates, TlsProxy, stunnel

Kind = Literal["mailsc", "seed", "fastapi-mail"]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MAILSC = Path(sys.executable).with_name("mailsc")


@dataclass(frozen=True)
class Plan:
    """How long each phase of an HTTP trial lasts."""

    warmup: float
    seconds: float
    drain_limit: float  # after the load: stop waiting for the backlog after this long
    idle_limit: float  # ... or after this long without a delivery


@dataclass(frozen=True)
class Case:
    """A server configuration under test."""

    kind: Kind
    tls: bool
    database: Literal["SQLite", "PostgreSQL"] | None = None
    embedded: bool = False  # mailsc: `serve --embedded-worker` (one process) instead of its worker process


@dataclass(frozen=True)
class Outcome:
    """What one trial measured (CPU in seconds; ``delivered_window`` during the measured window)."""

    seconds: float
    load: dict[str, Any]
    delivered_window: int
    delivered_total: int
    accepted_total: int
    backlog_at_stop: int
    cpu: float  # the server's processes, from before the load to the end of the drain
    sink_cpu: float  # smtp-sink (+ stunnel) over the same span
    peak_rss_mb: float  # summed over the server's processes
    other_cores: float
    loadavg: float


@dataclass(frozen=True)
class Processes:
    """The server under test: one or more processes, CPU and peak RSS summed over them."""

    port: int
    processes: list[subprocess.Popen[bytes]]

    def cpu(self) -> tuple[float, float]:
        user = total = 0.0
        for process in self.processes:
            u, t = _proc_cpu(process.pid)
            user, total = user + u, total + t
        return user, total

    def peak_rss_mb(self) -> float:
        return sum(_peak_rss_mb(p.pid) for p in self.processes)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the local server (trust auth) for one trial; dropped on exit."""
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_version() -> str:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def postgres_version() -> str:
    return asyncio.run(_pg_version()).split()[0]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            command, cwd=log.parent, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )


@contextmanager
def server(
    case: Case, smtp_port: int, certificates: Certificates, directory: Path, fastapi_mail_python: Path
) -> Iterator[Processes]:
    """Start the server of ``case`` on a free loopback port (cwd: an empty directory); stopped on exit."""
    port = free_port()
    env = _clean_environment()
    env["PYTHONPATH"] = str(REPO)
    log = directory / f"{case.kind}.log"
    started: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        stack.callback(_stop_all, started)
        ca = ["--ca-file", str(certificates.ca_file)] if case.tls else []
        if case.kind == "mailsc":
            if case.database == "PostgreSQL":
                url = stack.enter_context(postgres_database(f"mailsc_bench_summary_{port}"))
            else:
                url = f"sqlite:///{directory / 'outbox.db'}"
            env.update(
                MAILSC_DATABASE_URL=url,
                MAILSC_SMTP_HOST=HOST,
                MAILSC_SMTP_PORT=str(smtp_port),
                MAILSC_SMTP_SECURITY="starttls" if case.tls else "none",
                MAILSC_MAIL_FROM=SENDER,
                MAILSC_LOG_LEVEL="warning",
            )
            if case.tls:
                env["MAILSC_SMTP_CA_FILE"] = str(certificates.ca_file)
            serve = [str(MAILSC), "serve", "--host", HOST, "--port", str(port)]
            started.append(_start(serve + (["--embedded-worker"] if case.embedded else []), env, log))
        elif case.kind == "seed":
            command = [sys.executable, "-m", "bench.seed_app", "--port", str(port), "--smtp-port", str(smtp_port)]
            started.append(_start([*command, "--sender", SENDER, *ca], env, log))
        else:
            command = [str(fastapi_mail_python), "-m", "bench.fastapi_mail_app", "--port", str(port)]
            started.append(_start([*command, "--smtp-port", str(smtp_port), "--sender", SENDER, *ca], env, log))
        _wait_listening(started[0], port, case.kind)
        yield Processes(port, started)


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        stop(process)


def _drain(sink: CountingSink, accepted: int, plan: Plan) -> None:
    """Wait until ``accepted`` messages reached the sink, or nothing arrived for ``idle_limit`` s, or
    ``drain_limit`` s passed."""
    start = last_change = time.perf_counter()
    seen = sink.delivered
    while seen < accepted:
        now = time.perf_counter()
        if now - last_change >= plan.idle_limit or now - start >= plan.drain_limit:
            return
        time.sleep(0.1)
        if sink.delivered != seen:
            seen, last_change = sink.delivered, time.perf_counter()


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def http_trial(
    case: Case, postfix: Postfix, certificates: Certificates, plan: Plan, loop: str, fastapi_mail_python: Path
) -> Outcome:
    """Start the sink (and stunnel), the server, load it, let it drain, and collect the measurements."""
    path = "/v1/messages" if case.kind == "mailsc" else "/send"
    with ExitStack() as stack:
        directory = Path(stack.enter_context(_tempdir()))
        sink = stack.enter_context(counting_sink(postfix))
        proxy: TlsProxy | None = None
        if case.tls:
            proxy = stack.enter_context(stunnel(sink.port, certificates, directory))
        smtp_port = proxy.port if proxy is not None else sink.port
        service = stack.enter_context(server(case, smtp_port, certificates, directory, fastapi_mail_python))

        def helpers_cpu() -> tuple[float, float]:
            user, total = sink.cpu()
            if proxy is not None:
                u, t = _proc_cpu(proxy.process.pid)
                user, total = user + u, total + t
            return user, total

        loadavg = _loadavg()
        cpu_before, helpers_before = service.cpu(), helpers_cpu()
        command = [sys.executable, "-m", "bench.api", "loadgen", "--port", str(service.port), "--path", path]
        command += ["--connections", str(CONNECTIONS), "--warmup", f"{plan.warmup:g}"]
        command += ["--seconds", f"{plan.seconds:g}", "--loop", loop]
        generator = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        stack.callback(stop, generator)
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=_read_events, args=(generator, events), daemon=True).start()
        _next_event(events, plan.warmup + 60)  # measuring
        start_wall, start_delivered, start_machine = time.perf_counter(), sink.delivered, machine_user_seconds()
        start_own = service.cpu()[0] + helpers_cpu()[0]
        while _next_event(events, plan.seconds + 60)["event"] != "ended":
            pass
        end_wall, end_delivered, end_machine = time.perf_counter(), sink.delivered, machine_user_seconds()
        end_own = service.cpu()[0] + helpers_cpu()[0]
        load = _next_event(events, 60)  # done
        generator.wait(timeout=60)
        accepted_total = int(load["ok"]) + int(load["warmup_ok"]) + int(load["tail_ok"])
        backlog = max(accepted_total - sink.delivered, 0)
        _drain(sink, accepted_total, plan)
        cpu_after, helpers_after = service.cpu(), helpers_cpu()
        own_user = end_own - start_own + float(load["cpu_user"])
        return Outcome(
            seconds=end_wall - start_wall,
            load=load,
            delivered_window=end_delivered - start_delivered,
            delivered_total=sink.delivered,
            accepted_total=accepted_total,
            backlog_at_stop=backlog,
            cpu=cpu_after[1] - cpu_before[1],
            sink_cpu=helpers_after[1] - helpers_before[1],
            peak_rss_mb=service.peak_rss_mb(),
            other_cores=max(end_machine - start_machine - own_user, 0.0) / (end_wall - start_wall),
            loadavg=loadavg,
        )
    raise AssertionError("unreachable")  # ExitStack never swallows here; keeps mypy's return analysis simple


@contextmanager
def _tempdir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="mailsc-bench-summary-") as tmp:
        yield tmp
