"""Running mailsc: ``check-config``, ``serve``, ``worker``, ``migrate``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import is_loopback
from ..delivery.worker import Worker
from ..mailer import Mailer
from ..process import freeze_startup_heap
from .common import EXIT_FAILED, EXIT_USAGE, _configure_logging, _errors, _fail, _on_store, _settings


def check_config() -> None:
    """Validate the configuration (environment and .env) and list every problem at once."""
    settings = _settings()
    smtp = settings.smtp
    if smtp is None:
        typer.echo("configuration valid: no SMTP server configured (mail is captured, not delivered)")
    else:
        typer.echo(
            f"configuration valid: SMTP {smtp.host}:{smtp.port} security={smtp.security} "
            f"verify_certs={smtp.verify_certs} pool_size={smtp.pool_size}"
        )


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [default: MAILSC_HOST, 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port [default: MAILSC_PORT, 8025]", show_default=False)
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="accept mail only; run `mailsc worker` processes to deliver it")
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="server processes sharing the port, each with its own delivery worker (one process uses one core)",
        ),
    ] = 1,
    worker_process: Annotated[
        bool | None,
        typer.Option(
            "--worker-process/--embedded-worker",
            help="deliver from a `mailsc worker` process this one starts and watches, or from inside this process "
            "[default: a worker process when this host gives us two or more cores]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the HTTP API (and, unless --no-worker, a delivery worker in the same process).

    With no API key (MAILSC_API_KEY or `mailsc keys create`) it listens on loopback addresses only.
    `--processes N` runs N such processes on one port (uvicorn's supervisor restarts any that dies); they share
    the outbox like separate `mailsc serve` processes would.
    On a host with two or more cores the delivery worker runs as a child process (one core each for accepting and
    delivering); `--embedded-worker` keeps it inside the API process.
    """
    settings = _settings()
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    exposed = not is_loopback(host)
    if exposed and settings.api_key is None and not _on_store(settings, lambda store: store.has_api_keys()):
        raise _fail(
            f"refusing to listen on {host}: no API key exists, so anyone who can reach it could send mail; "
            "create one with `mailsc keys create --name NAME` (or set MAILSC_API_KEY), or listen on 127.0.0.1",
            EXIT_USAGE,
        )
    if processes > 1 and worker_process:
        raise _fail("--worker-process needs --processes 1 (with several, each process delivers itself)", EXIT_USAGE)
    if worker_process is None:
        worker_process = processes == 1 and usable_cores() >= 2
    _configure_logging(settings)
    import uvicorn  # the service's dependencies load only when serving

    from ..api.app import create_app

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,
    }
    if processes > 1:
        # Each process builds its own app from the same environment (validated above); uvicorn needs an import
        # string to start them.
        os.environ[_RUN_WORKER] = "0" if no_worker else "1"
        uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=processes, **options)
        return
    with _errors():
        service = create_app(settings, run_worker=not no_worker, worker_process=worker_process, freeze_heap=True)
    uvicorn.run(service, **options)


_RUN_WORKER = "MAILSC_SERVE_RUN_WORKER"  # set by `serve --processes N` for the processes it starts


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity, e.g. a container's cpuset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def app_from_environment() -> Any:  # a FastAPI app (fastapi is imported only under api/)
    """The app of one `mailsc serve --processes N` process: settings and logging from the environment."""
    from ..api.app import create_app

    settings = _settings()
    _configure_logging(settings)
    return create_app(settings, run_worker=os.environ.get(_RUN_WORKER, "1") == "1", freeze_heap=True)


