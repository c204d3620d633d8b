"""The web UI (issue 17): a single-page app built from ui/ (Vite, `npm run build`) into
lms/ui/static, served by `lms api` itself when API_UI is on (docs/ui.md).

- GET /ui/assets/...   the built JavaScript and CSS (hashed names: cached for a year)
- GET /ui, /ui/...     the app's one HTML page, whatever the rest of the path (the app routes)
- GET / with an Accept that names text/html (a browser's navigation): the same page, so
  http://127.0.0.1:3000/ opens the UI; any other GET / and every HEAD / stays the
  Elasticsearch cluster-info probe the shippers read (lms.api.routers.elastic).

The page and its assets hold no data: every log comes from the query API, with the token
the user typed (sessionStorage, `Authorization: Bearer`), so they need no token themselves
(lms.api.auth lets GET /ui... through) and a cookie-less API leaves no CSRF hole. Each UI
answer carries a Content-Security-Policy that allows scripts and styles from this origin
only: no inline script, no eval, no other host.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where `npm run build` (in ui/) writes the app: built at install, not committed."""
PREFIX = "/ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)
"""No 'unsafe-inline' and no 'unsafe-eval': a payload that got into the page as markup
could not run. Styles set through the DOM (el.style, as Preact and uPlot do) are not
inline style *attributes* in the sense of CSP, so 'self' is enough for them too."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
NOT_BUILT = (
    "The LMS web UI is on (API_UI=true) but not built: lms/ui/static/index.html is missing."
    " Run `make install` (it runs `npm ci && npm run build` in ui/), or set API_UI=false."
)


def is_ui_path(path: str) -> bool:
    """Whether `path` is the UI's page or one of its assets."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def wants_html(scope: Scope) -> bool:
    """A browser navigating to / (GET, Accept naming text/html), not a shipper's probe: the
    Elasticsearch clients send `Accept: application/json` or a vendor type, or nothing."""
    if scope["method"] != "GET" or scope["path"] != "/":
        return False
    return "text/html" in Headers(scope=scope).get("accept", "").lower()


def built() -> bool:
    return (STATIC_DIR / "index.html").is_file()


async def _page(_request: Request) -> Response:
    """The app's HTML page: revalidated every time, so a new build is picked up at once."""
    if not built():
        return PlainTextResponse(NOT_BUILT, status_code=503)
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class UIMiddleware:
    """Sends a browser's GET / to the UI page, and adds the security headers to every UI
    answer. Outermost (added after lms.api.auth's middleware), so that one sees /ui and
    applies its Host check to the page too."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if wants_html(scope):
            scope = {**scope, "path": PREFIX + "/", "raw_path": (PREFIX + "/").encode()}
        if not is_ui_path(scope["path"]):
            await self._app(scope, receive, send)
            return
        immutable = scope["path"].startswith(PREFIX + "/assets/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if immutable and message["status"] == 200:
                    headers["Cache-Control"] = "public, max-age=31536000, immutable"
            await send(message)

        await self._app(scope, receive, send_with_headers)


class _Assets:
    """StaticFiles over the build's assets, or the not-built message (StaticFiles itself
    would fail with a 500 on a directory that does not exist)."""

    def __init__(self) -> None:
        self._files = StaticFiles(directory=STATIC_DIR / "assets", check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not built():
            await PlainTextResponse(NOT_BUILT, status_code=503)(scope, receive, send)
            return
        await self._files(scope, receive, send)


def routes() -> list[Route | Mount]:
    """The UI's routes, for FastAPI's router (not in the OpenAPI document: not an API)."""
    return [
        Mount(PREFIX + "/assets", app=_Assets(), name="ui-assets"),
        Route(PREFIX, _page, methods=["GET"], include_in_schema=False),
        Route(PREFIX + "/{page:path}", _page, methods=["GET"], include_in_schema=False),
    ]


def warn_if_not_built() -> None:
    """Said once at start-up, so an operator sees it in the log before a user does."""
    if not built():
        log.warning("web UI not built", detail=NOT_BUILT)
