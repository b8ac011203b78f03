"""Amazon SES v2 against moto's real implementation of its HTTP API on loopback (the raw bytes SES received are
compared with what was stored), a pinned SigV4 signature, and SES's error answers from a loopback server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import boto3  # type: ignore[import-untyped]
import httpx_auth._aws
import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from mailsc.config import Settings
from mailsc.errors import ProviderError, ProviderUnavailableError
from mailsc.transports.base import Outcome, classify
from mailsc.transports.providers import SesTransport, provider_transport
from tests.transports.providers.httpd import HttpServer, Reply, Request
from tests.transports.providers.messages import envelope_of, rich_message, simple_envelope

REGION = "eu-west-1"
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def ses(endpoint: str, monkeypatch: pytest.MonkeyPatch, **options: str) -> SesTransport:
    """Configured the usual way: an ses:// URL, credentials and region from AWS_* variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, **options}.items())
    settings = Settings(_env_file=None, transport_url=f"ses://?{query}", mail_from="app@example.com")
    assert settings.transport_plan is not None
    transport = provider_transport(settings.transport_plan.providers["ses"], sender="app@example.com")
    assert isinstance(transport, SesTransport)
    return transport


def verify(moto_url: str, identity: str) -> None:
    client = boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_email_identity(EmailIdentity=identity)


@pytest.fixture
async def transport(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SesTransport]:
    ses_backends[DEFAULT_ACCOUNT_ID][REGION].reset()
    transport = ses(moto_url, monkeypatch)
    yield transport
    await transport.aclose()


async def test_the_stored_bytes_are_what_ses_received(transport: SesTransport, moto_url: str) -> None:
    verify(moto_url, "example.com")
    envelope = envelope_of(rich_message())
    result = await transport.send(envelope)
    [sent] = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert sent.raw_data.encode() == envelope.data
    assert result.provider_message_id == sent.id
    assert result.transport == "ses"
    assert {"ada@example.org", "bob@example.org", "carol@example.org"} <= set(sent.destinations)


async def test_an_unverified_sender_makes_ses_unavailable_not_the_message_failed(transport: SesTransport) -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        await transport.send(simple_envelope())
    assert classify(info.value) is Outcome.UNAVAILABLE
    assert info.value.code == "MessageRejected"
    assert "verify" in info.value.hint


async def test_diagnose_against_moto(transport: SesTransport, moto_url: str) -> None:
    steps = await transport.diagnose(None)
    assert steps[-1].name == "sender"
    assert not steps[-1].ok
    assert "example.com" in steps[-1].fix
    verify(moto_url, "example.com")
    steps = await transport.diagnose(None)
    assert steps[-1].name == "sender"
    assert not steps[-1].ok
    # Verification needs DNS, which moto cannot see: mark the identity verified as SES would once it does.
    ses_backends[DEFAULT_ACCOUNT_ID][REGION].email_identities["example.com"].verified_for_sending_status = True
    steps = await transport.diagnose("ops@example.org")
    assert all(s.ok for s in steps), steps
    assert steps[-1].name == "test_message"
    assert len(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages) == 1


class _FrozenClock(dt.datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FrozenClock:
        return cls(2015, 8, 30, 12, 36, 0, tzinfo=dt.UTC)


def test_sigv4_signature_of_a_fixed_request_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only httpx-auth's view of the clock is frozen (its module's `datetime` name), not the datetime module itself.
    monkeypatch.setattr(httpx_auth._aws, "datetime", SimpleNamespace(datetime=_FrozenClock, timezone=dt.timezone))
    transport = ses("https://email.eu-west-1.amazonaws.com", monkeypatch)
    body = b'{"FromEmailAddress":"app@example.com"}'
    request = transport._client.build_request(
        "POST", "/v2/email/outbound-emails", content=body, headers={"Content-Type": "application/json"}
    )
    signed = next(transport._auth().auth_flow(request))
    expected = "da49d339653d5d2a30d54c085291377a22c5be76b5cd314e7d09905058f4ddc2"
    assert signed.headers["Authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20150830/{REGION}/ses/aws4_request, "
        f"SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature={expected}"
    )
    # An independent signer (botocore's) agrees on the same request.
    reference = AWSRequest(
        "POST",
        str(signed.url),
        data=body,
        headers={
            "Content-Type": "application/json",
            "Host": signed.headers["host"],
            "X-Amz-Date": "20150830T123600Z",
            "X-Amz-Content-SHA256": signed.headers["x-amz-content-sha256"],
        },
    )
    reference.context["timestamp"] = "20150830T123600Z"
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ses", REGION)
    canonical = signer.canonical_request(reference)
    string_to_sign = signer.string_to_sign(reference, canonical)
    assert signer.signature(string_to_sign, reference) == expected


