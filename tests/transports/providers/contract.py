"""Contract servers for SendGrid, Mailgun, Postmark and Resend: each checks a request exactly as the provider
documents it (method, path, auth header, content type, body fields) and answers as the provider does. A request
that breaks the contract gets a 418 and is listed in ``violations``, so a test sees it. ``script`` (a function of
the request) replaces the answer to a send, to inject 400/401/403/406/422/429/500 and slow replies."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

from tests.transports.providers.httpd import HttpServer, Reply, Request

KEY = "test-key-0123456789"
DOMAIN = "mg.example.com"
Script = Callable[[Request], Reply | None]


class ContractServer(HttpServer):
    """A loopback provider: ``kind`` is sendgrid, mailgun, postmark or resend."""

    def __init__(self, kind: str, **options: Any) -> None:
        super().__init__(self._handle, **options)
        self.kind = kind
        self.violations: list[str] = []
        self.script: Script | None = None
        self.sent: list[Request] = []
        self.account: Reply | None = None  # replaces the answer to the account (probe, doctor) endpoint
        self._ids = itertools.count(1)

    def _handle(self, request: Request) -> Reply:
        check, account_path = _CONTRACTS[self.kind]
        if request.method == "GET" and request.path == account_path:
            problem = _auth_problem(self.kind, request)
            if problem:
                return Reply(401, {"message": problem})
            return self.account or _ACCOUNT_ANSWERS[self.kind]
        problem = _auth_problem(self.kind, request) or check(request)
        if problem:
            self.violations.append(problem)
            return Reply(418, {"violation": problem})
        scripted = self.script(request) if self.script else None
        if scripted is not None:
            return scripted
        self.sent.append(request)
        return _success(self.kind, next(self._ids))


def _auth_problem(kind: str, request: Request) -> str | None:
    if kind in ("sendgrid", "resend"):
        ok = request.headers.get("authorization") == f"Bearer {KEY}"
    elif kind == "postmark":
        ok = (
            request.headers.get("x-postmark-server-token") == KEY
            and request.headers.get("accept") == "application/json"
        )
    else:
        expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
        ok = request.headers.get("authorization") == expected
    return None if ok else f"{kind}: missing or wrong credentials header"


def _json_post(request: Request, path: str) -> tuple[Any, str | None]:
    if request.method != "POST" or request.path != path:
        return None, f"expected POST {path}, got {request.method} {request.path}"
    if request.headers.get("content-type") != "application/json":
        return None, f"content-type {request.headers.get('content-type')!r}, not application/json"
    try:
        return request.json(), None
    except ValueError:
        return None, "the body is not JSON"


def _sendgrid(request: Request) -> str | None:
    body, problem = _json_post(request, "/v3/mail/send")
    if problem:
        return problem
    for p in body.get("personalizations", []):
        if not p.get("to") or not all("email" in a for a in p["to"]):
            return "each personalization needs a non-empty to list of {email}"
    if not body.get("personalizations"):
        return "personalizations missing"
    if "email" not in body.get("from", {}) or not body.get("subject"):
        return "from.email and subject are required"
    types = [c.get("type") for c in body.get("content", [])]
    if not types or types[0] != "text/plain" or any(not c.get("value") for c in body["content"]):
        return "content must start with text/plain and no value may be empty"
    for a in body.get("attachments", []):
        if not {"content", "filename"} <= set(a) or a.get("disposition") not in ("inline", "attachment"):
            return "an attachment needs content, filename and disposition inline|attachment"
    return None


def _postmark(request: Request) -> str | None:
    body, problem = _json_post(request, "/email")
    if problem:
        return problem
    if not body.get("From") or not (body.get("To") or body.get("Cc") or body.get("Bcc")) or "Subject" not in body:
        return "From, a recipient field and Subject are required"
    if not (body.get("TextBody") or body.get("HtmlBody")):
        return "TextBody or HtmlBody is required"
    if not isinstance(body.get("Headers", []), list) or not isinstance(body.get("Tag", ""), str):
        return "Headers is a list of {Name, Value} and Tag a single string"
    for a in body.get("Attachments", []):
        if not {"Name", "Content", "ContentType"} <= set(a):
            return "an attachment needs Name, Content and ContentType"
    return None


def _resend(request: Request) -> str | None:
    body, problem = _json_post(request, "/emails")
    if problem:
        return problem
    if not request.headers.get("idempotency-key"):
        return "no Idempotency-Key header"
    if not body.get("from") or not isinstance(body.get("to"), list) or "subject" not in body:
        return "from, to (a list) and subject are required"
    if not isinstance(body.get("headers", {}), dict):
        return "headers is an object"
    return None


def mailgun_form(request: Request) -> tuple[list[str], bytes]:
    """The ``to`` values and the ``message`` file of a multipart/form-data request (split by hand: the stdlib
    parser would re-parse the message/rfc822 part instead of giving its bytes)."""
    boundary = request.headers["content-type"].partition("boundary=")[2].strip('"').encode()
    to: list[str] = []
    message = b""
    for chunk in request.body.split(b"--" + boundary)[1:-1]:
        head, _, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        value = value.removesuffix(b"\r\n")
        if b'name="to"' in head:
            to.append(value.decode())
        elif b'name="message"' in head:
            message = value
    return to, message


def _mailgun(request: Request) -> str | None:
    path = f"/v3/{DOMAIN}/messages.mime"
    if request.method != "POST" or request.path != path:
        return f"expected POST {path}, got {request.method} {request.path}"
    if not request.headers.get("content-type", "").startswith("multipart/form-data; boundary="):
        return "messages.mime takes multipart/form-data"
    to, message = mailgun_form(request)
    if not to or not message:
        return "to and the message file are required"
    return None


_CONTRACTS: dict[str, tuple[Callable[[Request], str | None], str]] = {
    "sendgrid": (_sendgrid, "/v3/scopes"),
    "postmark": (_postmark, "/server"),
    "resend": (_resend, "/domains"),
    "mailgun": (_mailgun, f"/v3/domains/{DOMAIN}"),
}
_ACCOUNT_ANSWERS = {
    "sendgrid": Reply(200, {"scopes": ["mail.send", "user.profile.read"]}),
    "postmark": Reply(200, {"ID": 1, "Name": "Test server"}),
    "resend": Reply(200, {"data": [{"id": "d1", "name": "example.com", "status": "verified"}]}),
    "mailgun": Reply(200, {"domain": {"name": DOMAIN, "state": "active"}}),
}


def _success(kind: str, number: int) -> Reply:
    if kind == "sendgrid":
        return Reply(202, headers={"X-Message-Id": f"sg-{number}"})
    if kind == "postmark":
        return Reply(200, {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{number}", "To": "x"})
    if kind == "resend":
        return Reply(200, {"id": f"re-{number}"})
    return Reply(200, {"id": f"<mg-{number}@{DOMAIN}>", "message": "Queued. Thank you."})
