"""The baseline for the API benchmark: the "send email from FastAPI" pattern of the tutorials, which mailsc replaces.

``POST /send`` takes the same JSON as mailsc's ``POST /v1/messages`` (``to``, ``subject``, ``text``), answers 200
at once, and hands the message to ``BackgroundTasks``: after the response, ``aiosmtplib.send()`` opens a new SMTP
connection for this one message (EHLO, MAIL, RCPT, DATA, QUIT). Nothing is stored: the message lives only in the
task's memory until the server says 250, the number of such tasks (and connections) is unbounded, and a send that
fails is logged by the server and gone.

``python -m bench.seed_app --port P --smtp-port S`` serves it with the same uvicorn options as ``mailsc serve``
(uvloop, httptools, no access log), sending to ``--smtp-host`` (loopback) in plaintext, or with STARTTLS given
``--ca-file``. With ``--no-send`` the
endpoint validates the request and answers without building or sending anything: the floor of uvicorn + FastAPI +
pydantic on the machine, for reference.
"""

from __future__ import annotations

import argparse
from email.message import EmailMessage

import aiosmtplib
import uvicorn
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel, EmailStr

HOST = "127.0.0.1"


class SendRequest(BaseModel):
    """The tutorials' request model."""

    to: EmailStr
    subject: str
    text: str


def create_seed_app(
    smtp_host: str, smtp_port: int, sender: str, *, send: bool = True, ca_file: str | None = None
) -> FastAPI:
    """The baseline service: accept, answer, send in the background over a new connection per message.

    ``send=False``: validate and answer only (the framework's floor). ``ca_file``: STARTTLS on every connection,
    verified against this CA, as the tutorials' ``start_tls=True`` (each call builds its own ``SSLContext``)."""
    app = FastAPI(title="seed pattern: FastAPI BackgroundTasks + aiosmtplib.send")

    @app.post("/send")
    async def send_one(request: SendRequest, background_tasks: BackgroundTasks) -> dict[str, str]:
        if not send:
            return {"status": "accepted"}
        message = EmailMessage()
        message["From"] = sender
        message["To"] = request.to
        message["Subject"] = request.subject
        message.set_content(request.text)
        background_tasks.add_task(
            aiosmtplib.send,
            message,
            hostname=smtp_host,
            port=smtp_port,
            start_tls=ca_file is not None,
            cert_bundle=ca_file,
        )
        return {"status": "queued"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="HTTP port on 127.0.0.1")
    parser.add_argument("--smtp-host", default=HOST, help="SMTP server (plaintext: keep it on loopback)")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--sender", default="app@example.com", help="the From address")
    parser.add_argument("--no-send", action="store_true", help="validate and answer only; send nothing")
    parser.add_argument("--ca-file", help="STARTTLS on every connection, trusting this CA")
    args = parser.parse_args(argv)
    app = create_seed_app(args.smtp_host, args.smtp_port, args.sender, send=not args.no_send, ca_file=args.ca_file)
    uvicorn.run(app, host=HOST, port=args.port, loop="uvloop", http="httptools", access_log=False, log_config=None)


if __name__ == "__main__":
    main()
