"""fastapi-mail's public names on mailsc: change ``from fastapi_mail import ...`` to
``from mailsc.compat.fastapi_mail import ...`` and the rest of the application stays as it is.

Behaviour follows fastapi-mail 1.6.8; the deliberate differences are listed in docs/migration.md (certificates
always verified unless ``VALIDATE_CERTS=False``, CR/LF and mailsc-owned headers refused, one pooled connection set
instead of a connection per call, durable delivery with ``OUTBOX_URL``).
"""

from pydantic import NameEmail

from .config import ConnectionConfig
from .errors import (
    ApiError,
    ConnectionErrors,
    DBProvaiderError,
    EmptyMessagesList,
    PydanticClassRequired,
    TemplateFolderDoesNotExist,
    WrongFile,
)
from .fastmail import FastMail
from .schemas import MessageSchema, MessageType, MultipartSubtypeEnum

__all__ = [
    "ApiError",
    "ConnectionConfig",
    "ConnectionErrors",
    "DBProvaiderError",
    "EmptyMessagesList",
    "FastMail",
    "MessageSchema",
    "MessageType",
    "MultipartSubtypeEnum",
    "NameEmail",
    "PydanticClassRequired",
    "TemplateFolderDoesNotExist",
    "WrongFile",
]
