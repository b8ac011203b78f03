"""The account steps of the SMTP walk, once the connection is up: AUTH mechanisms, login, the sender at MAIL FROM,
and optionally a real test message. The password is only ever written, base64-encoded, to the server."""

from __future__ import annotations

import base64
import contextlib
import hmac
from collections.abc import Callable

from ..config import ConnectionConfig
from ..errors import DeliveryError, MessageError
from ..message import Address
from .hints import SECURITY_VARIABLE, login_fix, sender_fix
from .probes import Prober, describe
from .session import Reply, SmtpSession
from .walk import FAILURES, Walk, dropped_fix

_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")  # the ones SmtpTransport speaks, in its order of preference


class AccountSteps(Walk):
    """Needs ``config``, ``sender``, ``to``, ``session``, ``prober`` and ``where`` from the connection walk."""

    config: ConnectionConfig
    sender: Address | None
    to: str | None
    session: SmtpSession | None
    prober: Prober
    where: str

    async def exchange(
        self, name: str, title: str, command: str, expected: int, refused: str, fix: str | Callable[[int], str]
    ) -> Reply:
        """``command`` sent in the session, its reply returned; the step fails when the line drops or the reply's
        code is not ``expected`` (the detail starts with ``refused``; ``fix`` may depend on the code)."""
        assert self.session is not None
        verb = command.partition(":")[0] if ":" in command else command.split(" ")[0]  # MAIL FROM, EHLO, STARTTLS
        try:
            reply = await self.session.command(command)
        except FAILURES as exc:
            self.fail(name, title, f"no usable reply to {verb}: {describe(exc)}", dropped_fix(exc))
        if reply.code != expected:
            self.fail(name, title, f"{refused}: {reply}", fix(reply.code) if callable(fix) else fix, code=reply.code)
        return reply

    async def authenticate(self, extensions: dict[str, str]) -> None:
        title = "Authentication mechanisms offered"
        config = self.config
        mechanisms = extensions.get("AUTH", "").upper().split()
        if config.username is None or config.password is None:
            detail = "no credentials configured"
            if mechanisms:
                detail += f"; the server offers AUTH {' '.join(mechanisms)} (if it requires a login, MAIL FROM fails)"
            self.ok("auth", title, detail, mechanisms=mechanisms)
            return
        if not mechanisms:
            if config.security == "none" and "STARTTLS" in extensions:
                self.fail(
                    "auth",
                    title,
                    f"{self.where} offers AUTH only after TLS (it offers STARTTLS), and security=none is configured",
                    f"set {SECURITY_VARIABLE}=starttls: the server keeps passwords off the wire in clear",
                )
            fix = (
                "if the server needs no login (a relay that trusts this network), unset MAILSC_SMTP_USERNAME and "
                "MAILSC_SMTP_PASSWORD; otherwise check the port: submission ports (587, 465) offer AUTH, port 25 "
                "often does not"
            )
            if config.security == "none":
                fix += "; many servers offer AUTH only after TLS: use security=starttls or tls"
            self.fail("auth", title, f"{self.where} offers no authentication, but credentials are configured", fix)
        usable = [m for m in _MECHANISMS if m in mechanisms]
        if not usable:
            self.fail(
                "auth",
                title,
                f"the server offers AUTH {' '.join(mechanisms)}, none of which mailsc speaks "
                f"({', '.join(_MECHANISMS)})",
                "the provider may require OAuth (XOAUTH2): create an app password if it allows one, or use the "
                "provider's HTTP API transport",
                mechanisms=mechanisms,
            )
        self.ok(
            "auth",
            title,
            f"AUTH {' '.join(mechanisms)}; mailsc uses {usable[0]}",
            mechanisms=mechanisms,
            using=usable[0],
        )
        await self.login(usable[0])

    async def login(self, mechanism: str) -> None:
        assert self.session is not None
        assert self.config.username is not None
        assert self.config.password is not None
        username = self.config.username
        title = "Login"
        try:
            reply = await _auth(self.session, mechanism, username, self.config.password.get_secret_value())
        except FAILURES as exc:
            self.fail(title.lower(), title, f"the connection failed during AUTH: {describe(exc)}", dropped_fix(exc))
        if reply.code != 235:
            self.fail(
                "login",
                title,
                f"the server refused the login for {username!r}: {reply}",
                login_fix(reply.code, self.config.host, username),
                code=reply.code,
            )
        self.ok("login", title, f"logged in as {username!r} with {mechanism}: {reply}", username=username)

    async def mail_from(self, extensions: dict[str, str]) -> None:
        assert self.session is not None
        if self.sender is None:
            title = "The server accepts the sender"
            if self.to is not None:
                self.fail(
                    "mail_from",
                    title,
                    "no sender configured, so no test message can be sent",
                    "set MAILSC_MAIL_FROM (e.g. 'App <noreply@example.com>') or pass --from",
                )
            self.ok("mail_from", title, "skipped: no default sender (MAILSC_MAIL_FROM); messages must name theirs")
            return
        sender = self.sender.email
        title = f"The server accepts the sender {sender}"
        options = " SMTPUTF8" if not sender.isascii() and "SMTPUTF8" in extensions else ""
        reply = await self.exchange(
            "mail_from",
            title,
            f"MAIL FROM:<{sender}>{options}",
            250,
            f"MAIL FROM:<{sender}> refused",
            lambda code: sender_fix(code, sender),
        )
        self.ok("mail_from", title, str(reply), sender=sender)
        with contextlib.suppress(*FAILURES):  # the check is done; the session ends here anyway
            await self.session.command("RSET")

    async def test_message(self) -> None:
        assert self.sender is not None
        assert self.to is not None
        if self.session is not None:
            await self.session.close()
            self.session = None
        title = f"Test message to {self.to}"
        try:
            result = await self.prober.send_test_message(self.sender, self.to)
        except MessageError as exc:
            self.fail("test_message", title, f"not a valid recipient: {exc}", "give --to a full email address")
        except DeliveryError as exc:
            fix = exc.hint or (
                "the server refused the recipient: check the address; '550 5.7.1 relaying denied' means the server "
                "does not relay for this login or sender"
                if exc.smtp_code is not None and exc.smtp_code >= 500
                else "a temporary failure: try again later"
            )
            self.fail("test_message", title, str(exc), fix, code=exc.smtp_code)
        self.ok(
            "test_message",
            title,
            f"sent through mailsc's SMTP transport: {result.reply}",
            message_id=result.message_id,
            reply=result.reply,
        )


async def _auth(session: SmtpSession, mechanism: str, username: str, password: str) -> Reply:
    """One AUTH exchange with ``mechanism``; returns the final reply (235 on success)."""

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    if mechanism == "PLAIN":
        return await session.command("AUTH PLAIN " + b64(f"\0{username}\0{password}".encode()))
    if mechanism == "LOGIN":
        reply = await session.command("AUTH LOGIN")
        if reply.code == 334:
            reply = await session.command(b64(username.encode()))
        if reply.code == 334:
            reply = await session.command(b64(password.encode()))
        return reply
    reply = await session.command("AUTH CRAM-MD5")
    if reply.code == 334:
        challenge = base64.b64decode(reply.text)
        digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
        reply = await session.command(b64(f"{username} {digest}".encode()))
    return reply
