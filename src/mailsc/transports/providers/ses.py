"""Amazon SES v2 ``SendEmail`` with ``Content.Raw``: the exact stored MIME bytes go out, signed with SigV4 by
httpx-auth's ``AWS4Auth`` (a maintained signer, not a hand-written one)."""

from __future__ import annotations

import base64
import re
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from httpx_auth import AWS4Auth

from ...doctor.steps import Step
from ...envelope import Envelope
from ..base import Outcome
from .http import HttpProviderTransport

_RETRY = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceErrorException",
    }
)
_UNAVAILABLE = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDeniedException",
        "AccessDenied",
        "NotFoundException",  # the configuration set does not exist
    }
)
# MessageRejected for these reasons concerns the account or the sender's identity, not this one message.
_SETUP_REJECTION = re.compile(r"not verified|did not have authority|quota exceeded|sending paused", re.IGNORECASE)
_XML_CODE = re.compile(r"<Code>([^<]+)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


class SesTransport(HttpProviderTransport):
    """Amazon SES through its v2 HTTP API, in ``config.region``."""

    title: ClassVar[str] = "Amazon SES"
    key_variable: ClassVar[str] = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"

    def _auth(self) -> httpx.Auth:
        secret = self.config.secret_access_key
        token = self.config.session_token
        assert self.config.access_key_id
        assert secret is not None
        assert self.config.region
        options: dict[str, Any] = {"security_token": token.get_secret_value()} if token is not None else {}
        return AWS4Auth(self.config.access_key_id, secret.get_secret_value(), self.config.region, "ses", **options)

    def _request(self, envelope: Envelope) -> httpx.Request:
        payload: dict[str, Any] = {
            "FromEmailAddress": envelope.sender,
            "Destination": {"ToAddresses": list(envelope.recipients)},  # the envelope: To, Cc and Bcc
            "Content": {"Raw": {"Data": base64.b64encode(envelope.data).decode("ascii")}},
        }
        if self.config.configuration_set:
            payload["ConfigurationSetName"] = self.config.configuration_set
        tags = ses_tags(envelope)
        if tags:
            payload["EmailTags"] = tags
        return self._client.build_request(
            "POST",
            "/v2/email/outbound-emails",
            content=self.dumps(payload),
            headers={"Content-Type": "application/json"},
        )

    def _message_id(self, response: httpx.Response) -> str | None:
        body = self._json(response)
        return str(body["MessageId"]) if isinstance(body, dict) and body.get("MessageId") else None

    def _error(self, response: httpx.Response) -> tuple[str | None, str]:
        body = self._json(response)
        code = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0] or None
        text = ""
        if isinstance(body, dict):
            raw_code = body.get("__type") or body.get("code") or body.get("Code") or ""
            code = code or str(raw_code).rsplit("#", 1)[-1] or None
            text = str(body.get("message") or body.get("Message") or "")
        else:
            found, said = _XML_CODE.search(response.text), _XML_MESSAGE.search(response.text)
            code = code or (found.group(1) if found else None)
            text = said.group(1) if said else response.text[:300]
        return code, text

    def _classify(self, status: int, code: str | None, text: str) -> Outcome:
        if code in _UNAVAILABLE or (code == "MessageRejected" and _SETUP_REJECTION.search(text)):
            return Outcome.UNAVAILABLE
        if "quota exceeded" in text.lower():
            return Outcome.UNAVAILABLE
        if code in _RETRY:
            return Outcome.RETRY
        if code in ("MessageRejected", "BadRequestException"):
            return Outcome.PERMANENT
        return super()._classify(status, code, text)

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        region = self.config.region
        if code == "MessageRejected" and outcome is Outcome.UNAVAILABLE:
            return f"verify the sender's domain (or address) in the SES console for {region}"
        if code == "MailFromDomainNotVerifiedException":
            return "publish the MX and SPF records of the custom MAIL FROM domain, or turn it off in the SES console"
        if code in ("AccountSuspendedException", "SendingPausedException"):
            return f"sending is paused for the account in {region}: see the SES console's account dashboard"
        if code == "NotFoundException":
            return "the configuration set does not exist in this region: create it or fix configuration_set"
        if "quota exceeded" in text.lower():
            return "the daily sending quota is used up: wait, or ask AWS for a higher quota"
        if outcome is Outcome.UNAVAILABLE:
            return f"check {self.key_variable} (and AWS_SESSION_TOKEN), the IAM policy (ses:SendEmail) and the region"
        return ""

    def _account_request(self) -> httpx.Request:
        return self._client.build_request("GET", "/v2/email/account")

    def _probe_passes(self, response: httpx.Response, error: Any) -> bool:
        # AccessDenied on GetAccount: the signature was accepted; the IAM policy only lacks ses:GetAccount.
        return getattr(error, "code", None) in ("AccessDeniedException", "AccessDenied") or not error.transient

    def _account_steps(self, response: httpx.Response) -> list[Step]:
        title = "Amazon SES accepts the credentials"
        if not response.is_success:
            error = self.error_for(response)
            if self._probe_passes(response, error):
                detail = f"signature accepted; GetAccount not answered ({error})"
                return [Step("credentials", title, True, detail)]
            return [Step("credentials", title, False, str(error), error.hint)]
        account = self._json(response) or {}
        steps = [Step("credentials", title, True, f"region {self.config.region}")]
        enabled = bool(account.get("SendingEnabled", True)) and account.get("EnforcementStatus") != "SHUTDOWN"
        steps.append(
            Step(
                "sending_enabled",
                "Sending is enabled for the account",
                enabled,
                f"SendingEnabled={account.get('SendingEnabled')}, EnforcementStatus={account.get('EnforcementStatus')}",
                "" if enabled else f"sending is paused in {self.config.region}: see the SES account dashboard",
                {"production_access": account.get("ProductionAccessEnabled")},
            )
        )
        if not enabled:
            return steps
        quota = account.get("SendQuota") or {}
        limit, sent = quota.get("Max24HourSend"), quota.get("SentLast24Hours")
        if isinstance(limit, int | float) and isinstance(sent, int | float):
            left = limit - sent
            sandbox = (
                "" if account.get("ProductionAccessEnabled", True) else "; in the sandbox: verified recipients only"
            )
            steps.append(
                Step(
                    "quota",
                    "Sending quota left for the last 24 hours",
                    left > 0,
                    f"{sent:g} of {limit:g} sent{sandbox}",
                    "" if left > 0 else "the daily quota is used up: wait, or ask AWS for a higher quota",
                    {"max_24_hour_send": limit, "sent_last_24_hours": sent, "max_send_rate": quota.get("MaxSendRate")},
                )
            )
        return steps

    async def _sender_steps(self) -> list[Step]:
        title = "The sender is a verified SES identity"
        if not self.sender:
            return [Step("sender", title, False, "no sender configured", "set MAILSC_MAIL_FROM")]
        address = self.sender.rpartition("<")[2].rstrip(">").strip()
        domain = address.rpartition("@")[2]
        for identity in (address, domain):
            response = await self._exchange(
                self._client.build_request("GET", f"/v2/email/identities/{quote(identity, safe='@')}")
            )
            if response.is_success:
                body = self._json(response) or {}
                verified = bool(body.get("VerifiedForSendingStatus"))
                fix = "" if verified else f"finish verifying {identity} in the SES console (DKIM records in DNS)"
                return [Step("sender", title, verified, f"identity {identity}: verified={verified}", fix)]
        fix = f"verify the domain {domain} (or the address) in the SES console for {self.config.region}"
        return [Step("sender", title, False, f"neither {address} nor {domain} is an identity", fix)]


_SES_TAG_TEXT = re.compile(r"[^A-Za-z0-9_\-.@]")


def ses_tags(envelope: Envelope) -> list[dict[str, str]]:
    """SES ``EmailTags`` (message tags, for event publishing): a tag becomes ``{Name: tag, Value: "true"}``, a
    metadata entry ``{Name: key, Value: value}``; SES allows only ``[A-Za-z0-9_-.@]``, at most 256 characters, so
    other characters become ``_``."""

    def text(value: str) -> str:
        return _SES_TAG_TEXT.sub("_", value)[:256] or "_"

    pairs = [{"Name": text(tag), "Value": "true"} for tag in envelope.tags]
    pairs += [{"Name": text(key), "Value": text(value)} for key, value in envelope.metadata.items()]
    return pairs