def worker(
    burst: Annotated[bool, typer.Option(help="deliver what is due, then exit")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="messages claimed and in flight at once")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="most messages one claim takes")] = 200,
    lease_seconds: Annotated[float, typer.Option(min=1, help="how long a claim holds a message")] = 300.0,
    grace: Annotated[float, typer.Option(min=0, help="seconds to finish in-flight sends on SIGTERM")] = 30.0,
    status_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="serve /healthz, /readyz and /metrics for this worker on this port",
            show_default=False,
        ),
    ] = None,
    status_host: Annotated[str, typer.Option(help="address for --status-port")] = "127.0.0.1",
    status_fd: Annotated[int | None, typer.Option(hidden=True, help="an inherited listening socket")] = None,
    parent_pid: Annotated[int | None, typer.Option(hidden=True, help="stop when this process is gone")] = None,
) -> None:
    """Run the delivery worker: claim due messages from the outbox and send them. SIGTERM drains and stops.

    `--status-port` gives the worker the API's health routes: its own delivery metrics for Prometheus, and a
    readiness probe that fails while its transport is paused (a broken SMTP setup)."""
    settings = _settings()
    _configure_logging(settings, rotate=parent_pid is None)  # serve's worker process: serve rotates the file
    status_socket = None
    if status_fd is not None:  # from `mailsc serve`, which reads this worker's health through it
        status_socket = socket.socket(fileno=status_fd)
        status_socket.setblocking(False)
    elif status_port is not None:
        from ..api.status import bind  # the HTTP stack loads only when asked for

        with _errors():
            status_socket = bind(status_host, status_port)

    async def _run() -> int:
        mailer = Mailer.from_env(settings)
        status = orphaned = None
        try:
            store = await mailer.outbox_store()
            delivery = Worker(
                store,
                mailer.transport,
                mailer.retry_policy,
                concurrency=concurrency,
                batch_size=batch_size,
                lease=timedelta(seconds=lease_seconds),
                grace=grace,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, delivery.stop)
            reloads: set[asyncio.Task[bool]] = set()

            def reload() -> None:  # SIGHUP: new settings, same queue and in-flight sends
                task = loop.create_task(mailer.reload_from_env())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            mailer.attach_worker(delivery)  # so a reload switches this worker's transport too
            loop.add_signal_handler(signal.SIGHUP, reload)
            loop.add_signal_handler(signal.SIGUSR1, delivery.wake)  # new mail: look now, not at the next poll
            orphaned = loop.create_task(_stop_when_orphaned(parent_pid, delivery)) if parent_pid else None
            if status_socket is not None:
                from ..api.status import StatusServer, create_status_app

                status = StatusServer(create_status_app(settings, mailer, store), status_socket)
                status.start()
            freeze_startup_heap()
            await delivery.run(burst=burst)
        finally:
            if orphaned is not None:
                orphaned.cancel()
            if status is not None:
                await status.stop()
            await mailer.aclose()
        return delivery.sent

    with _errors(), asyncio.Runner(loop_factory=_fast_loop()) as runner:
        sent = runner.run(_run())
    typer.echo(f"worker stopped after sending {sent} messages", err=True)


async def _stop_when_orphaned(parent_pid: int, delivery: Worker) -> None:
    """`mailsc serve`'s worker process: stop (draining) once the API process that started it is gone, even if it
    was SIGKILLed and could not say so."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event tells a process its parent died
        await asyncio.sleep(1.0)
    delivery.stop()


def _fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop, as `mailsc serve` uses (installed with uvicorn[standard]); asyncio's own loop where it is missing.
    The worker's per-message cost is mostly event-loop work, ~15% less on uvloop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - e.g. Windows
        return None
    return uvloop.new_event_loop


def migrate() -> None:
    """Create or upgrade the outbox schema (safe to run from several processes at once)."""
    settings = _settings()

    _on_store(settings, lambda store: store.migrate())  # opening migrates; again is a no-op
    typer.echo("outbox schema is up to date")


def _running_services() -> list[int]:
    """Process ids of this machine's ``mailsc serve`` and ``mailsc worker`` processes (Linux ``/proc``), without
    the worker processes ``serve`` started: it passes SIGHUP on to its own."""
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv if a]
        if any(w == "mailsc" or w.startswith("mailsc") for w in words) and {"serve", "worker"} & set(words):
            found[int(entry.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


def reload(
    pid: Annotated[list[int] | None, typer.Option("--pid", help="signal this process only; repeat for several")] = None,
) -> None:
    """Make running `mailsc serve` / `mailsc worker` processes re-read the configuration (SIGHUP): a rotated
    password or certificate takes effect without a restart; invalid new settings are refused and logged."""
    targets = list(pid) if pid else _running_services()
    if not targets:
        raise _fail("no running `mailsc serve` or `mailsc worker` process found", EXIT_FAILED)
    for target in targets:
        try:
            os.kill(target, signal.SIGHUP)
        except OSError as exc:
            raise _fail(f"cannot signal process {target}: {exc.strerror}", EXIT_FAILED) from None
    typer.echo(
        f"asked {len(targets)} process{'es' if len(targets) != 1 else ''} to reload: " + ", ".join(map(str, targets))
    )
