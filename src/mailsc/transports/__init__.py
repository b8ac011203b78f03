"""Transports: how rendered messages leave mailsc."""

from .base import Outcome, SendResult, Transport, classify
from .file import FileTransport
from .memory import MemoryTransport
from .smtp import SmtpTransport

__all__ = ["FileTransport", "MemoryTransport", "Outcome", "SendResult", "SmtpTransport", "Transport", "classify"]
