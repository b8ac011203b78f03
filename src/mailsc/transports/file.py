"""A transport that writes each message as an ``.eml`` file into a folder, for inspection in a mail client."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from ..envelope import Envelope
from .base import SendResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileTransport:
    """Writes ``<time>-<message-id>.eml`` files atomically (a partial file is never visible)."""

    name = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _write(self, envelope: Envelope) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns()}-{_UNSAFE.sub('_', envelope.message_id.strip('<>'))[:100]}"
        path = self.directory / f"{stem}.eml"
        temporary = self.directory / f".{stem}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(envelope.data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return path

    async def send(self, envelope: Envelope) -> SendResult:
        path = await asyncio.to_thread(self._write, envelope)
        return SendResult(envelope.message_id, envelope.recipients, reply=f"written to {path}", transport=self.name)

    async def aclose(self) -> None:
        return None
