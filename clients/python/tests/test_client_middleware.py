"""ASGIMiddleware and WSGIMiddleware through real ASGI and WSGI calls (httpx's ASGITransport,
werkzeug's test client, and raw ASGI messages where a client cannot go: a disconnect, a
cancellation), the logs caught by an in-process transport: every field, route templates,
exceptions, streaming, background tasks, request ids, traceparent, user ids, and the
instance's seq and timestamps (the order GET /v1/users/{id}/requests reads).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import fastapi
import flask
import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from werkzeug.test import Client, EnvironBuilder

from client_support import Collector, Gate, entries_fields, make_handler
from client_web_apps import fastapi_app, flask_app
from lms_client import ASGIMiddleware, LMSHandler, Sequencer, WSGIMiddleware
from lms_client.requestlog import request_id_of, route_template, traceparent_ids

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{SPAN}-01"


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[LMSHandler, Collector]]:
    """One handler for the module (a close takes a while), its logs cleared per test."""
    collector = Collector()
    handler = make_handler(collector)
    yield handler, collector
    handler.close()


@pytest.fixture
def collector(shared: tuple[LMSHandler, Collector]) -> Collector:
    assert shared[0].drain(10)
    shared[1].entries.clear()
    return shared[1]


@pytest.fixture
def handler(shared: tuple[LMSHandler, Collector], collector: Collector) -> LMSHandler:
    return shared[0]


def logs(handler: LMSHandler, collector: Collector) -> list[dict[str, Any]]:
    assert handler.drain(10)
    return entries_fields(collector.entries)


def one_log(handler: LMSHandler, collector: Collector) -> dict[str, Any]:
    (log,) = logs(handler, collector)
    return log


def asgi_client(app: Any, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def stamp(log: dict[str, Any]) -> float:
    return datetime.fromisoformat(log["timestamp"]).timestamp()


# --- ASGI: FastAPI -------------------------------------------------------------------------


async def test_asgi_logs_every_field_of_a_request(handler, collector) -> None:
    clock = [1_800_000_000.25]
    app = fastapi_app(handler, sequencer=Sequencer(lambda: clock[0]))
    async with asgi_client(app) as client:
        answer = await client.post("/echo", content=b"x" * 321, headers={"x-user": "alice"})
    assert answer.status_code == 200
    log = one_log(handler, collector)
    meta = log["metadata"]
    http = meta.pop("http")
    assert http.pop("duration_ms") >= 0
    assert http == {
        "method": "POST",
        "route": "/echo",
        "path": "/echo",
        "status_code": 200,
        "request_size": 321,
        "response_size": len(answer.content),
        "outcome": "response",
    }
    assert meta["user_id"] == "alice"
    assert meta["request_id"] == answer.headers["x-request-id"]
    assert len(meta["request_id"]) == 32
    assert meta["instance"].endswith(f":{__import__('os').getpid()}")
    assert meta["seq"] == 0
    assert log["severity"] == "info"
    assert log["timestamp"] == "2027-01-15T08:00:00.250000Z"
    assert log["payload"].startswith("POST /echo 200 ") and log["payload"].endswith("ms")
    assert "trace_id" not in log and "query" not in http and "headers" not in http


async def test_asgi_route_is_the_template_and_severity_follows_the_status(
    handler, collector
) -> None:
    app = fastapi_app(handler)
    async with asgi_client(app, raise_app_exceptions=False) as client:
        assert (await client.get("/users/u-7/items/12?secret=1")).status_code == 200
        assert (await client.get("/check/abc")).status_code == 422
        assert (await client.get("/nowhere/12")).status_code == 404
        assert (await client.post("/ping")).status_code == 405
        assert (await client.get("/boom/3")).status_code == 500
    got = [
        (log["metadata"]["http"]["route"], log["metadata"]["http"]["status_code"], log["severity"])
        for log in logs(handler, collector)
    ]
    assert got == [
        ("/users/{user_id}/items/{item_id}", 200, "info"),
        ("/check/{value}", 422, "warn"),
        (None, 404, "warn"),
        ("/ping", 405, "warn"),
        ("/boom/{n}", 500, "error"),
    ]
    first = logs(handler, collector)[0]
    assert first["metadata"]["http"]["path"] == "/users/u-7/items/12"
    assert "secret" not in str(first)  # no query string unless asked


async def test_asgi_exception_is_logged_with_its_traceback_and_re_raised(
    handler, collector
) -> None:
    app = fastapi_app(handler)
    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="boom 5"):
            await client.get("/boom/5")
    log = one_log(handler, collector)
    assert log["severity"] == "error"
    assert log["metadata"]["http"]["status_code"] == 500
    assert log["metadata"]["http"]["outcome"] == "exception"
    assert log["payload"].startswith("GET /boom/{n} 500 ")
    assert "Traceback (most recent call last)" in log["payload"]
    assert log["payload"].endswith("RuntimeError: boom 5")


async def test_asgi_streaming_response_is_counted_and_background_task_runs(
    handler, collector
) -> None:
    ran = threading.Event()

    async def chunks() -> Any:
        for _ in range(7):
            yield b"0123456789"

    async def endpoint(_request: Any) -> Any:
        from starlette.responses import StreamingResponse

        return StreamingResponse(chunks(), background=BackgroundTask(ran.set))

    app = Starlette(routes=[Route("/s/{n}", endpoint)])
    app.add_middleware(ASGIMiddleware, handler=handler)
    async with asgi_client(app) as client:
        answer = await client.get("/s/1")
    assert answer.content == b"0123456789" * 7
    assert ran.is_set()
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["response_size"] == 70
    assert log["metadata"]["http"]["route"] == "/s/{n}"


async def test_asgi_route_behind_a_mount_has_its_prefix(handler, collector) -> None:
    async def endpoint(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/orders/{order_id}", endpoint)])
    app = Starlette(routes=[Mount("/api", app=inner)])
    app.add_middleware(ASGIMiddleware, handler=handler)
    async with asgi_client(app) as client:
        assert (await client.get("/api/orders/9")).status_code == 200
        assert (await client.get("/api/nothing")).status_code == 404
    routes = [log["metadata"]["http"]["route"] for log in logs(handler, collector)]
    assert routes == ["/api/orders/{order_id}", None]


async def test_asgi_log_query_and_headers_only_those_asked_for(handler, collector) -> None:
    app = fastapi_app(handler, log_query=True, log_headers=["User-Agent", "X-Absent"])
    async with asgi_client(app) as client:
        await client.get(
            "/ping?a=1&b=2", headers={"user-agent": "probe/1", "authorization": "Bearer s3cret"}
        )
    http = one_log(handler, collector)["metadata"]["http"]
    assert http["query"] == "a=1&b=2"
    assert http["headers"] == {"user-agent": "probe/1"}


async def test_asgi_request_id_echoed_when_valid_replaced_when_not(handler, collector) -> None:
    app = fastapi_app(handler)
    async with asgi_client(app) as client:
        kept = await client.get("/ping", headers={"x-request-id": "req-123"})
        too_long = await client.get("/ping", headers={"x-request-id": "a" * 129})
        spaced = await client.get("/ping", headers={"x-request-id": "a b"})
    assert kept.headers["x-request-id"] == "req-123"
    assert too_long.headers["x-request-id"] != "a" * 129
    assert spaced.headers["x-request-id"] != "a b"
    ids = [log["metadata"]["request_id"] for log in logs(handler, collector)]
    assert ids == ["req-123", too_long.headers["x-request-id"], spaced.headers["x-request-id"]]


async def test_asgi_app_own_request_id_header_is_not_doubled(handler, collector) -> None:
    async def endpoint(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok", headers={"X-Request-ID": "from-app"})

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(ASGIMiddleware, handler=handler)
    async with asgi_client(app) as client:
        answer = await client.get("/")
    assert answer.headers.get_list("x-request-id") == ["from-app"]


async def test_asgi_traceparent_gives_trace_and_span_ids(handler, collector) -> None:
    app = fastapi_app(handler)
    async with asgi_client(app) as client:
        await client.get("/ping", headers={"traceparent": TRACEPARENT})
        await client.get("/ping", headers={"traceparent": "00-" + "0" * 32 + f"-{SPAN}-01"})
    first, second = logs(handler, collector)
    assert (first["trace_id"], first["span_id"]) == (TRACE, SPAN)
    assert "trace_id" not in second


async def test_asgi_user_id_callable_raising_does_not_break_the_request(handler, collector) -> None:
    def broken(_scope: Any) -> str:
        raise LookupError("no session")

    app = fastapi_app(handler, user_id=broken)
    async with asgi_client(app) as client:
        assert (await client.get("/ping")).status_code == 200
    meta = one_log(handler, collector)["metadata"]
    assert "user_id" not in meta
    assert meta["user_id_error"] == "LookupError: no session"


@pytest.mark.parametrize(
    ("value", "stored"),
    [(42, 42), ("u-1", "u-1"), (None, None), ("", None), (" a", None), (True, None), (2**70, None)],
)
async def test_asgi_user_id_values_lms_would_refuse_are_left_out(
    handler, collector, value, stored
) -> None:
    app = fastapi_app(handler, user_id=lambda _scope: value)
    async with asgi_client(app) as client:
        await client.get("/ping")
    meta = one_log(handler, collector)["metadata"]
    assert meta.get("user_id") == stored
    assert ("user_id_error" in meta) == (value is not None and stored is None)


async def _raw_call(
    app: Any,
    receive: Callable[[], Any],
    path: str = "/",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
    }
    await app(scope, receive, send)
    return sent


NOT_A_LENGTH = [b"\xb2", b"\xb9\xb3", b"-3", b"3.0", b""]
"""Content-Length values that are no number; b"\xb2" is "²" as latin-1 (the way servers
hand header bytes over), which str.isdigit() takes for a digit and int() refuses."""


@pytest.mark.parametrize("declared", NOT_A_LENGTH)
async def test_asgi_a_content_length_that_is_no_number_fails_nothing(
    handler, collector, declared: bytes
) -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"abcd"}

    middleware = ASGIMiddleware(echo, handler=handler)
    sent = await _raw_call(middleware, receive, headers=[(b"content-length", declared)])
    assert sent[-1]["body"] == b"abcd"
    http = one_log(handler, collector)["metadata"]["http"]
    assert (http["status_code"], http["request_size"]) == (200, 4)  # the bytes that came


async def test_asgi_client_disconnect_is_logged_once(handler, collector) -> None:
    async def waits_for_the_client(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # the client went away before any answer

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    await _raw_call(ASGIMiddleware(waits_for_the_client, handler=handler), receive)
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["outcome"] == "disconnected"
    assert log["metadata"]["http"]["status_code"] is None
    assert log["severity"] == "warn"
    assert log["payload"].startswith("GET / - ") and log["payload"].endswith("(disconnected)")


async def test_asgi_cancelled_request_is_logged_and_the_cancel_propagates(
    handler, collector
) -> None:
    entered = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.sleep(3600)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    task = asyncio.create_task(_raw_call(ASGIMiddleware(slow, handler=handler), receive))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["outcome"] == "cancelled"
    assert log["severity"] == "warn"


async def test_asgi_lms_down_never_fails_the_request(collector) -> None:
    """The transport is stuck and the queue holds one log: requests are served all the same,
    the logs that find no room counted as dropped."""
    gate = Gate()
    handler = make_handler(gate, queue_size=1, batch_size=1, on_error=lambda _p: None)
    try:
        app = fastapi_app(handler)
        async with asgi_client(app) as client:
            codes = [(await client.get("/ping")).status_code for _ in range(5)]
        assert codes == [200] * 5
        assert handler.counters.dropped_by.get("queue_full", 0) >= 3
    finally:
        gate.opened.set()
        handler.close()


async def test_asgi_other_scopes_pass_through(handler, collector) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await ASGIMiddleware(app, handler=handler)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
    assert logs(handler, collector) == []


# --- the instance's order --------------------------------------------------------------------


def test_seq_is_unique_and_monotonic_under_threads() -> None:
    sequencer = Sequencer()
    results: list[list[tuple[int, int]]] = [[] for _ in range(8)]

    def work(out: list[tuple[int, int]]) -> None:
        for _ in range(2000):
            out.append(sequencer.next())

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted((seq, ts) for out in results for ts, seq in out)
    assert [seq for seq, _ in every] == list(range(16_000))
    stamps = [ts for _, ts in every]
    assert stamps == sorted(stamps)  # in seq order, timestamps never go back
    for out in results:  # and each thread saw its own seqs rise
        assert [seq for _, seq in out] == sorted(seq for _, seq in out)


def test_timestamp_never_goes_back_when_the_clock_does() -> None:
    times = iter([100.000001, 100.5, 99.0, 99.9, 100.6, 100.6])
    sequencer = Sequencer(lambda: next(times))
    got = [sequencer.next() for _ in range(6)]
    assert got == [
        (100_000_001, 0),
        (100_500_000, 1),
        (100_500_000, 2),  # stepped back: held at the last one
        (100_500_000, 3),
        (100_600_000, 4),
        (100_600_000, 5),
    ]


async def test_asgi_logs_carry_the_held_timestamp(handler, collector) -> None:
    times = iter([1_800_000_010.0, 1_800_000_000.0])
    app = fastapi_app(handler, sequencer=Sequencer(lambda: next(times)))
    async with asgi_client(app) as client:
        await client.get("/ping")
        await client.get("/ping")
    first, second = logs(handler, collector)
    assert first["timestamp"] == second["timestamp"] == "2027-01-15T08:00:10.000000Z"
    assert (first["metadata"]["seq"], second["metadata"]["seq"]) == (0, 1)


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "ids"),
    [
        (TRACEPARENT, (TRACE, SPAN)),
        (f"01-{TRACE}-{SPAN}-01-extra", (TRACE, SPAN)),  # a later version may add fields
        (f"00-{TRACE}-{SPAN}-01-extra", (None, None)),
        (f"ff-{TRACE}-{SPAN}-01", (None, None)),
        (f"00-{TRACE.upper()}-{SPAN}-01", (None, None)),
        (f"00-{TRACE}-{'0' * 16}-01", (None, None)),
        (f"00-{TRACE[:-1]}-{SPAN}-01", (None, None)),
        ("garbage", (None, None)),
        (None, (None, None)),
    ],
)
def test_traceparent_parsing(header, ids) -> None:
    assert traceparent_ids(header) == ids


def test_request_id_rules() -> None:
    assert request_id_of("abc-1_2.3") == "abc-1_2.3"
    assert request_id_of("x" * 128) == "x" * 128
    for bad in ("x" * 129, "", "a\nb", "é", None):
        assert request_id_of(bad) is None  # the request gets a fresh one


async def test_fresh_request_ids_are_32_hex_digits_unique_across_instances(
    handler, collector
) -> None:
    """Fresh ids are the instance's random prefix and the seq: unique within an instance,
    and across instances even when the application seeds `random` alike in each."""
    ids: list[str] = []
    for _instance in range(2):
        random.seed(7)
        app = fastapi_app(handler, sequencer=Sequencer())
        async with asgi_client(app) as client:
            for _ in range(3):
                ids.append((await client.get("/ping")).headers["x-request-id"])
    assert [log["metadata"]["request_id"] for log in logs(handler, collector)] == ids
    assert len(set(ids)) == 6
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0][:16] != ids[3][:16]


def test_flask_and_django_rules_become_one_template_form() -> None:
    assert route_template("/users/<int:user_id>/items/<item>") == "/users/{user_id}/items/{item}"
    assert route_template("users/<path:rest>") == "users/{rest}"
    assert route_template("/static") == "/static"


def test_middleware_options_are_checked() -> None:
    with pytest.raises(ValueError, match="LMSHandler"):
        ASGIMiddleware(fastapi.FastAPI(), handler=object())  # type: ignore[arg-type]
    handler = make_handler(Collector())
    try:
        with pytest.raises(ValueError, match="not one string"):
            WSGIMiddleware(flask.Flask("x").wsgi_app, handler=handler, log_headers="accept")
        with pytest.raises(ValueError, match="callable"):
            ASGIMiddleware(fastapi.FastAPI(), handler=handler, user_id="alice")  # type: ignore[arg-type]
    finally:
        handler.close()


# --- WSGI: Flask ---------------------------------------------------------------------------


def test_wsgi_flask_logs_every_field(handler, collector) -> None:
    app = flask_app(handler, sequencer=Sequencer(lambda: 1_800_000_000.5))
    client = Client(app)
    answer = client.post(
        "/echo",
        data=b"y" * 99,
        headers={"X-User": "bob", "traceparent": TRACEPARENT},
        buffered=True,
    )
    assert answer.status_code == 200
    log = one_log(handler, collector)
    meta = log["metadata"]
    http = meta.pop("http")
    assert http.pop("duration_ms") >= 0
    assert http == {
        "method": "POST",
        "route": "/echo",
        "path": "/echo",
        "status_code": 200,
        "request_size": 99,
        "response_size": len(answer.data),
        "outcome": "response",
    }
    assert meta["user_id"] == "bob"
    assert meta["request_id"] == answer.headers["X-Request-ID"]
    assert meta["seq"] == 0 and ":" in meta["instance"]
    assert (log["trace_id"], log["span_id"]) == (TRACE, SPAN)
    assert log["timestamp"] == "2027-01-15T08:00:00.500000Z"
    assert log["severity"] == "info"


def test_wsgi_flask_routes_statuses_and_handled_exceptions(handler, collector) -> None:
    client = Client(flask_app(handler))
    assert client.get("/users/u-1/items/3", buffered=True).status_code == 200
    assert client.get("/check/abc", buffered=True).status_code == 422
    assert client.get("/nowhere", buffered=True).status_code == 404
    assert client.get("/boom/4", buffered=True).status_code == 500  # Flask's own 500 answer
    got = logs(handler, collector)
    assert [
        (log["metadata"]["http"]["route"], log["metadata"]["http"]["status_code"], log["severity"])
        for log in got
    ] == [
        ("/users/{user_id}/items/{item_id}", 200, "info"),
        ("/check/{value}", 422, "warn"),
        (None, 404, "warn"),
        ("/boom/{n}", 500, "error"),
    ]
    assert got[3]["metadata"]["http"]["outcome"] == "exception"
    assert got[3]["payload"].endswith("RuntimeError: boom 4")
    assert "Traceback" in got[3]["payload"]


def test_wsgi_exception_of_a_bare_app_is_logged_and_re_raised(handler, collector) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise KeyError("gone")

    client = Client(WSGIMiddleware(app, handler=handler))
    with pytest.raises(KeyError, match="gone"):
        client.get("/x", buffered=True)
    log = one_log(handler, collector)
    assert (log["severity"], log["metadata"]["http"]["status_code"]) == ("error", 500)
    assert log["payload"].endswith("KeyError: 'gone'")


@pytest.mark.parametrize("declared", NOT_A_LENGTH)
def test_wsgi_a_content_length_that_is_no_number_fails_nothing(
    handler, collector, declared: bytes
) -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    client = Client(WSGIMiddleware(app, handler=handler))
    overrides = {"CONTENT_LENGTH": declared.decode("latin-1")}
    answer = client.get("/x", environ_overrides=overrides, buffered=True)
    assert (answer.status_code, answer.data) == (200, b"ok")
    http = one_log(handler, collector)["metadata"]["http"]
    assert (http["status_code"], http["request_size"]) == (200, 0)


def test_wsgi_a_status_that_is_no_number_is_passed_on_and_logged_without_one(
    handler, collector
) -> None:
    """The app's status line goes to the server as it is (the server's to refuse); the log
    has no status code rather than the request a failure."""

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("\u00b200 Odd", [("Content-Type", "text/plain")])
        return [b"ok"]

    started: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        started.append(status)
        return lambda data: None

    environ = EnvironBuilder(path="/odd").get_environ()
    body = WSGIMiddleware(app, handler=handler)(environ, start_response)
    assert b"".join(body) == b"ok"
    body.close()  # type: ignore[attr-defined]
    assert started == ["\u00b200 Odd"]
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["status_code"] is None
    assert log["metadata"]["http"]["response_size"] == 2


def test_wsgi_streamed_body_is_counted_and_logged_at_close(handler, collector) -> None:
    client = Client(flask_app(handler))
    answer = client.get("/stream/6", buffered=False)
    assert logs(handler, collector) == []  # not over yet: the server has not closed it
    assert b"".join(answer.iter_encoded()) == b"0123456789" * 6
    answer.close()
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["response_size"] == 60
    assert log["metadata"]["http"]["outcome"] == "response"


def test_wsgi_body_closed_early_is_a_disconnect(handler, collector) -> None:
    closed: list[bool] = []

    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            for _ in range(100):
                yield b"chunk"
        finally:
            closed.append(True)

    body = WSGIMiddleware(app, handler=handler)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/long"}, lambda *_a: None
    )
    chunks = iter(body)
    next(chunks)
    body.close()  # type: ignore[attr-defined]  # what a server does when the client left
    log = one_log(handler, collector)
    assert log["metadata"]["http"]["outcome"] == "disconnected"
    assert log["metadata"]["http"]["response_size"] == 5
    assert closed == [True]


def test_wsgi_error_while_streaming_is_logged_once_and_re_raised(handler, collector) -> None:
    def app(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"part"
        raise ValueError("mid-stream")

    body = WSGIMiddleware(app, handler=handler)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/s"}, lambda *_a: None
    )
    with pytest.raises(ValueError, match="mid-stream"):
        list(body)
    body.close()  # type: ignore[attr-defined]
    log = one_log(handler, collector)
    assert (log["severity"], log["metadata"]["http"]["outcome"]) == ("error", "exception")


def test_wsgi_request_id_and_user_id_errors(handler, collector) -> None:
    def broken(_environ: Any) -> str:
        raise RuntimeError("auth down")

    client = Client(flask_app(handler, user_id=broken))
    answer = client.get("/ping", buffered=True, headers={"X-Request-ID": "abc"})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "abc"
    meta = one_log(handler, collector)["metadata"]
    assert meta["request_id"] == "abc"
    assert meta["user_id_error"] == "RuntimeError: auth down"


def test_wsgi_and_asgi_of_one_process_share_the_counter(handler, collector) -> None:
    """Two apps in one process are one instance: their seqs never collide."""
    client = Client(flask_app(handler))
    client.get("/ping", buffered=True)
    asyncio.run(_one_asgi_ping(handler))
    client.get("/ping", buffered=True)
    seqs = [log["metadata"]["seq"] for log in logs(handler, collector)]
    assert len(set(seqs)) == 3 and seqs == sorted(seqs)


async def _one_asgi_ping(handler: LMSHandler) -> None:
    async with asgi_client(fastapi_app(handler)) as client:
        await client.get("/ping")
