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
    TemplateNotFoundError,
    TlsSetupError,
)
from .mailer import Mailer
from .message import Address, Attachment, Message
from .mime import render
from .templates import FileTemplates, RenderedTemplate, TemplateLimits
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
    "FileTemplates",
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
    "RenderedTemplate",
    "SendResult",
    "SenderNotAcceptedError",
    "SenderRefusedError",
    "Settings",
    "SmtpConnectError",
    "SmtpTransport",
    "TemplateError",
    "TemplateLimits",
    "TemplateNotFoundError",
    "TlsSetupError",
    "Transport",
    "__version__",
    "render",
]
