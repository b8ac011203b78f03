"""``keys create|list|revoke``: API keys for the HTTP API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ..keys import generate_key, hash_key
from .common import EXIT_FAILED, EXIT_USAGE, _console, _dumps, _fail, _on_store, _settings, _when

keys_app = typer.Typer(help="API keys: create (shown once, stored hashed), list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="what the key is for, e.g. the app using it")]) -> None:
    """Create an API key and print it, once: only its hash is stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise _fail("--name must be 1-100 characters", EXIT_USAGE)
    settings = _settings()
    key = generate_key()

    record = _on_store(settings, lambda store: store.add_api_key(name, hash_key(key)))
    typer.echo(key)
    typer.echo(f"created API key {name!r} (id {record.id}); it is not shown again: store it now", err=True)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List API keys (never any key material)."""
    settings = _settings()
    records = _on_store(settings, lambda store: store.list_api_keys())
    if as_json:
        typer.echo(_dumps([asdict(r) for r in records]))
        return
    if not records:
        typer.echo("no API keys; create one with `mailsc keys create --name NAME`")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("id", "name", "created (UTC)", "revoked (UTC)")
    for record in records:
        table.add_row(record.id, Text(record.name), _when(record.created_at), _when(record.revoked_at))
    _console().print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="the key's id or name")]) -> None:
    """Revoke an API key (every active key of that name)."""
    settings = _settings()
    if not _on_store(settings, lambda store: store.revoke_api_key(key)):
        raise _fail(f"no active API key with id or name {key!r}", EXIT_FAILED)
    typer.echo(f"revoked {key}")
