"""Provider transports against loopback servers only: no AWS_* or provider setting from the outside leaks in."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from mailsc.config import Settings
from mailsc.transports.providers import HttpProviderTransport, provider_transport
from tests.transports.providers.contract import DOMAIN, KEY, ContractServer

SENDER = "app@example.com"


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AWS_"):
            monkeypatch.delenv(name)


def transport_url(kind: str, endpoint: str, **options: Any) -> str:
    host = DOMAIN if kind == "mailgun" else ""
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, **options}.items())
    return f"{kind}://{KEY}@{host}?{query}"


def build(kind: str, endpoint: str, **options: Any) -> HttpProviderTransport:
    """The transport as a user configures it: a transport URL read by ``Settings``."""
    settings = Settings(_env_file=None, transport_url=transport_url(kind, endpoint, **options), mail_from=SENDER)
    plan = settings.transport_plan
    assert plan is not None
    return provider_transport(plan.providers[kind], sender=SENDER)


Contract = Callable[..., Awaitable[tuple[ContractServer, HttpProviderTransport]]]


@pytest.fixture
async def contract() -> AsyncIterator[Contract]:
    """``server, transport = await contract("postmark", timeout=0.5)``: both closed after the test."""
    opened: list[tuple[ContractServer, HttpProviderTransport]] = []

    async def _open(kind: str, **options: Any) -> tuple[ContractServer, HttpProviderTransport]:
        server = ContractServer(kind)
        await server.__aenter__()
        transport = build(kind, server.url, **options)
        opened.append((server, transport))
        return server, transport

    yield _open
    for server, transport in opened:
        await transport.aclose()
        await server.__aexit__(None, None, None)
