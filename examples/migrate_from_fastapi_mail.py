"""fastapi-mail's guide app, migrated to mailsc by changing one import.

Everything below the import is the code fastapi-mail's documentation teaches, unchanged. What the changed import
gives it: one pool of SMTP connections reused by every request instead of a new connection, TLS handshake and login
per message; certificates verified; CR/LF header injection refused; and, with ``OUTBOX_URL=sqlite:///./mailsc.db``
in the environment, ``send_message`` stores the mail durably and a worker in this process delivers it, also after a
restart. Add ``lifespan=FastMail(conf).lifespan`` to ``FastAPI(...)`` to deliver from start-up and drain at
shutdown.

Run it::

    MAIL_USERNAME=me MAIL_PASSWORD=secret MAIL_FROM=me@example.com MAIL_SERVER=smtp.example.com MAIL_PORT=587 \\
        uvicorn examples.migrate_from_fastapi_mail:app
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel, EmailStr
from starlette.responses import JSONResponse

# from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType      <- before
from mailsc.compat.fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType  # <- after


class EmailSchema(BaseModel):
    email: list[EmailStr]


conf = ConnectionConfig(
    MAIL_USERNAME=os.getenv("MAIL_USERNAME", ""),
    MAIL_PASSWORD=os.getenv("MAIL_PASSWORD", ""),
    MAIL_FROM=os.getenv("MAIL_FROM", "noreply@example.com"),
    MAIL_PORT=int(os.getenv("MAIL_PORT", "587")),
    MAIL_SERVER=os.getenv("MAIL_SERVER", "localhost"),
    MAIL_FROM_NAME=os.getenv("MAIL_FROM_NAME", "Desired Name"),
    MAIL_STARTTLS=os.getenv("MAIL_STARTTLS", "True") == "True",
    MAIL_SSL_TLS=os.getenv("MAIL_SSL_TLS", "False") == "True",
    USE_CREDENTIALS=os.getenv("USE_CREDENTIALS", "True") == "True",
    VALIDATE_CERTS=True,
)

app = FastAPI()


html = """
<p>Thanks for using Fastapi-mail</p>
"""


@app.post("/email")
async def simple_send(email: EmailSchema) -> JSONResponse:
    message = MessageSchema(
        subject="Fastapi-Mail module",
        recipients=email.model_dump().get("email"),
        body=html,
        subtype=MessageType.html,
    )

    fm = FastMail(conf)
    await fm.send_message(message)
    return JSONResponse(status_code=200, content={"message": "email has been sent"})
