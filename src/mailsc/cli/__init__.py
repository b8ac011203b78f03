"""The ``mailsc`` command line (typer + rich).

Commands: ``serve``, ``worker``, ``migrate``, ``check-config``, ``send``, ``send-bulk``,
``keys create|list|revoke``, ``outbox list|show|retry|cancel|purge``.

Exit codes:

=====  ==========================================================================================================
0      done (``send --wait``: the message was sent; ``send-bulk``: every row is queued, now or by an earlier run)
1      the operation failed: the outbox is unreachable, no such message or key, the message's state does not allow
       it, a direct send (``send --now``) was refused, ``send --wait`` ended failed/expired/cancelled, or
       ``send-bulk`` refused some rows (each is listed with its line number)
2      usage or configuration: bad flags or input, an invalid message, invalid settings, or ``serve`` refusing a
       non-loopback address while no API key exists
3      ``send --wait`` timed out; the message stays queued
130    interrupted (Ctrl-C); ``send-bulk`` can simply be re-run: no row is queued twice
=====  ==========================================================================================================

Errors print on stderr as one ``error: ...`` line, never a traceback (invalid settings list each problem on its own
line). Entry points configure logging; nothing else does.
"""

from __future__ import annotations

import typer

from . import doctor, keys, outbox, send, send_bulk, service

app = typer.Typer(
    help="mailsc: durable, pooled, verified-TLS email for Python web apps.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold a freshly generated API key or a password
)
app.add_typer(keys.keys_app, name="keys")
app.add_typer(outbox.outbox_app, name="outbox")
app.command("check-config")(service.check_config)
app.command()(service.serve)
app.command()(service.worker)
app.command()(service.migrate)
app.command()(service.reload)
app.command()(send.send)
app.command("send-bulk")(send_bulk.send_bulk)
app.command("doctor")(doctor.doctor)
