"""The pages in a real browser: headless Chromium driven by Playwright against the app served by uvicorn on a
loopback port, everything (app, worker, SMTP servers, the browser's driver) in one event loop for the module.
Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from mailsc.config import Settings
from tests.smtpd import SmtpServer
from tests.web.conftest import Beacon, Served, serving, settings_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GIF = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="
WAIT_MS = 15_000


def clean_settings(tmp_path: Path, server: SmtpServer | None = None, **overrides: Any) -> Settings:
    """Settings that ignore any MAILSC_* variable of the developer's shell (module fixtures run before the
    per-test environment cleaner)."""
    with pytest.MonkeyPatch.context() as patch:
        import os

        for name in list(os.environ):
            if name.upper().startswith(("MAILSC_", "SMTP_", "MAIL_")):
                patch.delenv(name)
        return settings_for(tmp_path, server, **overrides)


def read_file(path: Path | str) -> bytes:
    return Path(path).read_bytes()


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def send(served: Served, key: str | None = None, **body: Any) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as api:
        answer = await api.post("/v1/messages", json={"to": "john@example.org", "subject": "Hello", **body})
    assert answer.status_code == 202, answer.text
    message_id: str = answer.json()["id"]
    return message_id


async def status_of(served: Served, message_id: str) -> str:
    return (await served.services.store.get(message_id)).status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def beacon() -> AsyncIterator[Beacon]:
    async with Beacon() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def inbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """The dev inbox: capture transport, no API key (open to this loopback browser)."""
    async with serving(clean_settings(tmp_path_factory.mktemp("inbox"))) as served:
        yield served


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


def hostile_html(beacon: Beacon) -> str:
    """A mail whose HTML tries to run script, to phone home, and to show a remote image; plus an inline image."""
    return (
        f'<html><head><meta http-equiv="refresh" content="0;url={beacon.url("/refresh")}">'
        f'<link rel="stylesheet" href="{beacon.url("/style.css")}"></head><body>'
        '<p id="hello">Hello from the mail</p>'
        f'<img id="remote" alt="remote" src="{beacon.url("/remote.gif")}">'
        '<img id="inline" alt="inline" src="cid:logo@mailsc.test">'
        f"<script>parent.document.title = 'pwned'; fetch('{beacon.url('/script')}');</script>"
        f'<img src="x" onerror="fetch(\'{beacon.url("/onerror")}\')">'
        "</body></html>"
    )


async def test_new_mail_appears_opens_safely_and_downloads(inbox: Served, page: Page, beacon: Beacon) -> None:
    await page.goto(inbox.url)
    await expect(page.locator("#empty")).to_be_visible()
    await page.evaluate("window.__sameDocument = true")
    message_id = await send(
        inbox,
        html=hostile_html(beacon),
        text="Hello in plain text",
        tags=["welcome"],
        attachments=[
            {
                "filename": "logo.gif",
                "content": GIF,
                "content_type": "image/gif",
                "inline": True,
                "content_id": "logo@mailsc.test",
            },
            {"filename": "notes.txt", "content": "aGVsbG8=", "content_type": "text/plain"},
        ],
    )
    row = page.locator(f"tr[data-id='{message_id}']")
    await expect(row).to_be_visible(timeout=WAIT_MS)  # polled in, no reload
    assert await page.evaluate("window.__sameDocument") is True
    await expect(row.locator(".to")).to_have_text("j***@example.org")  # not logged in: masked
    await expect(row.locator(".status")).to_have_text("captured", timeout=WAIT_MS)
    await expect(row.locator(".tag")).to_have_text("welcome")
    await screenshot(page, "log")

    await row.locator("a").click()
    await page.wait_for_url(f"**/messages/{message_id}")
    frame = page.frame_locator("#mail-html")
    await expect(frame.locator("#hello")).to_have_text("Hello from the mail")
    body = next(f for f in page.frames if f.url.endswith("/body.html"))
    await body.wait_for_load_state("load")  # every image has loaded or been refused
    widths = await body.evaluate(
        "[document.getElementById('inline').naturalWidth, document.getElementById('remote').naturalWidth]"
    )
    assert widths == [1, 0]  # the cid: image shows, the remote one is blocked
    assert await page.title() == "Hello · mailsc"  # the mail's script did not run
    assert beacon.hits["/script"] == beacon.hits["/onerror"] == 0
    assert beacon.hits["/remote.gif"] == beacon.hits["/refresh"] == beacon.hits["/style.css"] == 0
    await expect(page.locator("#mail-text")).to_contain_text("Hello in plain text")
    await expect(page.locator("#headers")).to_contain_text("john@example.org")
    await expect(page.locator("#timeline .event")).to_have_text(["queued", "attempt", "sent"])
    await screenshot(page, "message")

    async with page.expect_download() as download_info:
        await page.get_by_text("Download .eml").click()
    download = await download_info.value
    assert download.suggested_filename == f"{message_id}.eml"
    raw = read_file(await download.path())
    assert raw == await inbox.services.store.raw(message_id)
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == "Hello"

    async with page.expect_download() as download_info:
        await page.get_by_text("notes.txt").click()
    assert read_file(await (await download_info.value).path()) == b"hello"

    await page.locator("#remote-toggle").click()
    await page.wait_for_url("**?remote=1")
    await eventually(lambda: _true(beacon.hits["/remote.gif"] == 1))
    await expect(page.frame_locator("#mail-html").locator("#hello")).to_be_visible()
    assert beacon.hits["/script"] == beacon.hits["/onerror"] == 0  # remote images, still no script
    assert await page.title() == "Hello · mailsc"


async def _true(value: bool) -> bool:
    return value


async def test_phone_width(inbox: Served, browser: Browser) -> None:
    message_id = await send(inbox, subject="Read me on a phone", html="<p>Small screen</p>", text="Small screen")
    context = await browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = await context.new_page()
    await phone.goto(inbox.url)
    await expect(phone.locator(f"tr[data-id='{message_id}']")).to_be_visible()
    # Nothing sideways: the page is no wider than the screen.
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(phone, "log-phone")
    await phone.goto(f"{inbox.url}/messages/{message_id}")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 375
    await screenshot(phone, "message-phone")
    await context.close()


async def test_cancel_then_delete(inbox: Served, page: Page) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message_id = await send(inbox, subject="Scheduled", text="later", send_at=later)
    await page.goto(f"{inbox.url}/messages/{message_id}")
    await expect(page.locator("#status")).to_have_text("queued")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#status")).to_have_text("cancelled")
    assert await status_of(inbox, message_id) == "cancelled"

    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Delete").click()
    await page.wait_for_url(inbox.url + "/")
    await expect(page.locator(f"tr[data-id='{message_id}']")).to_have_count(0)
    from mailsc.errors import MessageNotFoundError

    with pytest.raises(MessageNotFoundError):
        await inbox.services.store.get(message_id)


async def test_an_action_without_the_token_is_refused(inbox: Served, page: Page) -> None:
    message_id = await send(inbox, subject="Keep me", text="x")
    await eventually(lambda: _status_is(inbox, message_id, "sent"))
    await page.goto(f"{inbox.url}/messages/{message_id}")
    # Same origin, with the session cookie, but no CSRF token: what a forged request would look like at best.
    status = await page.evaluate(
        "id => fetch('/messages/' + id + '/delete', {method: 'POST', body: new URLSearchParams({csrf: 'forged'})})"
        ".then(r => r.status)",
        message_id,
    )
    assert status == 403
    assert await status_of(inbox, message_id) == "sent"


async def _status_is(served: Served, message_id: str, status: str) -> bool:
    return await status_of(served, message_id) == status


async def test_retry_a_failed_message(tmp_path: Path, page: Page) -> None:
    async with SmtpServer() as smtp:
        smtp.faults.rcpt["gone@example.org"] = deque(["550 5.1.1 no such user here"])
        async with serving(clean_settings(tmp_path, smtp)) as served:
            message_id = await send(served, to="gone@example.org", subject="Bounce", text="x")
            await eventually(lambda: _status_is(served, message_id, "failed"))
            await page.goto(f"{served.url}/messages/{message_id}")
            await expect(page.locator("#status")).to_have_text("failed")
            await expect(page.locator("#last-error")).to_contain_text("550")
            await screenshot(page, "failed")
            async with page.expect_navigation():  # the form posts and redirects back: let that finish first
                await page.get_by_role("button", name="Retry").click()  # the server accepts it this time
            await eventually(lambda: _status_is(served, message_id, "sent"))
            await page.goto(f"{served.url}/messages/{message_id}")
            await expect(page.locator("#status")).to_have_text("sent")
            await expect(page.locator("#timeline .event")).to_have_text(
                ["queued", "attempt", "failed", "queued", "attempt", "sent"]
            )
            assert [r.rcpt_tos for r in smtp.received] == [["gone@example.org"]]


async def test_login_with_a_key_then_full_addresses(tmp_path: Path, page: Page) -> None:
    key = "msc_browser-test-key-0123456789"
    async with serving(clean_settings(tmp_path, api_key=key)) as served:
        await page.goto(served.url)
        await page.wait_for_url("**/login?next=%2F")
        await page.get_by_label("API key").fill("msc_wrong")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#login-error")).to_have_text("Unknown or revoked API key.")
        await screenshot(page, "login")
        await page.get_by_label("API key").fill(key)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(served.url + "/")
        [cookie] = await page.context.cookies()
        assert cookie["name"] == "mailsc_session"
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False  # plain HTTP on loopback: a Secure cookie would never come back
        assert key not in cookie["value"]
        message_id = await send(served, key, to="jane@example.org", subject="For Jane", text="x")
        row = page.locator(f"tr[data-id='{message_id}']")
        await expect(row.locator(".to")).to_have_text("jane@example.org", timeout=WAIT_MS)  # logged in: unmasked
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_url("**/login")
        await page.goto(f"{served.url}/messages/{message_id}")
        await page.wait_for_url("**/login?next=*")


async def test_the_banner_names_the_broken_setup(
    tmp_path: Path, page: Page, server_tls_context: ssl.SSLContext, ca_file: Path
) -> None:
    smtp = SmtpServer(starttls_context=server_tls_context, credentials={"app@example.com": "rotated"})
    await smtp.start()
    settings = clean_settings(
        tmp_path,
        None,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="starttls",
        smtp_ca_file=ca_file,
        smtp_username="app@example.com",
        smtp_password="old-password",
        smtp_timeout=5,
    )
    try:
        async with serving(settings) as served:
            await page.goto(served.url)
            await expect(page.locator("#banner")).to_be_hidden()
            message_id = await send(served, subject="Waiting", text="x")
            banner = page.locator("#banner")
            await expect(banner).to_be_visible(timeout=WAIT_MS)  # polled in, no reload
            await expect(banner).to_contain_text("AuthenticationError")
            await expect(banner).to_contain_text("535")
            await expect(banner.locator(".hint")).to_contain_text("app password")
            await screenshot(page, "banner")
            await page.goto(f"{served.url}/messages/{message_id}")
            await expect(page.locator("#banner")).to_contain_text("AuthenticationError")  # on every page
            assert await status_of(served, message_id) in ("queued", "deferred")
    finally:
        await smtp.stop()
