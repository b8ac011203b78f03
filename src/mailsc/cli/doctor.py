"""``doctor``: walk the delivery setup step by step and stop at the first failing step, with the fix.

Exit codes: 0 every step passed (or nothing is configured to deliver: mail is captured), 1 a step failed, 2 the
configuration is invalid or a flag is. Output never contains a secret: the steps never carry one, and as a second
line of defence every configured secret value is masked in whatever is printed (a provider's diagnosis included).
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import SecretStr

from ..config import Settings
from ..doctor.steps import Step
from ..errors import ConfigError, MessageError
from ..message import Address
from .common import EXIT_FAILED, EXIT_USAGE, _configure_logging, _console, _errors, _fail

MASK = "********"


class SecurityOption(StrEnum):
    starttls = "starttls"
    tls = "tls"
    none = "none"


def doctor(
    to: Annotated[
        str | None, typer.Option("--to", help="also send a real test message to this address", show_default=False)
    ] = None,
    sender: Annotated[
        str | None,
        typer.Option("--from", help="sender to check [default: MAILSC_MAIL_FROM]", show_default=False),
    ] = None,
    host: Annotated[str | None, typer.Option(help="SMTP host, for a one-off check", show_default=False)] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="SMTP port, for a one-off check", show_default=False)
    ] = None,
    security: Annotated[
        SecurityOption | None, typer.Option(help="TLS mode, for a one-off check", show_default=False)
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.01, help="seconds per step [default: MAILSC_SMTP_TIMEOUT]", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the steps as JSON")] = False,
) -> None:
    """Diagnose the SMTP (or provider) setup step by step: configuration, DNS, TCP, greeting, EHLO, TLS and its
    certificate, port/mode mismatch, AUTH, login, MAIL FROM, and with --to a real test message. Stops at the first
    failing step and says what to change."""
    from ..doctor import configuration  # the probing code loads only when the command runs
    from ..doctor.dispatch import diagnose

    secrets: list[str] = []
    steps: list[Step] = []
    printer = _Printer(as_json, secrets)

    def record(step: Step) -> None:
        steps.append(step)
        printer.step(step)

    try:
        settings = Settings()
        secrets += _secrets(settings)
        smtp = configuration.with_overrides(
            settings,
            host=host,
            port=port,
            security=security.value if security is not None else None,
            timeout=timeout,
        )
    except ConfigError as exc:
        record(configuration.invalid(exc))
        printer.finish(steps)
        raise typer.Exit(EXIT_USAGE) from None
    if smtp is not None and smtp.password is not None:
        secrets.append(smtp.password.get_secret_value())
    try:
        from_address = Address.parse(sender) if sender is not None else None
    except MessageError as exc:
        raise _fail(f"--from: {exc}", EXIT_USAGE) from None
    _configure_logging(settings, interactive=True)
    record(configuration.valid(settings, smtp))
    with _errors():
        asyncio.run(diagnose(settings, smtp, sender=from_address, to=to, on_step=record))
    printer.finish(steps)
    if not all(step.ok for step in steps):
        raise typer.Exit(EXIT_FAILED)


def _secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings (passwords, API keys, URLs with credentials), to mask in output."""
    values = [getattr(settings, name) for name in type(settings).model_fields]
    return [value.get_secret_value() for value in values if isinstance(value, SecretStr)]


class _Printer:
    """Terminal: each step as it completes, the fix under a failing one. JSON: one document at the end."""

    def __init__(self, as_json: bool, secrets: list[str]) -> None:
        self.as_json = as_json
        self.secrets = secrets
        self.console = _console()

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:  # a shorter "secret" would mask ordinary words; none is ever printed anyway
                text = text.replace(secret, MASK)
        return text

    def step(self, step: Step) -> None:
        from rich.markup import escape

        if self.as_json:
            return
        mark = "[green]✔[/green]" if step.ok else "[bold red]✘[/bold red]"
        line = f"{mark} [bold]{escape(self.mask(step.title))}[/bold]"
        if step.detail:
            line += f": {escape(self.mask(step.detail))}"
        self.console.print(line)
        if step.fix:
            self.console.print(f"  [yellow]fix:[/yellow] {escape(self.mask(step.fix))}")

    def finish(self, typed: list[Step]) -> None:
        ok = all(s.ok for s in typed)
        if self.as_json:
            document = {"ok": ok, "steps": [s.as_dict() for s in typed]}
            typer.echo(self.mask(json.dumps(document, ensure_ascii=False, default=str)))
            return
        failed = next((s for s in typed if not s.ok), None)
        if any(s.data.get("transport") == "capture" for s in typed):
            self.console.print("nothing is delivered, so there is nothing more to check")
        elif failed is None:
            self.console.print("[green]all checks passed[/green]")
        else:
            self.console.print(f"[red]stopped at the first failing step:[/red] {failed.name}")
