"""The pages at the HTTP level (an ASGI client against the real app and a real SQLite outbox): security headers and
the mail frame's CSP, CSRF, the dev-mode guards, login sessions, downloads, search and filters."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsc.keys import generate_key, hash_key
from tests.web.conftest import client_for, services, settings_for

KEY = "msc_http-test-key-0123456789"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The open dev inbox (capture transport, no key); the client stands for a browser on this machine."""
    async with client_for(settings_for(tmp_path)) as client:
        yield client


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(settings_for(tmp_path, api_key=KEY)) as client:
        yield client


async def accept(client: httpx.AsyncClient, key: str | None = None, **body: Any) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = await client.post(
        "/v1/messages", json={"to": "john@example.org", "subject": "Hello", **body}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    message_id: str = answer.json()["id"]
    return message_id


async def captured(client: httpx.AsyncClient, message_id: str) -> None:
    store = services(client.app).store  # type: ignore[attr-defined]
    for _ in range(400):
        if (await store.get(message_id)).status == "sent":
            return
        import asyncio

        await asyncio.sleep(0.02)
    raise AssertionError("not captured")


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)


SAME_ORIGIN = {"Origin": "http://127.0.0.1:8025", "Sec-Fetch-Site": "same-origin"}


async def test_every_page_carries_the_security_headers(inbox: httpx.AsyncClient) -> None:
    message_id = await accept(inbox, text="hi", html="<p>hi</p>")
    for path in ("/", f"/messages/{message_id}", "/messages/0000000000000000000000000X", "/messages.json"):
        answer = await inbox.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
    page = await inbox.get("/")
    assert "<script>" not in page.text  # only <script src>: the CSP allows no inline script
    script = await inbox.get("/static/inbox.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert script.headers["x-content-type-options"] == "nosniff"
    assert (await inbox.get("/static/inbox.css")).headers["content-type"].startswith("text/css")


async def test_the_mail_frame_blocks_scripts_and_remote_loads(inbox: httpx.AsyncClient) -> None:
    html = '<p>x</p><img src="cid:pic"><script>alert(1)</script>'
    pic = {
        "filename": "p.gif",
        "content": "R0lGODlhAQABAAAAACw=",
        "content_type": "image/gif",
        "inline": True,
        "content_id": "pic",
    }
    message_id = await accept(inbox, html=html, attachments=[pic])
    frame = await inbox.get(f"/messages/{message_id}/body.html")
    csp = frame.headers["content-security-policy"]
    directives = dict(d.strip().partition(" ")[::2] for d in csp.split(";"))
    assert "sandbox" in directives
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    assert directives["style-src"] == "'unsafe-inline'"
    assert "script-src" not in directives  # falls back to default-src 'none'
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    assert 'src="data:image/gif;base64,R0lGODlhAQABAAAAACw="' in frame.text  # cid: resolved
    remote = await inbox.get(f"/messages/{message_id}/body.html?remote=1")
    assert "img-src data: https: http:" in remote.headers["content-security-policy"]
    assert "sandbox" in remote.headers["content-security-policy"]
    view = await inbox.get(f"/messages/{message_id}")
    assert re.search(r"<iframe[^>]*\ssandbox[\s>]", view.text)
    assert "allow-scripts" not in view.text
    assert "allow-same-origin" not in view.text


async def test_downloads_are_attachments_never_rendered_here(inbox: httpx.AsyncClient) -> None:
    evil = {"filename": "page.html", "content": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "content_type": "text/html"}
    message_id = await accept(inbox, text="see attached", attachments=[evil])
    view = await inbox.get(f"/messages/{message_id}")
    [part_url] = re.findall(r'href="(/messages/[^"]+/parts/\d+)"', view.text)
    part = await inbox.get(part_url)
    assert part.content == b"<script>alert(1)</script>"
    assert part.headers["content-type"] == "application/octet-stream"
    assert part.headers["content-disposition"].startswith('attachment; filename="page.html"')
    raw = await inbox.get(f"/messages/{message_id}/raw.eml")
    assert raw.headers["content-type"] == "message/rfc822"
    assert raw.content == await services(inbox.app).store.raw(message_id)  # type: ignore[attr-defined]
    assert (await inbox.get(f"/messages/{message_id}/parts/99")).status_code == 404


async def test_actions_need_the_token_and_a_same_origin_page(inbox: httpx.AsyncClient) -> None:
    message_id = await accept(inbox, text="x")
    await captured(inbox, message_id)
    page = await inbox.get(f"/messages/{message_id}")
    token = csrf_of(page)
    url = f"/messages/{message_id}/delete"
    refused = [
        await inbox.post(url, data={}, headers=SAME_ORIGIN),
        await inbox.post(url, data={"csrf": "forged"}, headers=SAME_ORIGIN),
        await inbox.post(url, data={"csrf": token}, headers={"Origin": "https://evil.example"}),
        await inbox.post(url, data={"csrf": token}, headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}),
        await inbox.post(url, data={"csrf": token}, headers={"Origin": "null"}),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "Forbidden" in refused[0].text
    assert refused[0].headers["content-security-policy"].startswith("default-src 'none'")
    # Our own form as a browser posts it under Referrer-Policy: no-referrer.
    done = await inbox.post(url, data={"csrf": token}, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303
    assert done.headers["location"] == "/"
    assert (await inbox.get(f"/messages/{message_id}")).status_code == 404


async def test_a_token_from_another_session_is_refused(inbox: httpx.AsyncClient) -> None:
    message_id = await accept(inbox, text="x")
    await captured(inbox, message_id)
    token = csrf_of(await inbox.get(f"/messages/{message_id}"))
    inbox.cookies.clear()
    await inbox.get("/")  # a new session
    answer = await inbox.post(f"/messages/{message_id}/delete", data={"csrf": token}, headers=SAME_ORIGIN)
    assert answer.status_code == 403


async def test_refused_actions_explain_why(inbox: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message_id = await accept(inbox, text="x", send_at=later)
    token = csrf_of(await inbox.get(f"/messages/{message_id}"))
    for action in ("delete", "retry"):
        answer = await inbox.post(f"/messages/{message_id}/{action}", data={"csrf": token}, headers=SAME_ORIGIN)
        assert answer.status_code == 409
        assert "it is queued" in answer.text
    answer = await inbox.post(f"/messages/{message_id}/cancel", data={"csrf": token}, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    nothing = await inbox.post("/messages/0000000000000000000000000X/cancel", data={"csrf": token}, headers=SAME_ORIGIN)
    assert nothing.status_code == 404


async def test_the_open_inbox_answers_only_loopback(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with client_for(settings, base_url="http://rebound.example:8025") as rebinding:
        answer = await rebinding.get("/")
        assert answer.status_code == 403
        assert "loopback host name" in answer.text
    async with client_for(settings) as client:
        transport = httpx.ASGITransport(app=client.app, client=("192.0.2.7", 50000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8025") as remote:
            answer = await remote.get("/")
            assert answer.status_code == 403
            assert "loopback clients" in answer.text
        for host in ("http://localhost:8025", "http://[::1]:8025"):
            assert (await client.get("/", headers={"Host": host.removeprefix("http://")})).status_code == 200


async def test_search_and_status_filter(inbox: httpx.AsyncClient) -> None:
    first = await accept(inbox, to="alice@example.org", subject="Invoice 42", text="x")
    second = await accept(inbox, to="bob@example.org", subject="Welcome", text="x")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    third = await accept(inbox, to="carol@example.org", subject="Later", text="x", send_at=later)

    async def ids(query: str) -> list[str]:
        answer = await inbox.get(f"/messages.json?{query}")
        return [item["id"] for item in answer.json()["items"]]

    assert await ids("q=ALICE") == [first]  # a recipient, any case
    assert await ids("q=welc") == [second]  # part of a subject
    assert await ids("status=queued") == [third]
    assert await ids("q=100%25") == []  # LIKE wildcards are literal
    assert set(await ids("")) == {first, second, third}
    page = await inbox.get("/?q=invoice")
    assert "Invoice 42" in page.text
    assert "Welcome" not in page.text
    assert "a***@example.org" in page.text
    assert "alice@example.org" not in page.text


async def test_login_sets_a_signed_session_and_shows_full_addresses(keyed: httpx.AsyncClient) -> None:
    message_id = await accept(keyed, KEY, to="jane@example.org", text="x")
    answer = await keyed.get(f"/messages/{message_id}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next=%2Fmessages%2F{message_id}"
    assert (await keyed.get("/messages.json")).status_code == 401
    assert (await keyed.get(f"/messages/{message_id}/raw.eml")).status_code == 303
    form = await keyed.get("/login")
    token = csrf_of(form)
    assert (await keyed.post("/login", data={"key": KEY, "csrf": "x"}, headers=SAME_ORIGIN)).status_code == 403
    wrong = await keyed.post("/login", data={"key": "msc_nope", "csrf": token}, headers=SAME_ORIGIN)
    assert wrong.status_code == 401
    target = f"/messages/{message_id}"
    ok = await keyed.post("/login", data={"key": KEY, "csrf": token, "next": target}, headers=SAME_ORIGIN)
    assert ok.status_code == 303
    assert ok.headers["location"] == target
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith("mailsc_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    assert KEY not in cookie
    view = await keyed.get(target)
    assert view.status_code == 200
    assert "jane@example.org" in view.text
    assert "j***@" not in view.text
    assert csrf_of(view) != token  # a login starts a new session with a new token


async def test_a_forged_or_tampered_cookie_is_not_a_session(keyed: httpx.AsyncClient) -> None:
    await keyed.get("/login")
    cookie = keyed.cookies["mailsc_session"]
    _payload, signature = cookie.split(".")
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps(["bootstrap", "t", 4102444800]).encode()).rstrip(b"=").decode()
    keyed.cookies.set("mailsc_session", f"{forged}.{signature}")
    assert (await keyed.get("/")).status_code == 303


async def test_revoking_a_key_ends_its_sessions(keyed: httpx.AsyncClient) -> None:
    store = services(keyed.app).store  # type: ignore[attr-defined]
    key = generate_key()
    record = await store.add_api_key("laptop", hash_key(key))
    token = csrf_of(await keyed.get("/login"))
    assert (await keyed.post("/login", data={"key": key, "csrf": token}, headers=SAME_ORIGIN)).status_code == 303
    assert (await keyed.get("/")).status_code == 200
    assert await store.revoke_api_key(record.id)
    assert (await keyed.get("/")).status_code == 303


async def test_logout(keyed: httpx.AsyncClient) -> None:
    token = csrf_of(await keyed.get("/login"))
    await keyed.post("/login", data={"key": KEY, "csrf": token}, headers=SAME_ORIGIN)
    page = await keyed.get("/")
    assert "Log out" in page.text
    out = await keyed.post("/logout", data={"csrf": csrf_of(page)}, headers=SAME_ORIGIN)
    assert out.status_code == 303
    assert (await keyed.get("/")).status_code == 303


async def test_over_https_the_cookie_is_secure_and_host_bound(tmp_path: Path) -> None:
    async with client_for(settings_for(tmp_path, api_key=KEY), base_url="https://mail.example.com") as client:
        form = await client.get("/login")
        assert form.headers["set-cookie"].startswith("__Host-mailsc_session=")
        headers = {"Origin": "https://mail.example.com", "Sec-Fetch-Site": "same-origin"}
        ok = await client.post("/login", data={"key": KEY, "csrf": csrf_of(form)}, headers=headers)
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith("__Host-mailsc_session=")
        assert "Secure" in cookie
        assert "Domain" not in cookie
        assert (await client.get("/")).status_code == 200


async def test_no_key_typed_into_plain_http_from_another_machine(tmp_path: Path) -> None:
    async with client_for(settings_for(tmp_path, api_key=KEY), base_url="http://mail.example.com") as client:
        form = await client.get("/login")
        assert form.status_code == 400
        assert "HTTPS" in form.text
        assert "set-cookie" not in form.headers
        headers = {"Origin": "http://mail.example.com", "Sec-Fetch-Site": "same-origin"}
        answer = await client.post("/login", data={"key": KEY, "csrf": "whatever"}, headers=headers)
        assert answer.status_code == 400
        assert "set-cookie" not in answer.headers


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "", "/ok?a=1"])
async def test_login_only_returns_to_this_site(keyed: httpx.AsyncClient, target: str) -> None:
    token = csrf_of(await keyed.get("/login"))
    ok = await keyed.post("/login", data={"key": KEY, "csrf": token, "next": target}, headers=SAME_ORIGIN)
    assert ok.headers["location"] == (target if target == "/ok?a=1" else "/")


async def test_the_banner_data_is_empty_while_delivery_works(inbox: httpx.AsyncClient) -> None:
    assert (await inbox.get("/messages.json?limit=0")).json() == {"items": [], "banner": None}


def test_templates_and_static_files_ship_in_the_package() -> None:
    package = resources.files("mailsc.web")
    for name in ("base.html", "log.html", "message.html", "login.html", "error.html"):
        assert (package / "templates" / name).is_file(), name
    for name in ("inbox.js", "inbox.css"):
        assert (package / "static" / name).is_file(), name


async def test_older_messages_are_a_page_away(inbox: httpx.AsyncClient) -> None:
    from mailsc import Message, render
    from mailsc.outbox import NewMessage, fingerprint
    from mailsc.web.pages import PAGE_SIZE

    store = services(inbox.app).store  # type: ignore[attr-defined]
    envelopes = [
        render(Message(**{"from": "app@example.com"}, to=f"u{i}@example.org", subject=f"number {i}", text="x"))
        for i in range(PAGE_SIZE + 1)
    ]
    for envelope in envelopes:  # one by one, so the ids (and the order) follow i
        await store.add(NewMessage(envelope, fingerprint(envelope.subject)))
    first = await inbox.get("/")
    assert first.text.count("<tr data-id=") == PAGE_SIZE
    assert "number 0<" not in first.text
    [older] = re.findall(r'href="(/\?cursor=[0-9A-Z]{26})"', first.text)
    second = await inbox.get(older)
    assert second.text.count("<tr data-id=") == 1
    assert "number 0<" in second.text
    assert "data-poll" not in second.text  # only the newest page follows new mail
