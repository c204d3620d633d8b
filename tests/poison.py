"""Messages for the fault-injection suite: valid logs, and poison in every shape we could think of.

* `valid_log(rng, index)`: a small valid log of one of `SERVICES`, timestamps in several
  offsets, non-ASCII payloads.
* `CATALOGUE`: named message kinds with the outcome they must have: a `Reason` (rejected) or
  `VALID` (stored). Poison: not JSON, JSON that is not an object, invalid UTF-8, missing and
  null fields, wrong types, unknown severities, oversize payload and service name, empty
  strings, timestamps in other formats, 1 MB messages, deeply nested JSON, ... Valid edge
  cases sit next to them (a 1 MB message whose extra field is huge, limits hit exactly,
  offsets other than Z), because a poison test that only checks rejections would pass an
  implementation that rejects everything.
* `poison_messages()`: a hypothesis strategy of mostly-invalid message bodies, and
  `hypothesis_messages(n)`: n of them drawn deterministically (derandomized), so an
  integration test can publish hypothesis' inventions and compare with `parse_message`.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from lms.domain.record import MAX_PAYLOAD, MAX_SERVICE_NAME, Reason

SERVICES = [
    f"svc-{name}" for name in ("auth", "billing", "cart", "search", "mail", "ñandú", "日本")
]
SEVERITIES = ["debug", "info", "warn", "error", "fatal"]
VALID = "valid"
MEGABYTE = 1 << 20

_STAMPS = [
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00.123456Z",
    "2024-05-01T14:00:00+02:00",
    "2024-05-01T06:30:00.5-05:30",
    "2024-05-01t12:00:00z",
    "2016-12-31T23:59:60Z",
]
_WORDS = ["login", "timeout", "retry", "café", "naïve", "😀", "ok", "übel", "δ", "\\n"]


def _log(**fields: Any) -> dict[str, Any]:
    body = {
        "service_name": "svc-poison",
        "payload": "poison test",
        "severity": "error",
        "timestamp": "2024-05-01T12:00:00Z",
    }
    body.update(fields)
    return body


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _without(field: str) -> bytes:
    body = _log()
    del body[field]
    return _dumps(body)


def valid_log(rng: random.Random, index: int) -> bytes:
    """A small valid log; `index` makes its payload unique."""
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8)))
    return _dumps(
        {
            "service_name": rng.choice(SERVICES),
            "payload": f"#{index} {words}",
            "severity": rng.choice(SEVERITIES),
            "timestamp": rng.choice(_STAMPS),
        }
    )


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    expect: str
    """A `Reason` value (the message must be rejected for it) or VALID (it must be stored)."""
    build: Callable[[random.Random], bytes]
    big: bool = False
    """About a megabyte: the poison flood publishes only a few of these."""


def _random_garbage(rng: random.Random) -> bytes:
    # 0xff never occurs in UTF-8, so this is invalid UTF-8 whatever else is drawn.
    return b"\xff" + rng.randbytes(rng.randint(1, 200))


CATALOGUE: list[Kind] = [
    # --- not JSON, not UTF-8 ---------------------------------------------------------------
    Kind("plain text", Reason.INVALID_JSON, lambda r: b"connection refused, retrying"),
    Kind("truncated JSON", Reason.INVALID_JSON, lambda r: _dumps(_log())[:-7]),
    Kind("JSON with trailing garbage", Reason.INVALID_JSON, lambda r: _dumps(_log()) + b"}"),
    Kind("single quotes", Reason.INVALID_JSON, lambda r: str(_log()).encode()),
    Kind("UTF-8 BOM before JSON", Reason.INVALID_JSON, lambda r: b"\xef\xbb\xbf" + _dumps(_log())),
    Kind("whitespace only", Reason.INVALID_JSON, lambda r: b" \n\t "),
    Kind("NUL bytes", Reason.INVALID_JSON, lambda r: b"\x00" * 16),
    Kind("random bytes", Reason.INVALID_UTF8, _random_garbage),
    Kind(
        "invalid UTF-8 inside a string",
        Reason.INVALID_UTF8,
        lambda r: _dumps(_log(payload="PLACEHOLDER")).replace(b"PLACEHOLDER", b"caf\xe9"),
    ),
    Kind("UTF-16 JSON", Reason.INVALID_UTF8, lambda r: json.dumps(_log()).encode("utf-16")),
    Kind(
        "overlong UTF-8 encoding",
        Reason.INVALID_UTF8,
        lambda r: _dumps(_log(payload="X")).replace(b'"X"', b'"\xc0\xaf"'),
    ),
    Kind(
        "integer of 5000 digits",
        Reason.INVALID_JSON,
        lambda r: _dumps(_log()).replace(b'"poison test"', b"1" + b"0" * 5000),
    ),
    # --- JSON, but not an object --------------------------------------------------------------
    Kind("JSON array", Reason.NOT_AN_OBJECT, lambda r: _dumps([_log()])),
    Kind("JSON string", Reason.NOT_AN_OBJECT, lambda r: _dumps(json.dumps(_log()))),
    Kind("JSON number", Reason.NOT_AN_OBJECT, lambda r: b"42"),
    Kind("JSON null", Reason.NOT_AN_OBJECT, lambda r: b"null"),
    Kind("JSON true", Reason.NOT_AN_OBJECT, lambda r: b"true"),
    # --- missing or null fields --------------------------------------------------------------
    Kind("empty object", Reason.MISSING_FIELD, lambda r: b"{}"),
    Kind("no service_name", Reason.MISSING_FIELD, lambda r: _without("service_name")),
    Kind("no payload", Reason.MISSING_FIELD, lambda r: _without("payload")),
    Kind("no severity", Reason.MISSING_FIELD, lambda r: _without("severity")),
    Kind("no timestamp", Reason.MISSING_FIELD, lambda r: _without("timestamp")),
    Kind("null service_name", Reason.MISSING_FIELD, lambda r: _dumps(_log(service_name=None))),
    Kind("null payload", Reason.MISSING_FIELD, lambda r: _dumps(_log(payload=None))),
    Kind("null severity", Reason.MISSING_FIELD, lambda r: _dumps(_log(severity=None))),
    Kind("null timestamp", Reason.MISSING_FIELD, lambda r: _dumps(_log(timestamp=None))),
    # --- wrong types ----------------------------------------------------------------------------
    Kind("numeric service_name", Reason.INVALID_FIELD, lambda r: _dumps(_log(service_name=42))),
    Kind("object payload", Reason.INVALID_FIELD, lambda r: _dumps(_log(payload={"a": 1}))),
    Kind("list severity", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity=["info"]))),
    Kind("boolean severity", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity=True))),
    Kind("epoch timestamp", Reason.INVALID_FIELD, lambda r: _dumps(_log(timestamp=1714564800))),
    Kind("NaN payload", Reason.INVALID_FIELD, lambda r: _dumps(_log(payload=float("nan")))),
    Kind("metadata string", Reason.INVALID_FIELD, lambda r: _dumps(_log(metadata="x"))),
    # --- bad values -----------------------------------------------------------------------------
    Kind("unknown severity", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity="verbose"))),
    Kind("upper-case severity", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity="INFO"))),
    Kind("severity 'warning'", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity="warning"))),
    Kind(
        "payload over 2048 characters",
        Reason.INVALID_FIELD,
        lambda r: _dumps(_log(payload="p" * (MAX_PAYLOAD + 1))),
    ),
    Kind(
        "service_name over 100 characters",
        Reason.INVALID_FIELD,
        lambda r: _dumps(_log(service_name="s" * (MAX_SERVICE_NAME + 1))),
    ),
    Kind("empty service_name", Reason.INVALID_FIELD, lambda r: _dumps(_log(service_name=""))),
    Kind("empty severity", Reason.INVALID_FIELD, lambda r: _dumps(_log(severity=""))),
    Kind("empty timestamp", Reason.INVALID_FIELD, lambda r: _dumps(_log(timestamp=""))),
    Kind(
        "lone surrogate in service_name",
        Reason.INVALID_FIELD,
        lambda r: json.dumps(_log(service_name="\ud800")).encode(),
    ),
    *[
        Kind(
            f"timestamp {stamp!r}",
            Reason.INVALID_FIELD,
            lambda r, s=stamp: _dumps(_log(timestamp=s)),
        )
        for stamp in (
            "2024-05-01 12:00:00",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00 CEST",
            "01/05/2024 12:00",
            "Wed, 01 May 2024 12:00:00 GMT",
            "1714564800",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "0999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
        )
    ],
    # --- deep nesting -------------------------------------------------------------------------
    Kind("100,000 nested arrays", Reason.INVALID_JSON, lambda r: b"[" * 100_000 + b"]" * 100_000),
    Kind(
        "deeply nested object",
        Reason.INVALID_JSON,
        lambda r: b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ),
    Kind(
        "metadata nested 30 deep",
        Reason.INVALID_FIELD,
        lambda r: _dumps(_log(metadata=_nested(30))),
    ),
    # --- about a megabyte ---------------------------------------------------------------------
    Kind("1 MB of garbage", Reason.INVALID_UTF8, lambda r: b"\x80" + b"x" * MEGABYTE, big=True),
    Kind(
        "1 MB payload",
        Reason.INVALID_FIELD,
        lambda r: _dumps(_log(payload="p" * MEGABYTE)),
        big=True,
    ),
    Kind(
        "1 MB of nested arrays",
        Reason.INVALID_JSON,
        lambda r: b"[" * (MEGABYTE // 2) + b"]" * (MEGABYTE // 2),
        big=True,
    ),
    # --- valid edge cases: these must be stored ---------------------------------------------
    Kind(
        "1 MB valid log (huge extra field)",
        VALID,
        lambda r: _dumps(_log(severity="info", attachment="a" * MEGABYTE)),
        big=True,
    ),
    Kind("payload of exactly 2048", VALID, lambda r: _dumps(_log(payload="é" * MAX_PAYLOAD))),
    Kind("empty payload", VALID, lambda r: _dumps(_log(payload=""))),
    Kind(
        "service_name of exactly 100",
        VALID,
        lambda r: _dumps(_log(service_name="ß" * MAX_SERVICE_NAME)),
    ),
    Kind(
        "offset +05:45",
        VALID,
        lambda r: _dumps(_log(timestamp="2024-05-01T12:00:00+05:45", severity="warn")),
    ),
    Kind("extra fields", VALID, lambda r: _dumps(_log(host="web-1", pid=7, tags=["a"]))),
    Kind("extra field nested 500 deep", VALID, lambda r: _dumps(_log(extra=_nested(500)))),
    Kind("emoji everywhere", VALID, lambda r: _dumps(_log(service_name="😀", payload="🔥" * 50))),
    Kind("NUL in payload", VALID, lambda r: _dumps(_log(payload="a\u0000b"))),
]


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def catalogue_messages(
    rng: random.Random, count: int, big: int = 0, valid: bool = False
) -> list[tuple[bytes, str]]:
    """(body, expected outcome): `count` cycling through the small kinds, plus `big` of the
    ~1 MB ones; of the invalid kinds, or with `valid` of the valid edge cases."""
    kinds = [kind for kind in CATALOGUE if (kind.expect == VALID) == valid]
    small = [kind for kind in kinds if not kind.big]
    large = [kind for kind in kinds if kind.big]
    chosen = [small[i % len(small)] for i in range(count)]
    chosen += [large[i % len(large)] for i in range(big)]
    return [(kind.build(rng), str(kind.expect)) for kind in chosen]


# --- hypothesis -----------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(["service_name", "payload", "severity", "timestamp", "metadata"])


@st.composite
def _mutated_log(draw: st.DrawFn) -> bytes:
    """A valid log with one or two fields deleted, retyped or set to arbitrary text."""
    body = _log(
        service_name=draw(st.sampled_from(SERVICES)),
        severity=draw(st.sampled_from(SEVERITIES)),
    )
    for field in draw(st.lists(_field_names, min_size=1, max_size=2, unique=True)):
        action = draw(st.sampled_from(["delete", "json", "text", "long"]))
        if action == "delete":
            body.pop(field, None)
        elif action == "json":
            body[field] = draw(_json_values)
        elif action == "text":
            body[field] = draw(st.text(max_size=40))
        else:
            body[field] = draw(st.text(alphabet=string.printable, min_size=101, max_size=3000))
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def poison_messages() -> st.SearchStrategy[bytes]:
    """Mostly invalid message bodies (never empty: Pub/Sub refuses an empty message)."""
    return st.one_of(
        st.binary(min_size=1, max_size=300),
        st.text(min_size=1, max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        _json_values.filter(lambda v: not isinstance(v, dict)).map(
            lambda v: json.dumps(v).encode()
        ),
        st.dictionaries(st.text(max_size=12), _json_values, max_size=6).map(
            lambda d: json.dumps(d).encode()
        ),
        _mutated_log(),
    )


def hypothesis_messages(count: int) -> list[bytes]:
    """`count` bodies drawn from `poison_messages()`, the same ones on every run."""
    found: list[bytes] = []

    @hypothesis.settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @hypothesis.given(poison_messages())
    def collect(data: bytes) -> None:
        found.append(data)

    collect()
    return found
