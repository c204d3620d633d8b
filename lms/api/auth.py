"""The bearer token of `lms api` (API_TOKEN), checked in exactly one place: an ASGI middleware.

A middleware and not a FastAPI security dependency, because a dependency guards only the
routes it is attached to, while the token must guard everything but /healthz: also the
OpenAPI document and /docs (routes FastAPI adds itself) and paths that do not exist (a 404
without the token would tell a stranger which paths do). The middleware sees every request
before routing, so nothing can be added later without it. /healthz stays open so that a
liveness probe needs no secret.

What a dependency would have given for free, the bearer scheme in OpenAPI, is added to the
document by `document_bearer`, so clients still see which endpoints need the token.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lms.api.schemas import Problem

OPEN_PATHS = frozenset({"/healthz"})
SCHEME = "HTTPBearer"
_DETAIL = "missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)"


class BearerTokenMiddleware:
    """Answers 401 to any HTTP request outside OPEN_PATHS without `Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and Request(scope).url.path not in OPEN_PATHS
            and not self._authorized(Headers(scope=scope).get("authorization", ""))
        ):
            response = JSONResponse(
                {"detail": _DETAIL}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _authorized(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: how long a wrong token takes must not tell how much of it was right.
        return hmac.compare_digest(credentials.strip().encode(), self._token)


def document_bearer(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an OpenAPI document) saying what BearerTokenMiddleware enforces: the bearer
    scheme, required by every operation outside OPEN_PATHS, which may answer 401."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).setdefault(Problem.__name__, Problem.model_json_schema())
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "description": "Bearer <API_TOKEN>",
        "scheme": "bearer",
    }
    unauthorized = {
        "description": "missing or wrong bearer token",
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{Problem.__name__}"}}
        },
    }
    for path, operations in schema["paths"].items():
        if path in OPEN_PATHS:
            continue
        for operation in operations.values():
            operation["responses"]["401"] = unauthorized
            operation["security"] = [{SCHEME: []}]
    return schema
