"""Who may call `lms api`, checked in exactly one place: an ASGI middleware.

Three rules, in this order:
1. **Host** (while listening on loopback): the Host header must name an allowed host
   (API_ALLOWED_HOSTS, any port). A web page's script can reach 127.0.0.1 through a domain
   that resolves there (DNS rebinding); its requests carry that domain as Host.
2. **Ingestion** paths need one of INGEST_TOKENS, as `Authorization: Bearer <token>` or as
   the password of HTTP Basic (Promtail and Fluent Bit's Loki output only do Basic). Separate
   from the read token, so a service that may write logs cannot read everyone's.
3. **Everything else** but /healthz and the web UI's page and assets (GET /ui...: static
   files with no data in them; the data comes from the API, with the token) needs API_TOKEN
   as a bearer token, when it is set: also the OpenAPI document and /docs (routes FastAPI
   adds itself) and paths that do not exist (a 404 without the token would tell a stranger
   which paths do).

A middleware and not a FastAPI security dependency, because a dependency guards only the
routes it is attached to; the middleware sees every request before routing, so nothing can be
added later without it. What a dependency would have given for free, the schemes in OpenAPI,
is added to the document by `document_security`. Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lms.api.schemas import Problem
from lms.settings import Settings, SettingsError
from lms.ui import is_ui_path

OPEN_PATHS = frozenset({"/healthz"})
READ_SCHEME = "HTTPBearer"
INGEST_BEARER = "IngestBearer"
INGEST_BASIC = "IngestBasic"
INGEST_PREFIXES = ("/otlp/", "/loki/", "/api/prom/push")
"""Paths of the ingestion protocols; with POST /v1/logs and any `.../_bulk`."""
ELASTIC_PROBES = frozenset({"/", "/_cluster/health", "/_license", "/_xpack"})
"""What Elasticsearch shippers read at start-up, with the credentials they write with."""
_READ_DETAIL = "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)"
_INGEST_DETAIL = (
    "missing or wrong ingestion token (Authorization: Bearer <token>, or HTTP Basic with the"
    " token as password; INGEST_TOKENS)"
)


def is_ingestion(method: str, path: str) -> bool:
    """Whether a request is ingestion (write), as opposed to the query API (read)."""
    if method == "POST" and path == "/v1/logs":
        return True
    return path.startswith(INGEST_PREFIXES) or path.endswith("/_bulk") or path in ELASTIC_PROBES


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve anonymous ingestion beyond this machine, unless explicitly allowed:
    anyone who can reach the port could write logs in any service's name."""
    if (
        settings.api_ingest
        and not is_loopback(settings.api_host)
        and not settings.ingest_token_list
        and not settings.ingest_allow_anonymous
    ):
        raise SettingsError(
            f"API_HOST={settings.api_host} is not a loopback address and ingestion is on"
            " without INGEST_TOKENS: set INGEST_TOKENS, or API_INGEST=false, or"
            " INGEST_ALLOW_ANONYMOUS=true to accept logs from anyone who can connect"
        )


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host names accepted, or None (any) when not on loopback or API_ALLOWED_HOSTS=*."""
    names = {name.strip().lower() for name in settings.api_allowed_hosts.split(",")}
    if not is_loopback(settings.api_host) or "*" in names:
        return None
    return frozenset(name for name in names if name)


class AccessMiddleware:
    """Answers 400 (Host) or 401 (token) before a request reaches any route."""

    def __init__(
        self,
        app: ASGIApp,
        read_token: str | None,
        ingest_tokens: Sequence[str],
        hosts: frozenset[str] | None,
    ) -> None:
        self._app = app
        self._read_token = read_token.encode() if read_token else None
        self._ingest_tokens = [token.encode() for token in ingest_tokens]
        self._hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        if self._hosts is not None:
            host = headers.get("host", "")
            if _hostname(host) not in self._hosts:
                return JSONResponse(
                    {"detail": f"Host {host!r} is not allowed here (API_ALLOWED_HOSTS)"},
                    status_code=400,
                )
        path: str = scope["path"]
        authorization = headers.get("authorization", "")
        if path in OPEN_PATHS or (scope["method"] in ("GET", "HEAD") and is_ui_path(path)):
            return None
        if is_ingestion(scope["method"], path):
            if self._ingest_tokens and not self._ingest_authorized(authorization):
                return JSONResponse(
                    {"detail": _INGEST_DETAIL},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer, Basic realm="lms"'},
                )
            return None
        if self._read_token is not None and not _matches(
            _bearer(authorization), [self._read_token]
        ):
            return JSONResponse(
                {"detail": _READ_DETAIL}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return None

    def _ingest_authorized(self, authorization: str) -> bool:
        return _matches(_bearer(authorization), self._ingest_tokens) or _matches(
            _basic_password(authorization), self._ingest_tokens
        )


def _hostname(host: str) -> str:
    """The Host header without its port: `[::1]:3000` is `[::1]`, `localhost:3000` `localhost`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.partition(":")[0]


def _bearer(authorization: str) -> bytes | None:
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip().encode() if scheme.lower() == "bearer" else None


def _basic_password(authorization: str) -> bytes | None:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(b":")
    return password if colon else None


def _matches(candidate: bytes | None, tokens: Sequence[bytes]) -> bool:
    """Constant time per token: how long a wrong token takes must not tell how much of it
    was right. Every token is compared, so the time does not tell which one matched."""
    if candidate is None:
        return False
    found = False
    for token in tokens:
        found |= hmac.compare_digest(candidate, token)
    return found


def document_security(schema: dict[str, Any], read: bool, ingest: bool) -> dict[str, Any]:
    """`schema` (an OpenAPI document) saying what AccessMiddleware enforces: which scheme each
    operation needs, and that it may answer 401."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).setdefault(Problem.__name__, Problem.model_json_schema())
    schemes = components.setdefault("securitySchemes", {})
    if read:
        schemes[READ_SCHEME] = {
            "type": "http",
            "description": "Bearer <API_TOKEN>",
            "scheme": "bearer",
        }
    if ingest:
        schemes[INGEST_BEARER] = {
            "type": "http",
            "description": "Bearer <one of INGEST_TOKENS>",
            "scheme": "bearer",
        }
        schemes[INGEST_BASIC] = {
            "type": "http",
            "description": "HTTP Basic, any user name, one of INGEST_TOKENS as password",
            "scheme": "basic",
        }
    unauthorized = {
        "description": "missing or wrong token",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{Problem.__name__}"}}
        },
    }
    for path, operations in schema["paths"].items():
        if path in OPEN_PATHS:
            continue
        for method, operation in operations.items():
            if is_ingestion(method.upper(), path):
                if not ingest:
                    continue
                operation["security"] = [{INGEST_BEARER: []}, {INGEST_BASIC: []}]
            elif read:
                operation["security"] = [{READ_SCHEME: []}]
            else:
                continue
            operation["responses"]["401"] = unauthorized
    return schema
