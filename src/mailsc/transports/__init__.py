"""Transports: how rendered messages leave mailsc."""

from .base import Outcome, SendResult, Transport, classify
from .capture import CaptureTransport
from .file import FileTransport
from .memory import MemoryTransport
from .smtp import SmtpTransport

__all__ = [
    "CaptureTransport",
    "FileTransport",
    "MemoryTransport",
    "Outcome",
    "SendResult",
    "SmtpTransport",
    "Transport",
    "classify",
]
