"""A bare SMTP conversation over asyncio streams, for diagnosis.

The doctor speaks SMTP itself rather than through aiosmtplib because it must see what a client library hides: the
first bytes a port sends (a plaintext greeting on a port configured for implicit TLS, or nothing at all from a TLS
port asked for a greeting), the exact reply to every command, and the TLS session after STARTTLS. It never sends
mail through this session; the optional test message goes through the real ``SmtpTransport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from dataclasses import dataclass

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*?)\r?\n$", re.DOTALL)
MAX_LINE = 4096


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and text lines (several for a multi-line reply such as EHLO's)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " / ".join(line for line in self.lines if line)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class NotSmtpError(Exception):
    """The server sent bytes that are not an SMTP reply; ``received`` holds them."""

    def __init__(self, received: bytes) -> None:
        self.received = received
        super().__init__(f"not an SMTP reply: {shown(received)}")


class ClosedError(ConnectionError):
    """The server closed the connection; ``received`` holds any partial line it sent first."""

    def __init__(self, received: bytes = b"") -> None:
        self.received = received
        super().__init__("the server closed the connection")


def shown(data: bytes, limit: int = 60) -> str:
    """Bytes as a short printable excerpt for a diagnosis."""
    text = data[:limit].decode("ascii", errors="replace")
    text = "".join(c if c.isprintable() else "." for c in text)
    return repr(text + ("..." if len(data) > limit else ""))


class SmtpSession:
    """Reads replies line by line with a timeout per reply; ``start_tls`` upgrades the same connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self._buffer = b""

    @classmethod
    async def open(
        cls,
        sock: socket.socket,
        timeout: float,  # noqa: ASYNC109 - kept per reply, not for one await
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> SmtpSession:
        """Wrap a connected socket (already connected, so the caller could report TCP and TLS separately)."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
                ssl_handshake_timeout=timeout if tls is not None else None,
                limit=MAX_LINE * 4,
            )
        return cls(reader, writer, timeout)

    @property
    def tls(self) -> ssl.SSLObject | None:
        value = self.writer.get_extra_info("ssl_object")
        return value if isinstance(value, ssl.SSLObject) else None

    async def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise NotSmtpError(self._buffer)
            chunk = await self.reader.read(1024)
            if not chunk:
                raise ClosedError(self._buffer)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    async def reply(self) -> Reply:
        """The next reply; raises ``TimeoutError``, ``ClosedError`` or ``NotSmtpError``."""
        lines: list[str] = []
        code = 0
        async with asyncio.timeout(self.timeout):
            while True:
                raw = await self._line()
                match = _REPLY_LINE.match(raw)
                if match is None or (lines and int(match.group(1)) != code):
                    raise NotSmtpError(raw)
                code = int(match.group(1))
                lines.append(match.group(3).decode("utf-8", errors="replace").strip())
                if match.group(2) == b" ":
                    return Reply(code, tuple(lines))

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        return await self.reply()

    def pending(self) -> bytes:
        """Bytes received but not yet read as a reply (after STARTTLS's 220 there must be none)."""
        return self._buffer

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self._buffer = b""
        async with asyncio.timeout(self.timeout):
            await self.writer.start_tls(context, server_hostname=server_hostname, ssl_handshake_timeout=self.timeout)

    async def close(self, *, polite: bool = True) -> None:
        """QUIT when asked (and the session still works), then close; never raises."""
        with contextlib.suppress(Exception):
            if polite and not self.writer.is_closing():
                self.writer.write(b"QUIT\r\n")
                async with asyncio.timeout(min(self.timeout, 2.0)):
                    await self.reply()
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(min(self.timeout, 2.0)):
                await self.writer.wait_closed()
