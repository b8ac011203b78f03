"""A peer for the summary benchmark: fastapi-mail's ``FastMail.send_message`` from a FastAPI endpoint.

This module runs only under the separate virtual environment ``bench/.venv-fastapi-mail`` (created by
``bench.peers``; fastapi-mail is never a dependency of mailsc), so it imports nothing from mailsc. ``POST /send``
takes the same JSON as mailsc's ``POST /v1/messages`` (``to``, ``subject``, ``text``) and does what fastapi-mail's
README shows: build a ``MessageSchema`` and ``await fm.send_message(message)``, which opens a new SMTP connection
(EHLO, STARTTLS when configured, MAIL, RCPT, DATA, QUIT) for this one message, then answers 200. Served by uvicorn
with the same options as ``mailsc serve`` (uvloop, httptools, no access log).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType  # type: ignore[import-not-found]
from pydantic import BaseModel, EmailStr

HOST = "127.0.0.1"


class SendRequest(BaseModel):
    to: EmailStr
    subject: str
    text: str


def create_app(smtp_port: int, sender: str, ca_file: str | None) -> FastAPI:
    config = ConnectionConfig(
        MAIL_USERNAME="",
        MAIL_PASSWORD="",
        MAIL_FROM=sender,
        MAIL_PORT=smtp_port,
        MAIL_SERVER=HOST,
        MAIL_STARTTLS=ca_file is not None,
        MAIL_SSL_TLS=False,
        USE_CREDENTIALS=False,
        VALIDATE_CERTS=True,
        CERT_BUNDLE=ca_file,
    )
    fm = FastMail(config)
    app = FastAPI(title="fastapi-mail send_message")

    @app.post("/send")
    async def send(request: SendRequest) -> dict[str, Any]:
        message = MessageSchema(
            subject=request.subject, recipients=[request.to], body=request.text, subtype=MessageType.plain
        )
        await fm.send_message(message)
        return {"status": "sent"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fastapi_mail_app", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--sender", default="app@example.com")
    parser.add_argument("--ca-file", help="STARTTLS, trusting this CA (fastapi-mail's CERT_BUNDLE)")
    args = parser.parse_args(argv)
    app = create_app(args.smtp_port, args.sender, args.ca_file)
    uvicorn.run(app, host=HOST, port=args.port, loop="uvloop", http="httptools", access_log=False, log_config=None)


if __name__ == "__main__":
    main()
