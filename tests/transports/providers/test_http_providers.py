"""SendGrid, Mailgun, Postmark and Resend against loopback contract servers: each request as the provider documents
it, the provider's message id, and every kind of answer in the right outcome class with the right next step."""

from __future__ import annotations

import email
import email.policy
import time

import pytest

from mailsc.errors import DeliveryError, ProviderError, ProviderUnavailableError
from mailsc.transports.base import Outcome, classify
from tests.transports.providers.conftest import SENDER, Contract
from tests.transports.providers.contract import mailgun_form
from tests.transports.providers.httpd import Reply
from tests.transports.providers.messages import envelope_of, rich_message, simple_envelope

KINDS = ["sendgrid", "mailgun", "postmark", "resend"]


@pytest.mark.parametrize(
    ("kind", "provider_id"),
    [
        ("sendgrid", "sg-1"),
        ("mailgun", "<mg-1@mg.example.com>"),
        ("postmark", "pm-1"),
        ("resend", "re-1"),
    ],
)
async def test_a_send_follows_the_contract_and_keeps_the_provider_id(
    contract: Contract, kind: str, provider_id: str
) -> None:
    server, transport = await contract(kind)
    envelope = envelope_of(rich_message())
    result = await transport.send(envelope)
    assert server.violations == []
    assert (result.transport, result.provider_message_id) == (kind, provider_id)
    assert result.accepted == envelope.recipients
    assert server.requests[0].headers["user-agent"].startswith("mailsc")


async def test_mailgun_gets_the_exact_stored_bytes_and_every_envelope_recipient(contract: Contract) -> None:
    server, transport = await contract("mailgun")
    envelope = envelope_of(rich_message())
    await transport.send(envelope)
    to, message = mailgun_form(server.sent[0])
    assert message == envelope.data
    assert to == ["ada@example.org", "bob@example.org", "carol@example.org"]


async def test_resend_idempotency_key_is_the_same_for_each_attempt_at_one_message(contract: Contract) -> None:
    server, transport = await contract("resend")
    envelope, other = simple_envelope(), simple_envelope()
    for e in (envelope, envelope, other):
        await transport.send(e)
    keys = [r.headers["idempotency-key"] for r in server.sent]
    assert keys[0] == keys[1] != keys[2]


async def test_the_connection_is_reused(contract: Contract) -> None:
    server, transport = await contract("postmark")
    for _ in range(5):
        await transport.send(simple_envelope())
    assert server.connections == 1


def _error(status: int, kind: str, code: str = "", text: str = "refused", **headers: str) -> Reply:
    body: object
    if kind == "postmark":
        body = {"ErrorCode": int(code or 300), "Message": text}
    elif kind == "resend":
        body = {"statusCode": status, "name": code or "validation_error", "message": text}
    elif kind == "sendgrid":
        body = {"errors": [{"message": text, "field": "from"}]}
    else:
        body = {"message": text}
    return Reply(status, body, headers)


# (kind, reply, outcome, retry_after)
CASES = [
    *[(k, _error(400, k), Outcome.PERMANENT, None) for k in KINDS],
    *[(k, _error(422, k), Outcome.PERMANENT, None) for k in ("postmark", "resend")],
    *[(k, _error(413, k, text="too large"), Outcome.PERMANENT, None) for k in KINDS],
    *[(k, _error(401, k, code="10" if k == "postmark" else ""), Outcome.UNAVAILABLE, None) for k in KINDS],
    *[(k, _error(403, k), Outcome.UNAVAILABLE, None) for k in KINDS],
    *[(k, _error(500, k), Outcome.RETRY, None) for k in KINDS],
    *[(k, _error(429, k, **{"Retry-After": "17"}), Outcome.RETRY, 17.0) for k in KINDS],
    ("resend", _error(429, "resend", "rate_limit_exceeded", **{"ratelimit-reset": "3"}), Outcome.RETRY, 3.0),
    ("resend", _error(429, "resend", "daily_quota_exceeded"), Outcome.UNAVAILABLE, None),
    ("resend", _error(409, "resend", "concurrent_idempotent_requests"), Outcome.RETRY, None),
    (
        "resend",
        _error(403, "resend", "validation_error", "You can only send testing emails"),
        Outcome.UNAVAILABLE,
        None,
    ),
    ("postmark", _error(422, "postmark", "406", "Found inactive addresses: ada@example.org."), Outcome.PERMANENT, None),
    ("postmark", _error(406, "postmark", "406", "inactive recipient"), Outcome.PERMANENT, None),
    ("postmark", _error(422, "postmark", "400", "Sender signature not found"), Outcome.UNAVAILABLE, None),
    ("postmark", _error(422, "postmark", "405", "Not allowed to send"), Outcome.UNAVAILABLE, None),
    ("mailgun", _error(404, "mailgun", text="Domain not found"), Outcome.UNAVAILABLE, None),
]


@pytest.mark.parametrize(("kind", "reply", "outcome", "retry_after"), CASES)
async def test_each_answer_lands_in_its_class(
    contract: Contract, kind: str, reply: Reply, outcome: Outcome, retry_after: float | None
) -> None:
    server, transport = await contract(kind)
    server.script = lambda request: reply
    with pytest.raises(ProviderError) as info:
        await transport.send(simple_envelope())
    error = info.value
    assert server.violations == []
    assert classify(error) is outcome
    assert isinstance(error, ProviderUnavailableError) == (outcome is Outcome.UNAVAILABLE)
    assert error.status == reply.status
    assert error.provider == kind
    assert error.retry_after == retry_after
    assert f"HTTP {reply.status}" in str(error)
    if outcome is Outcome.UNAVAILABLE:
        assert error.hint  # the fix, in words


