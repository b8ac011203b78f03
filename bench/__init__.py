"""mailsc benchmarks. ``python -m bench`` (``make bench``) runs every benchmark registered in ``bench.__main__``.

Each benchmark module exposes ``run(settings) -> Section``; this package holds what they share: the run settings
read from the environment, the description of the machine, Markdown helpers, and the writer that replaces one
section of docs/benchmarks.md while keeping the others (and any text written by hand outside the generated part).
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_DOC_HEADER = """# Benchmarks

Numbers measured by `make bench` (`.venv/bin/python -m bench`), one section per benchmark. A full run rewrites the
part of each section between its `bench:` comments; text outside those comments is kept. `BENCH_QUICK=1 make bench`
is a quick check that prints its tables and leaves this file alone.
"""


@dataclass(frozen=True)
class Settings:
    """How this run was asked for, from the environment.

    ``BENCH_QUICK=1``: fewer messages, one trial. ``BENCH_LOOP=uvloop|asyncio``: the clients' event loop.
    ``BENCH_QUIET_TIMEOUT``: seconds to wait, before each trial, for other programs to stop using the CPU.
    """

    quick: bool
    loop_name: str
    loop_factory: LoopFactory
    quiet_timeout: float

    @classmethod
    def from_env(cls) -> Settings:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        loop_name, factory = event_loop(os.environ.get("BENCH_LOOP", "uvloop"))
        quiet_timeout = float(os.environ.get("BENCH_QUIET_TIMEOUT", "5" if quick else "120"))
        return cls(quick=quick, loop_name=loop_name, loop_factory=factory, quiet_timeout=quiet_timeout)


@dataclass(frozen=True)
class Section:
    """One benchmark's contribution to docs/benchmarks.md: ``## {title}`` and its generated Markdown.

    ``first``: a new section goes at the top, under the file's introduction, instead of at the end."""

    title: str
    markdown: str
    first: bool = False


def event_loop(wanted: str) -> tuple[str, LoopFactory]:
    """The event loop to run clients in: uvloop when wanted and installed, else asyncio's own.

    uvloop is optional (not a mailsc dependency), so it is imported by name: the bench runs and type-checks either way.
    """
    if wanted == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return f"uvloop {uvloop.__version__}", factory
    elif wanted != "asyncio":
        raise SystemExit(f"BENCH_LOOP must be asyncio or uvloop, not {wanted!r}")
    return "asyncio (default loop)", asyncio.new_event_loop


def machine_user_seconds() -> float:
    """User CPU seconds all processes on this machine have used since boot (/proc/stat: user + nice)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[1]) + int(fields[2])) / CLOCK_TICKS


def wait_until_quiet(timeout: float, max_cores: float = 0.2, window: float = 0.5) -> float:
    """Wait until the machine uses less than ``max_cores`` of CPU over ``window`` seconds, or ``timeout`` passes.

    Benchmarks share the machine with whatever else runs on it (test suites of other sessions, say); a trial that
    starts while another program keeps a core busy measures that program as much as the code. Returns the load
    (cores) last seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        before = machine_user_seconds()
        time.sleep(window)
        load = (machine_user_seconds() - before) / window
        if load < max_cores or time.monotonic() >= deadline:
            return load


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo and the number of CPUs this process may use."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs"


def machine_line(settings: Settings) -> str:
    """Date, CPU, Python and the event loop: the facts every section states first."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"Measured {now} on {cpu_model()} ({platform.system()} {platform.release()}); {python}; {settings.loop_name}."
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """A Markdown table; ``right[i]`` right-aligns column ``i`` (numbers)."""
    rule = ["---:" if r else "---" for r in right]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def write_section(section: Section, path: Path = DOC) -> None:
    """Replace the generated part of ``## {title}`` in ``path`` (adding the section if new), keeping the rest."""
    key = section.title.lower()
    begin = f"<!-- bench:{key} begin: generated by `python -m bench`, edits between these comments are overwritten -->"
    end = f"<!-- bench:{key} end -->"
    text = path.read_text() if path.exists() else _DOC_HEADER
    generated = f"{begin}\n{section.markdown.strip()}\n{end}"
    before, found, rest = text.partition(begin)
    if found and end in rest:
        text = before + generated + rest.partition(end)[2]
    elif section.first and "\n## " in text:
        intro, _, sections = text.partition("\n## ")
        text = f"{intro.rstrip()}\n\n## {section.title}\n\n{generated}\n\n## {sections}"
    else:
        text = f"{text.rstrip()}\n\n## {section.title}\n\n{generated}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
