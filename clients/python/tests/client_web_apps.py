"""A FastAPI app and a Flask app with the request-logging middleware, the same routes in both:
for the middleware's unit tests (called in-process) and its end-to-end test (served, two
processes of each, by uvicorn and by werkzeug's threaded WSGI server).

    python client_web_apps.py fastapi|flask PORT     (PUBSUB_EMULATOR_HOST, PUBSUB_PROJECT,
                                                      PUBSUB_TOPIC from the environment)

Routes: GET /users/{user_id}/items/{item_id} 200; GET /check/{value} 422 unless an integer;
GET /boom/{n} raises RuntimeError; POST /echo 200 with the body's size; GET /stream/{n} n
chunks of 10 bytes; GET /ping 200; anything else 404. The user is the X-User header.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import fastapi
import flask
from fastapi.responses import StreamingResponse

from lms_client import ASGIMiddleware, LMSHandler, WSGIMiddleware


def asgi_user(scope: Any) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-user":
            return value.decode()
    return None


def wsgi_user(environ: dict[str, Any]) -> str | None:
    return environ.get("HTTP_X_USER")


def fastapi_app(handler: LMSHandler, **options: Any) -> Any:
    app = fastapi.FastAPI()

    @app.get("/users/{user_id}/items/{item_id}")
    async def item(user_id: str, item_id: int) -> dict[str, Any]:
        return {"user": user_id, "item": item_id}

    @app.get("/check/{value}")
    async def check(value: int) -> dict[str, int]:
        return {"value": value}

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @app.post("/echo")
    async def echo(request: fastapi.Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/stream/{n}")
    async def stream(n: int) -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(n):
                yield b"0123456789"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    options.setdefault("user_id", asgi_user)
    app.add_middleware(ASGIMiddleware, handler=handler, **options)
    return app


def flask_app(handler: LMSHandler, **options: Any) -> Any:
    app = flask.Flask("client-web-app")

    @app.get("/users/<user_id>/items/<int:item_id>")
    def item(user_id: str, item_id: int) -> dict[str, Any]:
        return {"user": user_id, "item": item_id}

    @app.get("/check/<value>")
    def check(value: str) -> Any:
        if not value.lstrip("-").isdigit():
            return {"detail": "value is not an integer"}, 422
        return {"value": int(value)}

    @app.get("/boom/<int:n>")
    def boom(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @app.post("/echo")
    def echo() -> dict[str, int]:
        return {"size": len(flask.request.get_data())}

    @app.get("/stream/<int:n>")
    def stream(n: int) -> flask.Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(n):
                yield b"0123456789"

        return flask.Response(chunks(), mimetype="text/plain")

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    options.setdefault("user_id", wsgi_user)
    app.wsgi_app = WSGIMiddleware(app.wsgi_app, handler=handler, **options)  # type: ignore[method-assign]
    return app


def main() -> None:
    from lms_client import PubSubTransport

    framework, port = sys.argv[1], int(sys.argv[2])

    def handler() -> LMSHandler:
        transport = PubSubTransport(
            project=os.environ["PUBSUB_PROJECT"], topic=os.environ["PUBSUB_TOPIC"]
        )
        return LMSHandler(service_name=f"web-{framework}", transport=transport, flush_interval=0.05)

    if framework == "fastapi":
        import uvicorn

        # A factory: uvicorn configures logging (logging.config.dictConfig, which closes every
        # handler that exists) before it makes the app, so the LMSHandler must come after.
        uvicorn.run(
            lambda: fastapi_app(handler()),
            factory=True,
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    else:
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", port, flask_app(handler()), threaded=True)


if __name__ == "__main__":
    main()