async def test_the_provider_text_and_code_are_kept(contract: Contract) -> None:
    server, transport = await contract("postmark")
    server.script = lambda request: _error(422, "postmark", "406", "Found inactive addresses: ada@example.org.")
    with pytest.raises(ProviderError) as info:
        await transport.send(simple_envelope())
    assert info.value.code == "406"
    assert info.value.recipient == "ada@example.org"
    assert "Found inactive addresses: ada@example.org." in str(info.value)


async def test_sendgrid_rate_limit_reset_is_a_unix_time(contract: Contract) -> None:
    server, transport = await contract("sendgrid")
    server.script = lambda request: Reply(429, {"errors": []}, {"X-RateLimit-Reset": str(int(time.time()) + 120)})
    with pytest.raises(ProviderError) as info:
        await transport.send(simple_envelope())
    assert info.value.retry_after is not None
    assert 100 <= info.value.retry_after <= 121


async def test_a_slow_answer_is_a_retry_that_may_have_been_delivered(contract: Contract) -> None:
    server, transport = await contract("resend", timeout=0.2)
    server.script = lambda request: Reply(200, {"id": "late"}, delay=1.0)
    with pytest.raises(ProviderError) as info:
        await transport.send(simple_envelope())
    assert classify(info.value) is Outcome.RETRY
    assert info.value.code == "timeout"
    assert "may have been accepted" in str(info.value)


async def test_nothing_listening_is_a_retry(contract: Contract) -> None:
    server, transport = await contract("sendgrid")
    await server.__aexit__(None, None, None)
    with pytest.raises(DeliveryError) as info:
        await transport.send(simple_envelope())
    assert classify(info.value) is Outcome.RETRY


async def test_a_message_over_the_size_limit_is_refused_before_sending(contract: Contract) -> None:
    server, transport = await contract("postmark", max_size=2048)
    envelope = envelope_of(rich_message())
    with pytest.raises(ProviderError) as info:
        await transport.send(envelope)
    assert classify(info.value) is Outcome.PERMANENT
    assert server.requests == []
    assert f"{len(envelope.data):,} bytes" in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_probe_passes_with_good_credentials_and_fails_with_a_401(contract: Contract, kind: str) -> None:
    server, transport = await contract(kind)
    await transport.check()
    server.account = Reply(401, {"message": "bad key", "ErrorCode": 10, "name": "invalid_api_key"})
    with pytest.raises(ProviderUnavailableError):
        await transport.check()
    assert server.sent == []  # a probe never sends


async def test_resend_probe_accepts_a_sending_only_key(contract: Contract) -> None:
    server, transport = await contract("resend")
    server.account = Reply(401, {"statusCode": 401, "name": "restricted_api_key", "message": "restricted"})
    await transport.check()


@pytest.mark.parametrize("kind", KINDS)
async def test_diagnose_a_good_setup_and_send_a_test_message(contract: Contract, kind: str) -> None:
    server, transport = await contract(kind)
    steps = await transport.diagnose("ops@example.org")
    assert all(s.ok for s in steps), steps
    assert steps[0].name == "reach"
    assert steps[-1].name == "test_message"
    assert steps[-1].data["provider_message_id"]
    assert len(server.sent) == 1
    assert server.violations == []


@pytest.mark.parametrize("kind", KINDS)
async def test_diagnose_without_to_sends_nothing(contract: Contract, kind: str) -> None:
    server, transport = await contract(kind)
    steps = await transport.diagnose(None)
    assert all(s.ok for s in steps)
    assert server.sent == []


@pytest.mark.parametrize("kind", KINDS)
async def test_diagnose_names_the_fix_for_a_refused_key(contract: Contract, kind: str) -> None:
    server, transport = await contract(kind)
    server.account = Reply(401, {"message": "Unauthorized", "ErrorCode": 10, "name": "invalid_api_key"})
    steps = await transport.diagnose("ops@example.org")
    assert steps[-1].name == "credentials"
    assert not steps[-1].ok
    assert steps[-1].fix
    assert server.sent == []


@pytest.mark.parametrize(
    ("kind", "account", "failing"),
    [
        ("sendgrid", Reply(200, {"scopes": ["user.profile.read"]}), "scope"),
        ("mailgun", Reply(200, {"domain": {"name": "mg.example.com", "state": "unverified"}}), "domain"),
        ("resend", Reply(200, {"data": [{"name": "example.com", "status": "pending"}]}), "sender"),
        ("resend", Reply(200, {"data": []}), "sender"),
    ],
)
async def test_diagnose_finds_what_the_account_lacks(
    contract: Contract, kind: str, account: Reply, failing: str
) -> None:
    server, transport = await contract(kind)
    server.account = account
    steps = await transport.diagnose("ops@example.org")
    assert steps[-1].name == failing
    assert not steps[-1].ok
    assert steps[-1].fix
    assert server.sent == []


async def test_diagnose_reports_an_unreachable_api(contract: Contract) -> None:
    server, transport = await contract("postmark")
    await server.__aexit__(None, None, None)
    steps = await transport.diagnose(None)
    assert [(s.name, s.ok) for s in steps] == [("reach", False)]
    assert steps[0].fix


async def test_diagnose_test_message_refused(contract: Contract) -> None:
    server, transport = await contract("postmark")
    server.script = lambda request: _error(422, "postmark", "406", "Found inactive addresses: ops@example.org.")
    steps = await transport.diagnose("ops@example.org")
    assert steps[-1].name == "test_message"
    assert not steps[-1].ok
    assert "inactive" in steps[-1].fix
    assert transport.sender == SENDER


def test_postmark_message_parses() -> None:  # the stored MIME the tests send is what mailsc renders
    message = email.message_from_bytes(simple_envelope().data, policy=email.policy.default)
    assert message["From"] == "app@example.com"
