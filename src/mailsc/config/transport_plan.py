"""Turning the provider variables and transport URLs of ``ProviderSettings`` into a ``TransportPlan``: URL parsing,
per-field overrides, defaults (endpoints, regions), and every problem listed at once without showing a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr

from ..errors import ConfigProblem
from .connection import is_loopback
from .transports import (
    MAX_SIZES,
    PROVIDER_KINDS,
    TRANSPORT_NAMES,
    ProviderConfig,
    ProviderSettings,
    TransportPlan,
    url_scheme,
)

_OPTIONS: dict[str, tuple[str, ...]] = {
    "ses": ("region", "configuration_set"),
    "sendgrid": ("region",),
    "mailgun": ("region",),
    "postmark": ("message_stream",),
    "resend": (),
}
_COMMON_OPTIONS = ("endpoint", "timeout", "pool_size", "http2", "ca_file", "max_size")

_URL_EXAMPLES = {
    "ses": "ses://?region=eu-west-1 (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
    "sendgrid": "sendgrid://KEY@",
    "mailgun": "mailgun://KEY@mg.example.com?region=eu",
    "postmark": "postmark://TOKEN@",
    "resend": "resend://KEY@",
}

_KEY_VARIABLE = {
    "sendgrid": "MAILSC_SENDGRID_API_KEY",
    "mailgun": "MAILSC_MAILGUN_API_KEY",
    "postmark": "MAILSC_POSTMARK_TOKEN",
    "resend": "MAILSC_RESEND_API_KEY",
}


def _parse_url(kind: str, url: str, variable: str) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """The fields a provider URL gives; its problems never show the URL (it holds a secret)."""
    parts = urlsplit(url)
    example = f"e.g. {_URL_EXAMPLES[kind]}"
    fields: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    user = unquote(parts.username) if parts.username else ""
    password = unquote(parts.password) if parts.password else ""
    host = parts.hostname or ""
    if kind == "ses":
        if user or password:
            if not (user and password):
                problems.append(ConfigProblem(variable, "give both the access key id and the secret", example))
            fields["access_key_id"], fields["secret_access_key"] = user, SecretStr(password)
        if host not in ("", "default"):
            problems.append(ConfigProblem(variable, "an ses:// URL names no host", "use ?endpoint= for another one"))
    else:
        key = password or user
        if key:
            fields["api_key"] = SecretStr(key)
        if kind == "mailgun":
            if host and host != "default":
                fields["domain"] = host
        elif host not in ("", "default"):
            hint = f"put the key before the @ ({_URL_EXAMPLES[kind]}); use ?endpoint= for another API address"
            problems.append(ConfigProblem(variable, f"a {kind}:// URL names no host", hint))
    allowed = (*_OPTIONS[kind], *_COMMON_OPTIONS)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            problems.append(ConfigProblem(variable, f"unknown option {name!r}", f"known: {', '.join(allowed)}"))
        else:
            fields[name] = value
    return fields, problems


def _truthy(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }.get(str(value).strip().lower())


class _Resolver:
    """Builds one provider profile from its URL and field variables, collecting problems."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.s = settings
        self.problems: list[ConfigProblem] = []

    def url_for(self, kind: str) -> tuple[str, SecretStr] | None:
        own: SecretStr | None = getattr(self.s, f"{kind}_url")
        shared = self.s.transport_url if url_scheme(self.s.transport_url) == kind else None
        if own is not None and shared is not None:
            self.problems.append(
                ConfigProblem(f"MAILSC_{kind.upper()}_URL", "both it and MAILSC_TRANSPORT_URL are set", "keep one")
            )
        if own is not None:
            return f"MAILSC_{kind.upper()}_URL", own
        if shared is not None:
            return "MAILSC_TRANSPORT_URL", shared
        return None

    def configured(self, kind: str) -> bool:
        """A profile exists when its URL or one of its own variables is set (AWS_* alone configure nothing)."""
        if self.url_for(kind) is not None:
            return True
        own = {
            "ses": ("ses_region", "ses_configuration_set", "ses_endpoint"),
            "sendgrid": ("sendgrid_api_key", "sendgrid_endpoint"),
            "mailgun": ("mailgun_api_key", "mailgun_domain", "mailgun_region", "mailgun_endpoint"),
            "postmark": ("postmark_token", "postmark_message_stream", "postmark_endpoint"),
            "resend": ("resend_api_key", "resend_endpoint"),
        }[kind]
        return any(getattr(self.s, name) is not None for name in own)

    def resolve(self, kind: str) -> ProviderConfig | None:
        before = len(self.problems)
        url = self.url_for(kind)
        fields: dict[str, Any] = {}
        where: dict[str, str] = {}  # field -> variable that gave it, for problems
        if url is not None:
            variable, secret = url
            fields, url_problems = _parse_url(kind, secret.get_secret_value(), variable)
            self.problems += url_problems
            where = dict.fromkeys(fields, variable)
        self._fill(kind, fields, where)
        config = self._check(kind, fields, where)
        return config if len(self.problems) == before else None

    def _fill(self, kind: str, fields: dict[str, Any], where: dict[str, str]) -> None:
        s = self.s
        prefix = f"MAILSC_{kind.upper()}_"
        candidates: list[tuple[str, str, Any]] = [("endpoint", f"{prefix}ENDPOINT", getattr(s, f"{kind}_endpoint"))]
        if kind == "ses":
            candidates += [
                ("region", "MAILSC_SES_REGION", s.ses_region),
                ("region", "AWS_REGION", s.aws_region),
                ("configuration_set", "MAILSC_SES_CONFIGURATION_SET", s.ses_configuration_set),
                ("access_key_id", "AWS_ACCESS_KEY_ID", s.aws_access_key_id),
                ("secret_access_key", "AWS_SECRET_ACCESS_KEY", s.aws_secret_access_key),
                ("session_token", "AWS_SESSION_TOKEN", s.aws_session_token),
            ]
        else:
            key = s.postmark_token if kind == "postmark" else getattr(s, f"{kind}_api_key")
            candidates.append(("api_key", _KEY_VARIABLE[kind], key))
        if kind == "mailgun":
            candidates += [("domain", "MAILSC_MAILGUN_DOMAIN", s.mailgun_domain)]
            candidates += [("region", "MAILSC_MAILGUN_REGION", s.mailgun_region)]
        if kind == "postmark":
            candidates += [("message_stream", "MAILSC_POSTMARK_MESSAGE_STREAM", s.postmark_message_stream)]
        for field, variable, value in candidates:
            if value is None:
                continue
            if field in where and where[field].endswith("_URL") and not variable.startswith("AWS_"):
                self.problems.append(
                    ConfigProblem(variable, f"is set, and {where[field]} gives the {field} too", "give it once")
                )
            elif field not in fields:
                fields[field], where[field] = value, variable

    def _check(self, kind: str, fields: dict[str, Any], where: dict[str, str]) -> ProviderConfig | None:
        s = self.s
        url_variable = where.get("endpoint", f"MAILSC_{kind.upper()}_URL")

        def need(field: str, variable: str, what: str, hint: str) -> None:
            if not fields.get(field):
                self.problems.append(ConfigProblem(variable, f"the {kind} transport needs {what}", hint))

        if kind == "ses":
            need("region", "MAILSC_SES_REGION", "an AWS region", "e.g. ses://?region=eu-west-1, or set AWS_REGION")
            hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE forms); instance roles are not read"
            need("access_key_id", "AWS_ACCESS_KEY_ID", "an access key id", hint)
            need("secret_access_key", "AWS_SECRET_ACCESS_KEY", "a secret access key", hint)
        else:
            key_hint = f"e.g. MAILSC_TRANSPORT_URL={_URL_EXAMPLES[kind]}, or set {_KEY_VARIABLE[kind]}"
            need("api_key", _KEY_VARIABLE[kind], "an API key" if kind != "postmark" else "a server token", key_hint)
        if kind == "mailgun":
            need("domain", "MAILSC_MAILGUN_DOMAIN", "a sending domain", "e.g. mailgun://KEY@mg.example.com")
        region = str(fields.get("region") or "").lower()
        if kind in ("mailgun", "sendgrid"):
            if region not in ("", "us", "eu"):
                variable = where.get("region", f"MAILSC_{kind.upper()}_REGION")
                self.problems.append(ConfigProblem(variable, f"region {region!r} is not us or eu"))
            region = region or "us"
        endpoint = str(fields.get("endpoint") or "") or _default_endpoint(kind, region, str(fields.get("domain", "")))
        endpoint = endpoint.rstrip("/")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problems.append(ConfigProblem(url_variable, "the endpoint must be an http(s):// URL"))
        elif parts.scheme == "http" and not is_loopback(parts.hostname):
            self.problems.append(
                ConfigProblem(url_variable, "the endpoint must use https:// (plain http only to a loopback address)")
            )
        options: dict[str, Any] = {
            "timeout": fields.get("timeout", s.provider_timeout),
            "pool_size": fields.get("pool_size", s.provider_pool_size),
            "max_size": fields.get("max_size", MAX_SIZES[kind]),
        }
        for name, low in (("timeout", 0.0), ("pool_size", 1), ("max_size", 1024)):
            try:
                value = float(options[name]) if name == "timeout" else int(options[name])
                if value <= low if name == "timeout" else value < low:
                    raise ValueError
                options[name] = value
            except (TypeError, ValueError):
                self.problems.append(ConfigProblem(where.get(name, url_variable), f"{name} must be a number > {low}"))
        http2 = _truthy(fields.get("http2", s.provider_http2))
        if http2 is None:
            self.problems.append(ConfigProblem(where.get("http2", url_variable), "http2 must be true or false"))
        ca_file = Path(fields["ca_file"]) if fields.get("ca_file") else s.provider_ca_file
        if ca_file is not None and not ca_file.is_file():
            variable = where.get("ca_file", "MAILSC_PROVIDER_CA_FILE")
            self.problems.append(ConfigProblem(variable, f"file {str(ca_file)!r} does not exist or is not a file"))
        key = fields.get("api_key")
        secret = fields.get("secret_access_key")
        token = fields.get("session_token")
        return ProviderConfig(
            kind=kind,
            endpoint=endpoint,
            api_key=key if isinstance(key, SecretStr) or key is None else SecretStr(str(key)),
            access_key_id=fields.get("access_key_id"),
            secret_access_key=secret if isinstance(secret, SecretStr) or secret is None else SecretStr(secret),
            session_token=token if isinstance(token, SecretStr) or token is None else SecretStr(token),
            region=region or None,
            domain=fields.get("domain"),
            configuration_set=fields.get("configuration_set"),
            message_stream=fields.get("message_stream") or ("outbound" if kind == "postmark" else None),
            timeout=options["timeout"] if isinstance(options["timeout"], float) else 30.0,
            pool_size=options["pool_size"] if isinstance(options["pool_size"], int) else 10,
            http2=bool(http2),
            ca_file=ca_file,
            max_size=options["max_size"] if isinstance(options["max_size"], int) else MAX_SIZES[kind],
        )