def _ses_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"message": message}, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"})


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (_ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded."), Outcome.RETRY),
        (_ses_error(400, "ThrottlingException", "Rate exceeded"), Outcome.RETRY),
        (_ses_error(400, "LimitExceededException", "Limit exceeded"), Outcome.RETRY),
        (_ses_error(400, "AccountSuspendedException", "suspended"), Outcome.UNAVAILABLE),
        (_ses_error(400, "SendingPausedException", "paused"), Outcome.UNAVAILABLE),
        (_ses_error(400, "MailFromDomainNotVerifiedException", "MAIL FROM"), Outcome.UNAVAILABLE),
        (_ses_error(400, "MessageRejected", "Email address is not verified."), Outcome.UNAVAILABLE),
        (_ses_error(400, "MessageRejected", "Daily message quota exceeded."), Outcome.UNAVAILABLE),
        (_ses_error(403, "UnrecognizedClientException", "invalid token"), Outcome.UNAVAILABLE),
        (_ses_error(400, "MessageRejected", "Illegal address"), Outcome.PERMANENT),
        (_ses_error(400, "BadRequestException", "bad"), Outcome.PERMANENT),
        (_ses_error(500, "InternalFailure", "oops"), Outcome.RETRY),
        (Reply(400, {"__type": "com.amazonaws#ThrottlingException", "message": "x"}), Outcome.RETRY),
    ],
)
async def test_ses_answers_land_in_their_class(reply: Reply, outcome: Outcome, monkeypatch: pytest.MonkeyPatch) -> None:
    async with HttpServer(lambda request: reply) as server:
        transport = ses(server.url, monkeypatch)
        with pytest.raises(ProviderError) as info:
            await transport.send(simple_envelope())
        await transport.aclose()
    assert classify(info.value) is outcome
    assert info.value.code is not None
    assert info.value.code in reply.headers.get("x-amzn-ErrorType", "ThrottlingException")


def _account(request: Request, account: dict[str, Any]) -> Reply:
    if request.path == "/v2/email/account":
        return Reply(200, account)
    return Reply(200, {"VerifiedForSendingStatus": True})


@pytest.mark.parametrize(
    ("account", "failing"),
    [
        ({"SendingEnabled": False, "EnforcementStatus": "SHUTDOWN"}, "sending_enabled"),
        ({"SendingEnabled": True, "SendQuota": {"Max24HourSend": 200, "SentLast24Hours": 200}}, "quota"),
    ],
)
async def test_diagnose_reads_get_account(
    account: dict[str, Any], failing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with HttpServer(lambda request: _account(request, account)) as server:
        transport = ses(server.url, monkeypatch)
        steps = await transport.diagnose("ops@example.org")
        await transport.aclose()
    assert steps[-1].name == failing
    assert not steps[-1].ok
    assert steps[-1].fix
    assert [r.path for r in server.requests] == ["/v2/email/account"]  # stopped there: nothing sent


async def test_diagnose_shows_the_quota_left(monkeypatch: pytest.MonkeyPatch) -> None:
    account = {
        "SendingEnabled": True,
        "ProductionAccessEnabled": False,
        "SendQuota": {"Max24HourSend": 200, "SentLast24Hours": 12, "MaxSendRate": 1},
    }
    async with HttpServer(lambda request: _account(request, account)) as server:
        transport = ses(server.url, monkeypatch)
        steps = await transport.diagnose(None)
        await transport.aclose()
    quota = next(s for s in steps if s.name == "quota")
    assert quota.ok
    assert "12 of 200" in quota.detail
    assert "sandbox" in quota.detail
    assert quota.data["max_24_hour_send"] == 200
    assert json.dumps([s.as_dict() for s in steps])  # serialisable for --json
