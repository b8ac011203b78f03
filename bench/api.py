"""API benchmark: HTTP accept rate and latency of ``mailsc serve``, and end-to-end delivery to smtp-sink.

Three kinds of process, each on its own, on 127.0.0.1 only:

- **Postfix's smtp-sink** with ``-c``: it prints a running count of the messages it received, read here to count
  deliveries (the same count for both servers).
- **The server under test**: ``python -m mailsc serve`` (uvicorn, uvloop, httptools, no access log) on a fresh
  SQLite outbox with its worker (a child process on this 2-core machine) delivering to the sink, or the seed
  pattern (``bench/seed_app.py``: FastAPI + ``BackgroundTasks`` + one ``aiosmtplib.send()`` per message) with the
  same uvicorn options, or, for reference, that app validating the body and answering without sending
  (``--no-send``): the framework's ceiling.
- **The load generator**: ``python -m bench.api loadgen``, a raw asyncio HTTP/1.1 client (no HTTP library in the
  way) holding ``CONNECTIONS`` keep-alive connections, each POSTing a ~2 KB JSON message and waiting for the answer
  before sending the next (a closed loop: the rate is what the server sustains). After a warm-up it measures for a
  fixed time, recording each request's latency; its own CPU is reported, to show it is not the limit.

After the load stops, the servers deliver what is left (their backlog); the trial ends when every accepted message
reached the sink, or nothing arrived for ``IDLE_LIMIT`` seconds, or ``drain_limit`` passed. ``python -m bench.api``
runs this benchmark alone and writes its section of docs/benchmarks.md (``BENCH_QUICK=1``: 10 s instead of 60 s,
prints only).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import queue
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from bench import (
    CLOCK_TICKS,
    REPO,
    Section,
    Settings,
    event_loop,
    machine_line,
    machine_user_seconds,
    markdown_table,
    package_version,
    wait_until_quiet,
    write_section,
)
from bench.sink import HOST, Postfix, free_port, install_postfix_tools, stop

App = Literal["mailsc", "seed", "floor"]
APPS: tuple[App, ...] = ("mailsc", "seed", "floor")
APP_LABELS: dict[App, str] = {
    "mailsc": "mailsc serve (SQLite outbox + its worker process)",
    "seed": "seed pattern (BackgroundTasks + aiosmtplib.send)",
    "floor": "reference: FastAPI validating the body, sending nothing",
}
PATHS: dict[App, str] = {"mailsc": "/v1/messages", "seed": "/send", "floor": "/send"}
FLOOR_SECONDS = 15.0  # the reference row needs no sustained run

CONNECTIONS = 50
BODY_SIZE = 2048  # bytes of JSON per request
SENDER = "app@example.com"

# Targets from the issue (this 2-core machine, SQLite).
ACCEPT_TARGET = 1500.0  # accepted messages/s
P99_TARGET_MS = 50.0
E2E_TARGET = 1000.0  # delivered messages/s, sustained over the full run's 60 s

# After the load, wait until every accepted message reached the sink or failed; give up after this long without
# a change (longer than aiosmtplib's default 60 s timeout, so the seed's stuck connections settle first).
IDLE_LIMIT = 65.0
START_TIMEOUT = 60.0
WINDOW = 5  # seconds: the "lowest 5 s" columns
DISTURBED = 0.25  # other programs' cores during a trial that make it worth repeating (full runs)
ATTEMPTS = 2
CLAIMABLE = ("queued", "deferred", "sending")
TRACEBACK = b"Exception in ASGI application"  # what uvicorn logs when a request's task (background tasks too) fails
_EXCEPTION_LINE = re.compile(r"^(?:\w+\.)*(\w+(?:Error|Exception)\b.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts; a quick run is shorter."""

    warmup: float
    seconds: float
    drain_limit: float

    @classmethod
    def for_run(cls, quick: bool) -> Plan:
        return cls(warmup=2.0, seconds=10.0, drain_limit=30.0) if quick else cls(5.0, 60.0, 120.0)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()  # fields[0] is field 3


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (`mailsc serve` runs its delivery worker as a child)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _proc_cpu(pid: int) -> tuple[float, float]:
    """User and total (user + system) CPU seconds of process ``pid``, all threads (/proc/PID/stat), with its
    children: the live ones' own, and the ended ones' as the kernel added them to ``pid`` when it reaped them."""
    fields = _stat(pid)
    user, system = (int(fields[11]) + int(fields[13])) / CLOCK_TICKS, (int(fields[12]) + int(fields[14])) / CLOCK_TICKS
    for child in _descendants(pid):
        try:
            more = _stat(child)
        except OSError:  # ended meanwhile: counted by its parent once reaped
            continue
        user, system = user + int(more[11]) / CLOCK_TICKS, system + int(more[12]) / CLOCK_TICKS
    return user, user + system


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of ``pid`` and of its live children, summed."""
    total = 0.0
    for process in (pid, *_descendants(pid)):
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


# -- smtp-sink with a message counter ----------------------------------------------------------------------------


class CountingSink:
    """smtp-sink ``-c`` prints ``sess=N quit=N mesg=N`` and a carriage return after every message (unbuffered);
    a thread keeps the last ``mesg`` count."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self._delivered = 0
        self._thread = threading.Thread(target=self._read, name="smtp-sink counter", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        fd, tail = self.process.stdout.fileno(), b""
        while chunk := os.read(fd, 65536):
            *records, tail = (tail + chunk).split(b"\r")
            if records:
                self._delivered = int(records[-1].rpartition(b"mesg=")[2])

    @property
    def delivered(self) -> int:
        return self._delivered

    def cpu(self) -> tuple[float, float]:
        return _proc_cpu(self.process.pid)


def _wait_listening(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Wait until ``process`` accepts connections on ``port`` (HTTP servers: until ``GET /healthz`` answers 200)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before listening")
        try:
            if what == "smtp-sink":
                socket.create_connection((HOST, port), timeout=0.5).close()
                return
            connection = http.client.HTTPConnection(HOST, port, timeout=1)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {HOST}:{port} within {START_TIMEOUT:g} s")


@contextmanager
def counting_sink(postfix: Postfix) -> Iterator[CountingSink]:
    """smtp-sink on a free loopback port, counting the messages it receives; stopped on exit."""
    port = free_port()
    command = [str(postfix.smtp_sink), "-c"]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    command += [f"{HOST}:{port}", "1000"]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        _wait_listening(process, port, "smtp-sink")
        yield CountingSink(process, port)
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


# -- the server under test ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    app: App
    port: int
    process: subprocess.Popen[bytes]
    database: Path | None
    log: Path
    _read: list[int] = field(default_factory=lambda: [0, 0])  # bytes of the log read so far, tracebacks seen

    def cpu(self) -> tuple[float, float]:
        return _proc_cpu(self.process.pid)

    def peak_rss_mb(self) -> float:
        return _peak_rss_mb(self.process.pid)

    def logged_errors(self) -> int:
        """Tracebacks the server logged so far (the seed's failed background sends end up there, and nowhere else).

        Reads only what was added since the last call (the log grows by megabytes when sends fail)."""
        with self.log.open("rb") as log:
            log.seek(self._read[0])
            new = log.read()
        cut = new.rfind(b"\n") + 1  # count whole lines only
        self._read[0] += cut
        self._read[1] += new[:cut].count(TRACEBACK)
        return self._read[1]

    def error_kinds(self) -> Counter[str]:
        """The exception each logged traceback ends with, by name (``SMTPConnectTimeoutError: ...``)."""
        kinds: Counter[str] = Counter()
        for chunk in self.log.read_bytes().split(TRACEBACK)[1:]:
            raised = _EXCEPTION_LINE.findall(chunk.decode(errors="replace"))
            if raised:
                kinds[re.sub(r"\d+", "N", raised[-1].strip())[:200]] += 1
        return kinds


def _clean_environment() -> dict[str, str]:
    """This process's environment without any mail settings, so only what the benchmark sets reaches the server."""
    prefixes = ("MAILSC_", "SMTP_", "MAIL_")
    dropped = {"USE_CREDENTIALS", "VALIDATE_CERTS"}
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes) and k.upper() not in dropped}