def _default_endpoint(kind: str, region: str, domain: str) -> str:
    if kind == "ses":
        return f"https://email.{region or 'us-east-1'}.amazonaws.com"
    if kind == "mailgun":
        return "https://api.eu.mailgun.net" if region == "eu" else "https://api.mailgun.net"
    if kind == "sendgrid":
        return "https://api.eu.sendgrid.com" if region == "eu" else "https://api.sendgrid.com"
    return {"postmark": "https://api.postmarkapp.com", "resend": "https://api.resend.com"}[kind]


def build_transport_plan(
    settings: ProviderSettings, *, smtp_configured: bool
) -> tuple[TransportPlan | None, list[ConfigProblem]]:
    """The provider profiles and the failover order; ``None`` when no provider or order is configured (then the
    SMTP profile, or capture, is the transport as before)."""
    resolver = _Resolver(settings)
    scheme = url_scheme(settings.transport_url)
    if scheme is not None and scheme not in TRANSPORT_NAMES:
        known = "smtp://, smtps://, " + ", ".join(f"{k}://" for k in PROVIDER_KINDS)
        resolver.problems.append(ConfigProblem("MAILSC_TRANSPORT_URL", "unknown scheme", f"use one of {known}"))
    for kind in PROVIDER_KINDS:
        own: SecretStr | None = getattr(settings, f"{kind}_url")
        if own is not None and url_scheme(own) != kind:
            variable = f"MAILSC_{kind.upper()}_URL"
            resolver.problems.append(ConfigProblem(variable, f"must start with {kind}://", _URL_EXAMPLES[kind]))
    order: list[str] = []
    if settings.transports is not None:
        names = [n.strip().lower() for n in settings.transports.split(",") if n.strip()]
        for name in names:
            if name not in TRANSPORT_NAMES:
                resolver.problems.append(
                    ConfigProblem(
                        "MAILSC_TRANSPORTS", f"unknown transport {name!r}", f"known: {', '.join(TRANSPORT_NAMES)}"
                    )
                )
            elif name in order:
                resolver.problems.append(ConfigProblem("MAILSC_TRANSPORTS", f"{name} is listed twice"))
            else:
                order.append(name)
        if not names:
            resolver.problems.append(ConfigProblem("MAILSC_TRANSPORTS", "is empty", "e.g. postmark,smtp"))
    configured = [k for k in PROVIDER_KINDS if resolver.configured(k)]
    if settings.transports is None:
        if scheme is not None and scheme in TRANSPORT_NAMES:
            order = [scheme]
        elif configured:
            order = (["smtp"] if smtp_configured else []) + configured
            if len(order) > 1:
                hint = f"set MAILSC_TRANSPORTS to the order to use them in, e.g. {','.join(order)}"
                resolver.problems.append(
                    ConfigProblem("MAILSC_TRANSPORTS", f"several transports are configured ({', '.join(order)})", hint)
                )
    providers: dict[str, ProviderConfig] = {}
    for name in order:
        if name == "smtp":
            if not smtp_configured:
                resolver.problems.append(
                    ConfigProblem(
                        "MAILSC_TRANSPORTS", "names smtp, but no SMTP server is configured", "set MAILSC_SMTP_URL"
                    )
                )
            continue
        if name not in PROVIDER_KINDS:
            continue
        if not resolver.configured(name) and name != "ses":
            hint = f"set MAILSC_{name.upper()}_URL, e.g. {_URL_EXAMPLES[name]}"
            resolver.problems.append(ConfigProblem("MAILSC_TRANSPORTS", f"names {name}, which is not configured", hint))
            continue
        config = resolver.resolve(name)
        if config is not None:
            providers[name] = config
    for kind in configured:
        if kind not in order and settings.transports is not None:
            hint = f"add {kind} to MAILSC_TRANSPORTS, or remove its settings"
            resolver.problems.append(ConfigProblem("MAILSC_TRANSPORTS", f"{kind} is configured but not listed", hint))
    problems = list(dict.fromkeys(resolver.problems))
    if not order or problems:
        return None, problems
    return TransportPlan(tuple(order), providers), problems
