"""Messages for the fault-injection suite: valid logs, and poison in every shape we could think of.

Every message comes with the outcome it must have, declared where it is made, never asked of
the parser under test (a test that asks the parser what to expect passes whatever it says):

* `valid_log(rng, index)`: a small valid log of one of `SERVICES` (timestamps in several
  offsets, non-ASCII payloads) and the `Stored` pair it was built with.
* `CATALOGUE`: named message kinds, each with its outcome: `Rejected(reason)` or
  `Stored(service, severity)`. Poison: not JSON, JSON that is not an object, invalid UTF-8,
  missing and null fields, wrong types, unknown severities, oversize payload and service name,
  empty strings, timestamps in other formats, 1 MB messages, deeply nested JSON, ... Valid edge
  cases sit next to them (a 1 MB message whose extra field is huge, limits hit exactly, offsets
  other than Z), because a poison test that only checks rejections would pass an
  implementation that rejects everything. tests/test_poison.py holds the parser to them.
* `poison_messages()`: a hypothesis strategy of mostly-invalid message bodies, and
  `hypothesis_messages(n)`: n of them drawn deterministically (derandomized). Nobody declared
  what those must become, so their outcome is `UNDECLARED`: stored or rejected, exactly once,
  never lost; scenario 5 checks that much, and the unit test that parsing them never raises.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import hypothesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from lms.domain.record import MAX_PAYLOAD, MAX_SERVICE_NAME, Reason

SERVICES = [
    f"svc-{name}" for name in ("auth", "billing", "cart", "search", "mail", "ñandú", "日本")
]
SEVERITIES = ["debug", "info", "warn", "error", "fatal"]
MEGABYTE = 1 << 20
POISON_SERVICE = "svc-poison"
POISON_SEVERITY = "error"


class Stored(NamedTuple):
    """The message must be stored once, as a log of this service and severity."""

    service_name: str
    severity: str


class Rejected(NamedTuple):
    """The message must land in rejected_messages once, for this reason."""

    reason: Reason


class Undeclared:
    """Nobody declared the outcome (hypothesis invented the message): it must be stored or
    rejected, once, and never lost."""


UNDECLARED = Undeclared()
Outcome = Stored | Rejected | Undeclared
Message = tuple[bytes, Outcome]
"""A body to publish and what it must become."""

BAD_JSON = Rejected(Reason.INVALID_JSON)
BAD_UTF8 = Rejected(Reason.INVALID_UTF8)
NOT_OBJECT = Rejected(Reason.NOT_AN_OBJECT)
MISSING = Rejected(Reason.MISSING_FIELD)
BAD_FIELD = Rejected(Reason.INVALID_FIELD)

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
        "service_name": POISON_SERVICE,
        "payload": "poison test",
        "severity": POISON_SEVERITY,
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


def valid_log(rng: random.Random, index: int) -> Message:
    """A small valid log and the pair it must be stored as; `index` makes its payload unique."""
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8)))
    service, severity = rng.choice(SERVICES), rng.choice(SEVERITIES)
    body = {
        "service_name": service,
        "payload": f"#{index} {words}",
        "severity": severity,
        "timestamp": rng.choice(_STAMPS),
    }
    return _dumps(body), Stored(service, severity)


def stored(service_name: str = POISON_SERVICE, severity: str = POISON_SEVERITY) -> Stored:
    """The outcome of a valid edge case built by `_log`: its defaults unless it changed them."""
    return Stored(service_name, severity)


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    expect: Stored | Rejected
    build: Callable[[random.Random], bytes]
    big: bool = False
    """About a megabyte: the poison flood publishes only a few of these."""


def _random_garbage(rng: random.Random) -> bytes:
    # 0xff never occurs in UTF-8, so this is invalid UTF-8 whatever else is drawn.
    return b"\xff" + rng.randbytes(rng.randint(1, 200))


CATALOGUE: list[Kind] = [
    # --- not JSON, not UTF-8 ---------------------------------------------------------------
    Kind("plain text", BAD_JSON, lambda r: b"connection refused, retrying"),
    Kind("truncated JSON", BAD_JSON, lambda r: _dumps(_log())[:-7]),
    Kind("JSON with trailing garbage", BAD_JSON, lambda r: _dumps(_log()) + b"}"),
    Kind("single quotes", BAD_JSON, lambda r: str(_log()).encode()),
    Kind("UTF-8 BOM before JSON", BAD_JSON, lambda r: b"\xef\xbb\xbf" + _dumps(_log())),
    Kind("whitespace only", BAD_JSON, lambda r: b" \n\t "),
    Kind("NUL bytes", BAD_JSON, lambda r: b"\x00" * 16),
    Kind("random bytes", BAD_UTF8, _random_garbage),
    Kind(
        "invalid UTF-8 inside a string",
        BAD_UTF8,
        lambda r: _dumps(_log(payload="PLACEHOLDER")).replace(b"PLACEHOLDER", b"caf\xe9"),
    ),
    Kind("UTF-16 JSON", BAD_UTF8, lambda r: json.dumps(_log()).encode("utf-16")),
    Kind(
        "overlong UTF-8 encoding",
        BAD_UTF8,
        lambda r: _dumps(_log(payload="X")).replace(b'"X"', b'"\xc0\xaf"'),
    ),
    Kind(
        "integer of 5000 digits",
        BAD_JSON,
        lambda r: _dumps(_log()).replace(b'"poison test"', b"1" + b"0" * 5000),
    ),
    # --- JSON, but not an object --------------------------------------------------------------
    Kind("JSON array", NOT_OBJECT, lambda r: _dumps([_log()])),
    Kind("JSON string", NOT_OBJECT, lambda r: _dumps(json.dumps(_log()))),
    Kind("JSON number", NOT_OBJECT, lambda r: b"42"),
    Kind("JSON null", NOT_OBJECT, lambda r: b"null"),
    Kind("JSON true", NOT_OBJECT, lambda r: b"true"),
    # --- missing or null fields --------------------------------------------------------------
    Kind("empty object", MISSING, lambda r: b"{}"),
    Kind("no service_name", MISSING, lambda r: _without("service_name")),
    Kind("no payload", MISSING, lambda r: _without("payload")),
    Kind("no severity", MISSING, lambda r: _without("severity")),
    Kind("no timestamp", MISSING, lambda r: _without("timestamp")),
    Kind("null service_name", MISSING, lambda r: _dumps(_log(service_name=None))),
    Kind("null payload", MISSING, lambda r: _dumps(_log(payload=None))),
    Kind("null severity", MISSING, lambda r: _dumps(_log(severity=None))),
    Kind("null timestamp", MISSING, lambda r: _dumps(_log(timestamp=None))),
    # --- wrong types ----------------------------------------------------------------------------
    Kind("numeric service_name", BAD_FIELD, lambda r: _dumps(_log(service_name=42))),
    Kind("object payload", BAD_FIELD, lambda r: _dumps(_log(payload={"a": 1}))),
    Kind("list severity", BAD_FIELD, lambda r: _dumps(_log(severity=["info"]))),
    Kind("boolean severity", BAD_FIELD, lambda r: _dumps(_log(severity=True))),
    Kind("epoch timestamp", BAD_FIELD, lambda r: _dumps(_log(timestamp=1714564800))),
    Kind("NaN payload", BAD_FIELD, lambda r: _dumps(_log(payload=float("nan")))),
    Kind("metadata string", BAD_FIELD, lambda r: _dumps(_log(metadata="x"))),
    # --- bad values -----------------------------------------------------------------------------
    Kind("unknown severity", BAD_FIELD, lambda r: _dumps(_log(severity="verbose"))),
    Kind("upper-case severity", BAD_FIELD, lambda r: _dumps(_log(severity="INFO"))),
    Kind("severity 'warning'", BAD_FIELD, lambda r: _dumps(_log(severity="warning"))),
    Kind(
        "payload over 2048 characters",
        BAD_FIELD,
        lambda r: _dumps(_log(payload="p" * (MAX_PAYLOAD + 1))),
    ),
    Kind(
        "service_name over 100 characters",
        BAD_FIELD,
        lambda r: _dumps(_log(service_name="s" * (MAX_SERVICE_NAME + 1))),
    ),
    Kind("empty service_name", BAD_FIELD, lambda r: _dumps(_log(service_name=""))),
    Kind("empty severity", BAD_FIELD, lambda r: _dumps(_log(severity=""))),
    Kind("empty timestamp", BAD_FIELD, lambda r: _dumps(_log(timestamp=""))),
    Kind(
        "lone surrogate in service_name",
        BAD_FIELD,
        lambda r: json.dumps(_log(service_name="\ud800")).encode(),
    ),
    *[
        Kind(
            f"timestamp {stamp!r}",
            BAD_FIELD,
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
    # --- names, ids, keys and the clock (issue 14) -------------------------------------------
    Kind("service_name ending in a space", BAD_FIELD, lambda r: _dumps(_log(service_name="s "))),
    Kind("service_name with a leading tab", BAD_FIELD, lambda r: _dumps(_log(service_name="\ts"))),
    Kind("trace_id of one space", BAD_FIELD, lambda r: _dumps(_log(trace_id=" "))),
    Kind(
        "terminal escape in service_name",
        BAD_FIELD,
        lambda r: _dumps(_log(service_name="svc\x1b]0;pwned\x07")),
    ),
    Kind("8-bit CSI in span_id", BAD_FIELD, lambda r: _dumps(_log(span_id="s\x9b2J"))),
    Kind("timestamp in 2999", BAD_FIELD, lambda r: _dumps(_log(timestamp="2999-01-01T00:00:00Z"))),
    Kind(
        "service_name given twice",
        BAD_JSON,
        lambda r: _dumps(_log())[:-1] + b', "service_name": "svc-other"}',
    ),
    Kind(
        "metadata key given twice",
        BAD_JSON,
        lambda r: _dumps(_log())[:-1] + b', "metadata": {"k": 1, "k": 2}}',
    ),
    # --- deep nesting -------------------------------------------------------------------------
    Kind("100,000 nested arrays", BAD_JSON, lambda r: b"[" * 100_000 + b"]" * 100_000),
    Kind(
        "deeply nested object",
        BAD_JSON,
        lambda r: b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ),
    Kind(
        "metadata nested 30 deep",
        BAD_FIELD,
        lambda r: _dumps(_log(metadata=_nested(30))),
    ),
    # --- about a megabyte ---------------------------------------------------------------------
    Kind("1 MB of garbage", BAD_UTF8, lambda r: b"\x80" + b"x" * MEGABYTE, big=True),
    Kind(
        "1 MB payload",
        BAD_FIELD,
        lambda r: _dumps(_log(payload="p" * MEGABYTE)),
        big=True,
    ),
    Kind(
        "1 MB of nested arrays",
        BAD_JSON,
        lambda r: b"[" * (MEGABYTE // 2) + b"]" * (MEGABYTE // 2),
        big=True,
    ),
    # --- valid edge cases: these must be stored ---------------------------------------------
    Kind(
        "1 MB valid log (huge extra field)",
        stored(severity="info"),
        lambda r: _dumps(_log(severity="info", attachment="a" * MEGABYTE)),
        big=True,
    ),
    Kind("payload of exactly 2048", stored(), lambda r: _dumps(_log(payload="é" * MAX_PAYLOAD))),
    Kind("empty payload", stored(), lambda r: _dumps(_log(payload=""))),
    Kind(
        "service_name of exactly 100",
        stored("ß" * MAX_SERVICE_NAME),
        lambda r: _dumps(_log(service_name="ß" * MAX_SERVICE_NAME)),
    ),
    Kind(
        "offset +05:45",
        stored(severity="warn"),
        lambda r: _dumps(_log(timestamp="2024-05-01T12:00:00+05:45", severity="warn")),
    ),
    Kind("extra fields", stored(), lambda r: _dumps(_log(host="web-1", pid=7, tags=["a"]))),
    Kind("extra field nested 500 deep", stored(), lambda r: _dumps(_log(extra=_nested(500)))),
    Kind(
        "emoji everywhere",
        stored("😀"),
        lambda r: _dumps(_log(service_name="😀", payload="🔥" * 50)),
    ),
    Kind("NUL in payload", stored(), lambda r: _dumps(_log(payload="a\u0000b"))),
    Kind(
        "escapes and edge spaces in payload",
        stored(),
        lambda r: _dumps(_log(payload=" \x1b[31mred\x1b[0m\x9b ")),
    ),
    Kind(
        "inner space in service_name",
        stored("svc poison"),
        lambda r: _dumps(_log(service_name="svc poison")),
    ),
]


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth - 1):
        value = {"d": value}
    return value


def catalogue_messages(
    rng: random.Random, count: int, big: int = 0, valid: bool = False
) -> list[Message]:
    """`count` messages cycling through the small kinds, plus `big` of the ~1 MB ones; of the
    invalid kinds, or with `valid` of the valid edge cases."""
    kinds = [kind for kind in CATALOGUE if isinstance(kind.expect, Stored) == valid]
    small = [kind for kind in kinds if not kind.big]
    large = [kind for kind in kinds if kind.big]
    chosen = [small[i % len(small)] for i in range(count)]
    chosen += [large[i % len(large)] for i in range(big)]
    return [(kind.build(rng), kind.expect) for kind in chosen]


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
    """`count` bodies drawn from `poison_messages()`, the same ones on every run; their outcome
    is `UNDECLARED`."""
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