@contextmanager
def service(app: App, sink: CountingSink, directory: Path) -> Iterator[Service]:
    """Start ``app`` on a free loopback port (cwd: an empty directory, so no ``.env`` is read); stopped on exit."""
    port = free_port()
    env = _clean_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    database: Path | None = None
    if app == "mailsc":
        database = directory / "outbox.db"
        env.update(
            MAILSC_DATABASE_URL=f"sqlite:///{database}",
            MAILSC_SMTP_HOST=HOST,
            MAILSC_SMTP_PORT=str(sink.port),
            MAILSC_SMTP_SECURITY="none",
            MAILSC_MAIL_FROM=SENDER,
            MAILSC_LOG_LEVEL="warning",
        )
        command = [sys.executable, "-m", "mailsc", "serve", "--host", HOST, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "bench.seed_app", "--port", str(port), "--smtp-port", str(sink.port)]
        command += ["--sender", SENDER, *(["--no-send"] if app == "floor" else [])]
    log = directory / f"{app}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
    try:
        _wait_listening(process, port, app)
        yield Service(app, port, process, database, log)
    finally:
        stop(process)


# -- outbox queries (read-only, beside the running server) -----------------------------------------------------


def _sqlite_time(epoch: float) -> str:
    """The text SQLAlchemy stores for a UTC datetime in SQLite (naive, microseconds), for range comparisons."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _query(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def outbox_backlog(database: Path) -> int:
    marks = ", ".join("?" * len(CLAIMABLE))
    rows = _query(database, f"SELECT count(*) FROM mailsc_messages WHERE status IN ({marks})", *CLAIMABLE)  # noqa: S608
    return int(rows[0][0])


def outbox_counts(database: Path) -> dict[str, int]:
    rows = _query(database, "SELECT status, count(*) FROM mailsc_messages GROUP BY status")
    return {str(status): int(count) for status, count in rows}


def outbox_sent_between(database: Path, start: float, end: float) -> int:
    sql = "SELECT count(*) FROM mailsc_messages WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?"
    return int(_query(database, sql, _sqlite_time(start), _sqlite_time(end))[0][0])


# -- the load generator (its own process) -------------------------------------------------------------------------

_LINE = "Your order has shipped and is on its way; the tracking number follows in a separate message.\n"


@cache
def _text(size: int) -> str:
    """Prose for the ``text`` field, as long as fits a ``size``-byte request body (escaped newlines included)."""
    text = _LINE * (size // len(_LINE) + 1)
    while len(_encode(0, text)) > size:
        text = text[:-1]
    return text


def _encode(sequence: int, text: str) -> bytes:
    return json.dumps(
        {"to": f"user{sequence}@example.org", "subject": f"Order {sequence} shipped", "text": text}
    ).encode()


def _body(sequence: int, size: int = BODY_SIZE) -> bytes:
    """A JSON message of about ``size`` bytes, different for every request (recipient and subject)."""
    return _encode(sequence, _text(size))


def _request(path: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response: its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, keep = int(head[9:12]), 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


@dataclass
class _Tally:
    measure_from: float
    measure_until: float
    latencies: list[float] = field(default_factory=list)
    per_second: Counter[int] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    warmup_ok: int = 0
    tail_ok: int = 0
    errors: int = 0

    def record(self, started: float, done: float, status: int) -> None:
        ok = 200 <= status < 300
        if done < self.measure_from:
            self.warmup_ok += ok
        elif done >= self.measure_until:
            self.tail_ok += ok
        else:
            self.latencies.append(done - started)
            self.statuses[status] += 1
            if ok:
                self.per_second[int(done - self.measure_from)] += 1


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def _client(port: int, path: str, first: int, step: int, tally: _Tally) -> None:
    """One keep-alive connection sending a request, waiting for its answer, and so on until the end."""
    sequence = first
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < tally.measure_until:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            request = _request(path, port, _body(sequence))
            sequence += step
            started = time.perf_counter()
            writer.write(request)
            status, keep = await _response(reader)
            tally.record(started, time.perf_counter(), status)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.errors += 1
            keep = False
            await asyncio.sleep(0.05)
        if not keep and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def _quantile_ms(ordered: list[float], quantile: float) -> float:
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000 if ordered else 0.0


async def _load(port: int, path: str, connections: int, warmup: float, seconds: float) -> None:
    """Warm up, measure for ``seconds``, print ``measuring``, ``ended`` and ``done`` (with the results) as JSON."""
    now = time.perf_counter()
    tally = _Tally(now + warmup, now + warmup + seconds)
    clients = [asyncio.create_task(_client(port, path, n, connections, tally)) for n in range(connections)]
    await asyncio.sleep(max(tally.measure_from - time.perf_counter(), 0))
    usage, started = resource.getrusage(resource.RUSAGE_SELF), time.time()
    _emit({"event": "measuring", "at": started})
    await asyncio.sleep(max(tally.measure_until - time.perf_counter(), 0))
    end_usage, ended = resource.getrusage(resource.RUSAGE_SELF), time.time()
    _emit({"event": "ended", "at": ended})
    await asyncio.gather(*clients)
    ordered = sorted(tally.latencies)
    ok = sum(count for status, count in tally.statuses.items() if 200 <= status < 300)
    _emit(
        {
            "event": "done",
            "started": started,
            "ended": ended,
            "ok": ok,
            "refused": sum(tally.statuses.values()) - ok,
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
            "errors": tally.errors,
            "warmup_ok": tally.warmup_ok,
            "tail_ok": tally.tail_ok,
            "latency_ms": {q: _quantile_ms(ordered, float(q)) for q in ("0.5", "0.9", "0.99", "1")},
            "per_second": [tally.per_second[s] for s in range(int(seconds))],
            "cpu_user": end_usage.ru_utime - usage.ru_utime,
            "cpu_total": (end_usage.ru_utime + end_usage.ru_stime) - (usage.ru_utime + usage.ru_stime),
        }
    )


# -- one trial -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """What one run of one app measured. CPU in seconds; rates in messages per second of the load window."""

    app: App
    seconds: float  # the load window
    load: dict[str, Any]  # the load generator's report
    delivered: int  # at the sink during the window
    lowest_delivered: float  # the lowest WINDOW-second delivery rate during the window
    backlog: int  # accepted, not yet delivered, when the load stopped (mailsc: counted in the outbox)
    drain_seconds: float  # from the end of the load to the last delivery
    undelivered: int  # accepted and never delivered when the trial ended
    failed: int  # seed: tracebacks logged; mailsc: rows failed
    error_kinds: dict[str, int]  # seed: the exception each traceback ends with, and how often
    outbox: dict[str, int]  # mailsc: rows by status at the end
    outbox_window: int  # mailsc: rows whose sent_at falls in the window (cross-check of ``delivered``)
    server_cpu_window: float
    server_cpu_total: float  # from before the load to the end of the drain
    server_rss_mb: float
    sink_cpu_window: float
    other_cpu: float  # user CPU of every other program during the window

    @property
    def accepted(self) -> int:
        return int(self.load["ok"])

    @property
    def accepted_total(self) -> int:
        return int(self.load["ok"]) + int(self.load["warmup_ok"]) + int(self.load["tail_ok"])

    @property
    def accept_rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def delivery_rate(self) -> float:
        return self.delivered / self.seconds

    @property
    def lowest_accept_rate(self) -> float:
        per_second: list[int] = self.load["per_second"]
        sums = [sum(per_second[i : i + WINDOW]) for i in range(max(len(per_second) - WINDOW + 1, 1))]
        return min(sums) / min(WINDOW, max(len(per_second), 1))

    def latency_ms(self, quantile: str) -> float:
        return float(self.load["latency_ms"][quantile])

    @property
    def other_cores(self) -> float:
        return self.other_cpu / self.seconds


def _lowest_rate(samples: list[tuple[float, int]], window: float = WINDOW) -> float:
    """The lowest delivery rate over any ``window`` seconds of (time, count) samples taken about every second."""
    rates = []
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1 :]:
            if t1 - t0 >= window - 0.5:
                rates.append((n1 - n0) / (t1 - t0))
                break
    return min(rates) if rates else 0.0


def _read_events(process: subprocess.Popen[bytes], events: queue.Queue[dict[str, Any] | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        events.put(json.loads(line))
    events.put(None)


def _next_event(events: queue.Queue[dict[str, Any] | None], timeout: float) -> dict[str, Any]:
    event = events.get(timeout=timeout)
    if event is None:
        raise RuntimeError("the load generator exited early")
    return event


def trial(app: App, postfix: Postfix, settings: Settings, plan: Plan) -> Trial:
    """Start the sink and ``app``, load it, let it drain, and collect the measurements."""
    loop = "uvloop" if settings.loop_name.startswith("uvloop") else "asyncio"
    with (
        tempfile.TemporaryDirectory(prefix="mailsc-bench-api-") as tmp,
        counting_sink(postfix) as sink,
        service(app, sink, Path(tmp)) as server,
    ):
        before_load = server.cpu()
        seconds = min(plan.seconds, FLOOR_SECONDS) if app == "floor" else plan.seconds
        command = [sys.executable, "-m", "bench.api", "loadgen", "--port", str(server.port), "--path", PATHS[app]]
        command += ["--connections", str(CONNECTIONS), "--warmup", f"{plan.warmup:g}", "--seconds", f"{seconds:g}"]
        command += ["--loop", loop]
        generator = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=_read_events, args=(generator, events), daemon=True).start()
        try:
            _next_event(events, plan.warmup + START_TIMEOUT)  # measuring
            start_wall, start_server, start_sink = time.perf_counter(), server.cpu(), sink.cpu()
            start_machine, start_delivered = machine_user_seconds(), sink.delivered
            samples = [(start_wall, start_delivered)]
            while True:
                try:
                    event = _next_event(events, 1.0)
                except queue.Empty:
                    samples.append((time.perf_counter(), sink.delivered))
                    continue
                if event["event"] == "ended":
                    break
            end_wall, end_server, end_sink = time.perf_counter(), server.cpu(), sink.cpu()
            end_machine, end_delivered = machine_user_seconds(), sink.delivered
            samples.append((end_wall, end_delivered))
            outbox_backlog_now = outbox_backlog(server.database) if server.database is not None else None
            load = _next_event(events, START_TIMEOUT)  # done
            generator.wait(timeout=START_TIMEOUT)
        finally:
            stop(generator)
        accepted_total = int(load["ok"]) + int(load["warmup_ok"]) + int(load["tail_ok"])
        backlog = outbox_backlog_now if outbox_backlog_now is not None else accepted_total - end_delivered
        drain_seconds = _drain(sink, server, accepted_total, plan.drain_limit) if app != "floor" else 0.0
        server_end = server.cpu()
        counts = outbox_counts(server.database) if server.database is not None else {}
        in_window = (
            outbox_sent_between(server.database, load["started"], load["ended"]) if server.database is not None else 0
        )
        failed = counts.get("failed", 0) if app == "mailsc" else server.logged_errors()
        error_kinds = dict(server.error_kinds()) if app == "seed" else {}
        rss = server.peak_rss_mb()
    own_user = (end_server[0] - start_server[0]) + (end_sink[0] - start_sink[0]) + float(load["cpu_user"])
    return Trial(
        app=app,
        seconds=end_wall - start_wall,
        load=load,
        delivered=end_delivered - start_delivered,
        lowest_delivered=_lowest_rate(samples),
        backlog=backlog,
        drain_seconds=drain_seconds,
        undelivered=max(accepted_total - sink.delivered, 0) if app != "floor" else 0,
        failed=failed,
        error_kinds=error_kinds,
        outbox=counts,
        outbox_window=in_window,
        server_cpu_window=end_server[1] - start_server[1],
        server_cpu_total=server_end[1] - before_load[1],
        server_rss_mb=rss,
        sink_cpu_window=end_sink[1] - start_sink[1],
        other_cpu=max(end_machine - start_machine - own_user, 0.0),
    )


def _drain(sink: CountingSink, server: Service, accepted: int, limit: float) -> float:
    """Wait until every accepted message reached the sink or failed (a traceback in the seed's log), or nothing
    changed for ``IDLE_LIMIT`` s, or ``limit`` s passed; returns the seconds from the end of the load to the last
    delivery seen."""
    start = last_delivery = last_change = time.perf_counter()
    delivered, settled = sink.delivered, sink.delivered + server.logged_errors()
    while settled < accepted:
        now = time.perf_counter()
        if now - last_change >= IDLE_LIMIT or now - start >= limit:
            break
        time.sleep(0.5)
        now_delivered = sink.delivered
        now_settled = now_delivered + server.logged_errors()
        if now_delivered != delivered:
            delivered, last_delivery = now_delivered, time.perf_counter()
        if now_settled != settled:
            settled, last_change = now_settled, time.perf_counter()
    return last_delivery - start


def undisturbed_trial(app: App, postfix: Postfix, settings: Settings, plan: Plan) -> Trial:
    """A trial started on a quiet machine; in a full run repeated once if other programs used a core's
    ``DISTURBED`` share meanwhile (the least disturbed attempt is kept)."""
    attempts: list[Trial] = []
    for _ in range(1 if settings.quick else ATTEMPTS):
        load = wait_until_quiet(settings.quiet_timeout)
        if load >= DISTURBED:
            print(f"  (other programs keep {load:.2f} cores busy; measuring anyway)", flush=True)
        attempts.append(trial(app, postfix, settings, plan))
        result = attempts[-1]
        print(
            f"  {app}: {result.accepted:,} accepted in {result.seconds:.1f} s = {result.accept_rate:,.0f}/s, "
            f"p99 {result.latency_ms('0.99'):.1f} ms; delivered {result.delivery_rate:,.0f}/s; backlog "
            f"{result.backlog:,}, drained in {result.drain_seconds:.1f} s, undelivered {result.undelivered:,} "
            f"(other programs: {result.other_cores:.2f} cores)",
            flush=True,
        )
        if result.other_cores < DISTURBED:
            break
    return min(attempts, key=lambda t: t.other_cores)


# -- the report ----------------------------------------------------------------------------------------------------


def _http_table(trials: list[Trial]) -> str:
    header = [
        "server",
        "accepted",
        "seconds",
        "accepted/s",
        f"lowest {WINDOW} s, /s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "refused + errors",
        "load generator cores",
    ]
    rows = [
        [
            APP_LABELS[t.app],
            f"{t.accepted:,}",
            f"{t.seconds:.1f}",
            f"**{t.accept_rate:,.0f}**",
            f"{t.lowest_accept_rate:,.0f}",
            f"{t.latency_ms('0.5'):.1f}",
            f"{t.latency_ms('0.9'):.1f}",
            f"**{t.latency_ms('0.99'):.1f}**",
            f"{t.latency_ms('1'):.1f}",
            f"{int(t.load['refused']) + int(t.load['errors']):,}",
            f"{float(t.load['cpu_total']) / t.seconds:.2f}",
        ]
        for t in trials
    ]
    return markdown_table(header, rows, [False, *([True] * 10)])


def _delivery_table(trials: list[Trial]) -> str:
    header = [
        "server",
        "delivered/s",
        f"lowest {WINDOW} s, /s",
        "backlog when the load stopped",
        "drained in s",
        "never delivered",
        "failed sends",
        "server cores (load)",
        "server CPU s / 1k msgs",
        "server peak RSS MB",
        "smtp-sink cores",
        "other programs, cores",
    ]
    rows = [
        [
            APP_LABELS[t.app],
            f"**{t.delivery_rate:,.0f}**",
            f"{t.lowest_delivered:,.0f}",
            f"{t.backlog:,}",
            f"{t.drain_seconds:.1f}",
            f"{t.undelivered:,}",
            f"{t.failed:,}",
            f"{t.server_cpu_window / t.seconds:.2f}",
            f"{t.server_cpu_total / max(t.accepted_total, 1) * 1000:.2f}",
            f"{t.server_rss_mb:,.0f}",
            f"{t.sink_cpu_window / t.seconds:.2f}",
            f"{t.other_cores:.2f}",
        ]
        for t in trials
        if t.app != "floor"
    ]
    return markdown_table(header, rows, [False, *([True] * 11)])


def _targets(trials: list[Trial], plan: Plan) -> list[str]:
    by_app = {t.app: t for t in trials}
    lines = []
    mailsc = by_app.get("mailsc")
    if mailsc is not None:
        checks = [
            (
                "accepted/s (mailsc, SQLite)",
                mailsc.accept_rate,
                f">= {ACCEPT_TARGET:,.0f}/s",
                mailsc.accept_rate >= ACCEPT_TARGET,
            ),
            (
                "p99 latency",
                mailsc.latency_ms("0.99"),
                f"< {P99_TARGET_MS:g} ms",
                mailsc.latency_ms("0.99") < P99_TARGET_MS,
            ),
            (
                f"end to end, delivered/s over {mailsc.seconds:.0f} s",
                mailsc.delivery_rate,
                f">= {E2E_TARGET:,.0f}/s for 60 s",
                mailsc.delivery_rate >= E2E_TARGET,
            ),
        ]
        for label, value, goal, met in checks:
            shown = f"{value:.1f} ms" if "latency" in label else f"{value:,.0f}/s"
            verdict = "met" if met else "missed"
            lines.append(f"- {label}: {shown} (target {goal}): **{verdict}**")
        if plan.seconds < 60:
            lines.append(f"- (quick run: {plan.seconds:g} s of load, not the 60 s the end-to-end target asks for)")
    seed = by_app.get("seed")
    if mailsc is not None and seed is not None and seed.accept_rate > 0 and seed.delivery_rate > 0:
        lines.append(
            f"- Baseline ratio, mailsc / seed pattern: accepted/s {mailsc.accept_rate / seed.accept_rate:.2f}x, "
            f"delivered/s {mailsc.delivery_rate / seed.delivery_rate:.2f}x, p99 latency "
            f"{mailsc.latency_ms('0.99') / max(seed.latency_ms('0.99'), 1e-9):.2f}x (lower is better)"
        )
    return lines


REPRODUCE = """How to reproduce (as root the first time: smtp-sink gets installed):

- `python -m bench.api` (or `make bench`, which runs every benchmark): 60 s of load per server, about 5 minutes
  with warm-up and drain; writes this section.
- `BENCH_QUICK=1 python -m bench.api`: 10 s per server; prints the tables, writes nothing.
- `BENCH_LOOP=asyncio`: the load generator on asyncio's own loop (the servers always use uvloop, as
  `mailsc serve` does)."""


def _notes(trials: list[Trial]) -> list[str]:
    """What the tables cannot show: the outbox's own count for mailsc, what became of the seed's messages."""
    notes = []
    for t in trials:
        if t.app == "mailsc":
            held = ", ".join(f"{n:,} {status}" for status, n in sorted(t.outbox.items()))
            notes.append(
                f"mailsc: the outbox agrees with the sink: {t.outbox_window:,} rows have `sent_at` inside the window "
                f"(the sink counted {t.delivered:,}); at the end the outbox held {held}."
            )
        elif t.app == "seed":
            kinds = "; ".join(f"{n:,} x `{kind}`" for kind, n in sorted(t.error_kinds.items(), key=lambda k: -k[1]))
            pending = max(t.undelivered - t.failed, 0)
            fate = (
                f"all of the {t.accepted_total:,} messages answered 200 reached the sink in the end"
                if t.undelivered == 0
                else f"of {t.accepted_total:,} messages answered 200, {t.undelivered:,} never reached the sink: "
                f"{t.failed:,} background sends failed ({kinds or 'no traceback'}) and {pending:,} were still "
                "pending when the server was stopped"
            )
            notes.append(
                f"Seed pattern: {fate}. Its backlog is held only in the server's memory: on SIGTERM "
                "uvicorn waits for the background tasks (with no limit unless `--timeout-graceful-shutdown`), but "
                "a crash, an OOM kill, or a process manager's SIGKILL after its grace period (`docker stop`: 10 s) "
                "loses all of it, with no record of which messages they were."
            )
    return notes


def report(trials: list[Trial], settings: Settings, plan: Plan, postfix: Postfix) -> str:
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("mailsc", "fastapi", "starlette", "uvicorn", "httptools", "pydantic", "aiosmtplib")
    )
    versions += f", SQLAlchemy {package_version('sqlalchemy')}, aiosqlite {package_version('aiosqlite')}, "
    versions += f"SQLite {sqlite3.sqlite_version}."
    setup = [
        f"- Load: {CONNECTIONS} keep-alive HTTP/1.1 connections from a separate process (a raw asyncio client on "
        f"{settings.loop_name}), each POSTing a {len(_body(0)):,}-byte JSON message (`to` differs per request, "
        "`subject`, `text`) and sending the next as soon as the answer arrives: a closed loop, so accepted/s is "
        f"what the server sustains. {plan.warmup:g} s of warm-up, then {plan.seconds:g} s measured; latency is "
        "from writing the request to reading the whole answer.",
        "- **mailsc serve**: `python -m mailsc serve` (uvicorn, uvloop, httptools, no access log, "
        "`MAILSC_LOG_LEVEL=warning`) with `MAILSC_DATABASE_URL=sqlite:///<tmp>/outbox.db` (a fresh file) and "
        "`MAILSC_SMTP_SECURITY=none` to the sink; `POST /v1/messages` answers 202 after the row is committed, and "
        "its delivery worker delivers from the outbox: by default on a host with two or more cores, as here, a "
        "`mailsc worker` child the API process starts (256 messages in flight, SMTP pool of 4); server CPU and "
        "peak RSS are summed over both processes.",
        "- **seed pattern** (`bench/seed_app.py`): FastAPI, `POST /send` with a pydantic model (`to: EmailStr`), "
        "an `EmailMessage`, `background_tasks.add_task(aiosmtplib.send, message, hostname=..., port=...)` and "
        "200 at once; same uvicorn options. Each message is one new SMTP connection, after the response, held "
        "only in memory; nothing bounds how many run at once.",
        "- **reference** (`bench/seed_app.py --no-send`, HTTP table only): the same FastAPI app answering 200 "
        f"after validating the body, building and sending nothing, for {min(plan.seconds, FLOOR_SECONDS):g} s: "
        "what uvicorn + FastAPI + pydantic alone sustain on this machine, the ceiling for any endpoint doing real "
        "work.",
        f"- Sink: **Postfix smtp-sink {postfix.version}** with `-c`, whose running count of received messages gives "
        "delivered/s for both servers. Each server, the sink and the load generator run in their own processes "
        f"on 127.0.0.1 ({len(os.sched_getaffinity(0))} CPUs shared by all three).",
        "- **delivered/s**: messages the sink received during the measured window / its length (messages accepted "
        "during warm-up count when they arrive). **Backlog**: accepted but not yet at the sink when the load "
        "stopped (mailsc: rows still queued in the outbox; seed: background tasks in the server's memory). Then "
        "the servers drain until every accepted message reached the sink or failed (or nothing changed for "
        f"{IDLE_LIMIT:g} s, or {plan.drain_limit:g} s passed); **drained in** is the time to the last delivery. "
        "**Never delivered** = accepted - received by the sink at the end; **failed sends**: mailsc rows "
        "`failed`, seed tracebacks in the server log (the message is gone, the client was told 200).",
        "- Server CPU: user + system seconds of the server process and its children (all threads), from before the "
        "warm-up to the end of the drain, per 1,000 accepted messages: the whole cost of accepting and delivering "
        "them. Server cores (load): its CPU during the measured window / the window. Peak RSS: `VmHWM`, summed "
        "over the server's processes. Other programs: user "
        "CPU of everything else on the machine during the window. Each trial waits for a quiet machine first"
        + ("." if settings.quick else f" and is repeated once if other programs used {DISTURBED:g} cores or more."),
    ]
    return "\n\n".join(
        [
            f"{machine_line(settings)} {versions}",
            "\n".join(setup),
            "HTTP side (measured window):",
            _http_table(trials),
            "Delivery side:",
            _delivery_table(trials),
            *_notes(trials),
            "Targets:\n\n" + "\n".join(_targets(trials, plan)),
            REPRODUCE,
        ]
    )


def run(settings: Settings) -> Section:
    """Measure mailsc and the seed pattern under the same load; returns the ``## API`` section."""
    plan = Plan.for_run(settings.quick)
    postfix = install_postfix_tools()
    print(f"api: {', '.join(APPS)}, {plan.seconds:g} s of load each, {CONNECTIONS} connections", flush=True)
    trials = [undisturbed_trial(app, postfix, settings, plan) for app in APPS]
    return Section("API", report(trials, settings, plan, postfix))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    loadgen = sub.add_parser("loadgen", help="the load generator process (started by the benchmark)")
    loadgen.add_argument("--port", type=int, required=True)
    loadgen.add_argument("--path", required=True)
    loadgen.add_argument("--connections", type=int, default=CONNECTIONS)
    loadgen.add_argument("--warmup", type=float, default=2.0)
    loadgen.add_argument("--seconds", type=float, default=10.0)
    loadgen.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = parser.parse_args(argv)
    if args.command == "loadgen":
        with asyncio.Runner(loop_factory=event_loop(args.loop)[1]) as runner:
            runner.run(_load(args.port, args.path, args.connections, args.warmup, args.seconds))
        return
    settings = Settings.from_env()
    section = run(settings)
    print(f"\n## {section.title}\n\n{section.markdown}\n", flush=True)
    if settings.quick:
        print("(quick run: docs/benchmarks.md left unchanged)")
    else:
        write_section(section)
        print("(written to docs/benchmarks.md)")


if __name__ == "__main__":
    main()
