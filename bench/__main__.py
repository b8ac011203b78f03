"""Entry for ``make bench``: run the benchmarks (all, or those named) and write their sections of docs/benchmarks.md.

A benchmark is a module with ``run(settings) -> Section``; add the next one (outbox, api) to ``BENCHMARKS``.
``BENCH_QUICK=1`` runs fewer messages and one trial, prints the tables, and leaves docs/benchmarks.md alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bench import DOC, Section, Settings, api, outbox, summary, templates, transport, transports, write_section

BENCHMARKS: dict[str, Callable[[Settings], Section]] = {
    "summary": summary.run,
    "transport": transport.run,
    "transports": transports.run,
    "outbox": outbox.run,
    "outbox-breaker": outbox.run_breaker,
    "api": api.run,
    "templates": templates.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default or `all`: every one)",
    )
    args = parser.parse_args(argv)
    if args.names == ["all"]:
        args.names = []
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    settings = Settings.from_env()
    for name in args.names or list(BENCHMARKS):
        section = BENCHMARKS[name](settings)
        print(f"\n## {section.title}\n\n{section.markdown}\n", flush=True)
        if settings.quick:
            print(f"(quick run: {DOC.relative_to(DOC.parents[1])} left unchanged)")
        else:
            write_section(section)
            print(f"(written to {DOC.relative_to(DOC.parents[1])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
