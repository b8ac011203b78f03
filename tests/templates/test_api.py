"""Templates through the HTTP API: /v1/templates (versions, preview) and sending with a template (single, batch),
delivered to a real in-process SMTP server."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import httpx

from tests.api.test_messages import wait_for_status
from tests.smtpd import SmtpServer

WELCOME = {
    "subject": "Welcome, {{ name }}",
    "html": "<html><head><style>p { color: #123456 } @media (max-width: 600px) { p { font-size: 18px } }</style>"
    "</head><body><p>Hello {{ name }}, <a href='{{ url }}'>confirm</a>.</p></body></html>",
}
VARIABLES = {"name": "Ada <3", "url": "https://example.com/c?t=1"}


def parts(data: bytes) -> tuple[EmailMessage, str, str]:
    """The parsed message, its HTML part and its text part."""
    parsed = email.message_from_bytes(data, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    html, text = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert isinstance(html, EmailMessage)
    assert isinstance(text, EmailMessage)
    # on the wire every line ends in CRLF (SMTP's canonical form): compare the text as it was rendered
    return parsed, html.get_content().replace("\r\n", "\n"), text.get_content().replace("\r\n", "\n")


async def put(api: httpx.AsyncClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.put(f"/v1/templates/{name}", json=body)
    assert response.status_code in (200, 201), response.text
    stored: dict[str, Any] = response.json()
    return stored


async def test_put_get_list_delete(api: httpx.AsyncClient) -> None:
    first = await api.put("/v1/templates/welcome", json=WELCOME)
    assert first.status_code == 201
    assert first.json()["version"] == 1
    second = await api.put("/v1/templates/welcome", json={**WELCOME, "text": "Hi {{ name }}"})
    assert second.status_code == 200
    assert second.json()["version"] == 2
    got = (await api.get("/v1/templates/welcome")).json()
    assert (got["version"], got["text"]) == (2, "Hi {{ name }}")
    assert (await api.get("/v1/templates/welcome", params={"version": 1})).json()["text"] is None
    listed = (await api.get("/v1/templates")).json()["items"]
    assert [(t["name"], t["version"]) for t in listed] == [("welcome", 2)]
    assert (await api.delete("/v1/templates/welcome")).status_code == 204
    assert (await api.get("/v1/templates/welcome")).status_code == 404
    assert (await api.delete("/v1/templates/welcome")).status_code == 404
    assert (await api.get("/v1/templates")).json()["items"] == []
    assert (await api.get("/v1/templates/bad%20name")).status_code == 422


async def test_a_broken_template_is_refused_with_its_line_and_not_stored(api: httpx.AsyncClient) -> None:
    response = await api.put("/v1/templates/broken", json={"subject": "s", "html": "<p>\n{% for x in %}</p>"})
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert "template 'broken'" in problem["detail"]
    assert "html, line 2: syntax error" in problem["detail"]
    assert (await api.get("/v1/templates/broken")).status_code == 404


async def test_send_with_a_stored_template(api: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    await put(api, "welcome", WELCOME)
    response = await api.post(
        "/v1/messages", json={"to": "ada@example.org", "template": "welcome", "variables": VARIABLES}
    )
    assert response.status_code == 202, response.text
    record = await wait_for_status(api, response.json()["id"], "sent")
    assert (record["template_name"], record["template_version"]) == ("welcome", 1)
    assert record["subject"] == "Welcome, Ada <3"
    [received] = smtp_server.received
    parsed, html, text = parts(received.data)
    assert parsed.get_content_type() == "multipart/alternative"
    assert '<p style="color: #123456;">Hello Ada &lt;3, ' in html  # escaped, CSS inlined
    assert "@media (max-width: 600px)" in html
    assert "Hello Ada <3, confirm (https://example.com/c?t=1)." in text  # not escaped; the link kept


async def test_preview_equals_what_is_sent(api: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    await put(api, "welcome", WELCOME)
    preview = await api.post("/v1/templates/welcome/preview", json={"variables": VARIABLES})
    assert preview.status_code == 200
    shown = preview.json()
    assert shown["version"] == 1
    assert smtp_server.received == []  # a preview sends nothing
    accepted = await api.post(
        "/v1/messages", json={"to": "a@example.org", "template": "welcome", "variables": VARIABLES}
    )
    await wait_for_status(api, accepted.json()["id"], "sent")
    [received] = smtp_server.received
    parsed, html, text = parts(received.data)
    assert parsed["Subject"] == shown["subject"]
    assert html == shown["html"] + "\n"  # MIME bodies end with a line break
    assert text == shown["text"]


async def test_missing_variable_is_422_naming_it_and_nothing_is_stored(api: httpx.AsyncClient) -> None:
    await put(api, "welcome", WELCOME)
    response = await api.post(
        "/v1/messages", json={"to": "a@example.org", "template": "welcome", "variables": {"name": "Ada"}}
    )
    assert response.status_code == 422
    problem = response.json()
    assert "template 'welcome' (version 1)" in problem["detail"]
    assert "'url' is not defined" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["variables", "url"]
    preview = await api.post("/v1/templates/welcome/preview", json={"variables": {"name": "Ada"}})
    assert preview.status_code == 422
    assert preview.json()["errors"][0]["loc"] == ["variables", "url"]
    assert (await api.get("/v1/messages")).json()["items"] == []


async def test_request_shape_with_templates(api: httpx.AsyncClient) -> None:
    both = await api.post("/v1/messages", json={"to": "a@example.org", "template": "x", "text": "t"})
    assert both.status_code == 422
    no_subject = await api.post("/v1/messages", json={"to": "a@example.org", "text": "t"})
    assert no_subject.status_code == 422
    assert "subject is required" in no_subject.text
    unknown = await api.post("/v1/messages", json={"to": "a@example.org", "template": "nope"})
    assert unknown.status_code == 422
    assert "'nope'" in unknown.json()["detail"]
    assert (await api.post("/v1/templates/nope/preview", json={})).status_code == 404


async def test_a_message_keeps_the_version_it_was_rendered_with(
    api: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    await put(api, "news", {"subject": "News v1", "text": "First edition for {{ name }}"})
    one = await api.post("/v1/messages", json={"to": "a@example.org", "template": "news", "variables": {"name": "A"}})
    await put(api, "news", {"subject": "News v2", "text": "Second edition for {{ name }}"})
    two = await api.post("/v1/messages", json={"to": "b@example.org", "template": "news", "variables": {"name": "B"}})
    first = await wait_for_status(api, one.json()["id"], "sent")
    second = await wait_for_status(api, two.json()["id"], "sent")
    assert (first["template_version"], first["subject"]) == (1, "News v1")
    assert (second["template_version"], second["subject"]) == (2, "News v2")
    bodies = {r.rcpt_tos[0]: r.data for r in smtp_server.received}
    assert b"First edition for A" in bodies["a@example.org"]
    assert b"Second edition for B" in bodies["b@example.org"]


async def test_batch_renders_each_item_with_its_own_variables(api: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    await put(api, "hello", {"subject": "Hello {{ name }}", "text": "Hi {{ name }}"})
    items = [
        {"to": "a@example.org", "template": "hello", "variables": {"name": "Ann"}},
        {"to": "b@example.org", "template": "hello", "variables": {}},
        {"to": "c@example.org", "template": "hello", "variables": {"name": "Cy"}, "subject": "Custom"},
        {"to": "d@example.org", "subject": "Plain", "text": "no template"},
    ]
    response = await api.post("/v1/messages/batch", json={"messages": items})
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 202, 202]
    assert results[1]["errors"][0]["loc"] == ["variables", "name"]
    for result in (results[0], results[2], results[3]):
        await wait_for_status(api, result["id"], "sent")
    subjects = {
        r.rcpt_tos[0]: email.message_from_bytes(r.data, policy=email.policy.default)["Subject"]
        for r in smtp_server.received
    }
    assert subjects == {"a@example.org": "Hello Ann", "c@example.org": "Custom", "d@example.org": "Plain"}


async def test_file_templates_from_the_templates_folder(api: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    variables = {"name": "Ada", "url": "https://example.com/c", "email": "ada@example.org"}
    response = await api.post(
        "/v1/messages", json={"to": "ada@example.org", "template": "welcome", "variables": variables}
    )
    assert response.status_code == 202, response.text
    record = await wait_for_status(api, response.json()["id"], "sent")
    assert (record["template_name"], record["template_version"]) == ("welcome", None)
    preview = (await api.post("/v1/templates/welcome/preview", json={"variables": variables})).json()
    assert preview["version"] is None
    [received] = smtp_server.received
    parsed, html, text = parts(received.data)
    assert parsed["Subject"] == "Welcome, Ada!"
    assert 'style="color: #333333;"' in html
    assert "Unsubscribe (https://example.com/unsubscribe)" in text
    # a stored template of the same name takes precedence over the file
    await put(api, "welcome", {"subject": "Stored", "text": "stored"})
    assert (await api.post("/v1/templates/welcome/preview", json={"variables": variables})).json()["version"] == 1


async def test_template_injection_through_the_api_is_refused_and_the_service_keeps_working(
    api: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    for source in ("{{ cycler.__init__.__globals__ }}", "{% for x in range(10**9) %}{% endfor %}", "{{ 'a' * 10**9 }}"):
        await put(api, "evil", {"subject": "s", "text": source})
        response = await api.post("/v1/messages", json={"to": "a@example.org", "template": "evil"})
        assert response.status_code == 422
        assert "template 'evil'" in response.json()["detail"]
    payload = "{{ ''.__class__.__mro__ }}"
    await put(api, "echo", {"subject": "{{ v }}", "text": "{{ v }}"})
    ok = await api.post("/v1/messages", json={"to": "a@example.org", "template": "echo", "variables": {"v": payload}})
    assert ok.status_code == 202
    record = await wait_for_status(api, ok.json()["id"], "sent")
    assert record["subject"] == payload  # shown as typed, never evaluated
    assert (await api.get("/healthz")).status_code == 200
