"""mailsc: the email layer for Python web apps.

``from mailsc import Mailer, Message, ConnectionConfig`` is the library surface; ``mailsc serve`` is the service.
"""

from .config import ConnectionConfig, Settings
from .envelope import Envelope
from .errors import (
    AuthenticationError,
    ConfigError,
    ConfigProblem,
    ConnectionSetupError,
    DeliveryError,
    MailscError,
    MessageError,
    OutboxError,
    RecipientRefusal,
    RecipientsRefusedError,
    SenderNotAcceptedError,
    SenderRefusedError,
    SmtpConnectError,
    TemplateError,
    TlsSetupError,
)
from .mailer import Mailer
from .message import Address, Attachment, Message
from .mime import render
from .transports import FileTransport, MemoryTransport, Outcome, SendResult, SmtpTransport, Transport

__version__ = "0.1.0"

__all__ = [
    "Address",
    "Attachment",
    "AuthenticationError",
    "ConfigError",
    "ConfigProblem",
    "ConnectionConfig",
    "ConnectionSetupError",
    "DeliveryError",
    "Envelope",
    "FileTransport",
    "Mailer",
    "MailscError",
    "MemoryTransport",
    "Message",
    "MessageError",
    "OutboxError",
    "Outcome",
    "RecipientRefusal",
    "RecipientsRefusedError",
    "SendResult",
    "SenderNotAcceptedError",
    "SenderRefusedError",
    "Settings",
    "SmtpConnectError",
    "SmtpTransport",
    "TemplateError",
    "TlsSetupError",
    "Transport",
    "__version__",
    "render",
]
