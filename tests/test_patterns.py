"""Message templates (lms.domain.patterns): a catalogue of real-looking messages, what is and
what is not one template. Pure functions, no database."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from lms.domain import patterns as masking
from lms.domain.patterns import WILDCARD, pattern_hex, pattern_id, pattern_of, template_of
from lms.query.patterns import Span, spans, trend_spans

ROOT = Path(__file__).resolve().parent.parent
ONE_TEMPLATE: dict[str, list[str]] = {
    "user <*> failed to connect to <*>:<*>": [
        "user 42 failed to connect to 10.0.0.7:5432",
        "user 7 failed to connect to db-1.internal:3306",
        "user 1234567 failed to connect to localhost:6379",
        "user 9 failed to connect to cache.eu-west-1.example.com:11211",
    ],
    "GET /api/v1/users/<*>/orders?<*> <*> in <*>": [
        "GET /api/v1/users/123/orders?page=2 200 in 15ms",
        "GET /api/v1/users/9/orders?page=10&size=50 404 in 1.5s",
    ],
    "request <*> took <*>": [
        "request 550e8400-e29b-41d4-a716-446655440000 took 1.5s",
        "request 6ba7b810-9dad-11d1-80b4-00c04fd430c8 took 250ms",
    ],
    "password reset mailed to <*>": [
        "password reset mailed to alice@example.com",
        "password reset mailed to bob.smith+test@mail.example.org",
    ],
    "cache miss key=<*> ttl=<*>": [
        'cache miss key="session:abc" ttl=300',
        "cache miss key=user:42:profile ttl=60",
    ],
    "<*> worker started pid=<*>": [
        "2026-12-01T10:52:03.123Z worker started pid=4242",
        "2025-01-31T00:00:00+01:00 worker started pid=1",
    ],
    "deploy of commit <*> done": [
        "deploy of commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b done",
        "deploy of commit 3a7bd3e2 done",
    ],
    "retry <*>/<*> after <*>": ["retry 3/5 after 250ms", "retry 1/10 after 2s"],
    "connection from <*> refused": [
        "connection from 192.168.1.10 refused",
        "connection from 2001:db8:0:0:0:0:0:1 refused",
    ],
    "segfault at <*> in worker <*>": [
        "segfault at 0x7ffd5e8a1b20 in worker 3",
        "segfault at 0xdeadbeef in worker 12",
    ],
    "query <*> failed: relation <*> does not exist": [
        "query 'SELECT 1' failed: relation \"users\" does not exist",
        "query 'SELECT * FROM orders' failed: relation \"orders\" does not exist",
    ],
    "job finished at <*> <*>, <*> rows, <*> free": [
        "job finished at 2026-12-01 10:52:03, 1,024 rows, 93% free",
        "job finished at 2026-01-05 23:59:59.999, 7 rows, 0.5% free",
    ],
    "balance changed by <*>": ["balance changed by -12.50", "balance changed by +3"],
}

DIFFERENT: list[tuple[str, str]] = [
    ("user 42 logged in", "user 42 logged out"),  # words are the template
    ("http2 stream reset", "http3 stream reset"),  # digits inside a word name a thing
    ("sha256 mismatch", "sha512 mismatch"),
    ("upgrade to v1 done", "upgrade to v2 done"),
    ("connection refused", "Connection refused"),  # case is kept
    ("cache miss", "cache  miss"),  # spacing is kept
    ("disk full on /var", "disk full on /tmp"),
]
KEPT = [
    "Can't open file",  # an apostrophe is no quote
    "payment declined: card_declined",
    "service started",
    "",
]


@pytest.mark.parametrize("template", sorted(ONE_TEMPLATE))
def test_messages_of_one_template(template: str) -> None:
    assert {template_of(message) for message in ONE_TEMPLATE[template]} == {template}


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_different_messages_are_different_templates(first: str, second: str) -> None:
    assert pattern_of(first)[0] != pattern_of(second)[0]


@pytest.mark.parametrize("message", KEPT)
def test_messages_without_variable_parts_are_their_own_template(message: str) -> None:
    assert template_of(message) == message


def test_a_template_is_a_fixed_point() -> None:
    """Masking a template again changes nothing, so `<*>` itself is never a variable part
    that would split one pattern in two."""
    for messages in ONE_TEMPLATE.values():
        for message in messages:
            template = template_of(message)
            assert template_of(template) == template
            assert WILDCARD in template


def _plain_template(payload: str) -> str:
    """template_of as first written: the plain quoted-value alternation, then a Python step
    per space-separated token. The fast paths of lms.domain.patterns must agree with it."""
    quoted = r""""(?:[^"\\\n]|\\.)*"|(?<!\w)'(?:[^'\\\n]|\\.)*'"""
    payload = re.sub(quoted, WILDCARD, payload)
    payload = masking._VALUE.sub(WILDCARD, payload)
    tokens = payload.split(" ")
    for index, token in enumerate(tokens):
        if token.isdigit():
            tokens[index] = WILDCARD
        elif re.search(r"[\d@]", token):
            tokens[index] = masking._TOKEN.sub(WILDCARD, token)
    return " ".join(tokens)


def test_the_fast_paths_mask_what_the_plain_rules_mask() -> None:
    """Random text built from the characters the rules look at (quotes, escapes, digits,
    separators, non-ASCII digits and letters) and the catalogue's messages: the same
    templates as the plain implementation, which tries each rule at every position."""
    rng = random.Random(18)
    alphabet = [*"ab0 9:.-@'\"\\\n=?x,#Fz_/", "é", "²", "\u0661", " 12", "0x1f", "10.0.0.1"]
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(20_000)]
    texts += [m for messages in ONE_TEMPLATE.values() for m in messages] + list(KEPT)
    for text in texts:
        assert template_of(text) == _plain_template(text), text


def test_pattern_id_is_the_templates_sha256_prefix() -> None:
    template = "user <*> failed to connect to <*>:<*>"
    digest = hashlib.sha256(template.encode()).digest()
    assert pattern_id(template) == int.from_bytes(digest[:8], "big")
    assert pattern_hex(pattern_id(template)) == digest[:8].hex()
    assert pattern_of("user 1 failed to connect to a.b:1") == (pattern_id(template), template)


def test_pattern_ids_do_not_depend_on_the_process() -> None:
    """Another interpreter (another replica, a restart; its own hash seed) gives the same id."""
    code = "from lms.domain.patterns import pattern_of; print(pattern_of('retry 3/5 after 2s')[0])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert int(out.stdout) == pattern_of("retry 3/5 after 2s")[0]


# --- the spans of an exact count (lms.query.patterns) -------------------------------------

H = datetime(2026, 12, 1, 10)
M = timedelta(minutes=1)
D = datetime(2026, 12, 1)  # midnight
DAY = timedelta(days=1)


def rows(since: datetime | None, until: datetime | None) -> Span:
    return Span(since, until, "rows")


def hours(since: datetime | None, until: datetime | None) -> Span:
    return Span(since, until, "hours")


def days(since: datetime | None, until: datetime | None) -> Span:
    return Span(since, until, "days")


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (None, None, [days(None, None)]),
        (H, H + 120 * M, [hours(H, H + 120 * M)]),
        (H + 5 * M, None, [rows(H + 5 * M, H + 60 * M), hours(H + 60 * M, D + DAY),
                           days(D + DAY, None)]),
        (None, H + 5 * M, [days(None, D), hours(D, H), rows(H, H + 5 * M)]),
        (H + 5 * M, H + 50 * M, [rows(H + 5 * M, H + 50 * M)]),
        (H + 5 * M, H + 60 * M, [rows(H + 5 * M, H + 60 * M)]),  # no whole hour inside
        (
            H + 5 * M,
            H + 185 * M,
            [rows(H + 5 * M, H + 60 * M), hours(H + 60 * M, H + 180 * M),
             rows(H + 180 * M, H + 185 * M)],
        ),
        (D, D + 3 * DAY, [days(D, D + 3 * DAY)]),  # whole days: the day tier alone
        (D + 1380 * M, D + DAY + 60 * M, [hours(D + 1380 * M, D + DAY + 60 * M)]),  # no whole day
        (
            H + 5 * M,
            D + 2 * DAY + 150 * M,  # mid-hour and mid-day at both ends
            [
                rows(H + 5 * M, H + 60 * M),
                hours(H + 60 * M, D + DAY),
                days(D + DAY, D + 2 * DAY),
                hours(D + 2 * DAY, D + 2 * DAY + 120 * M),
                rows(D + 2 * DAY + 120 * M, D + 2 * DAY + 150 * M),
            ],
        ),
        (D + DAY - M, D + DAY + M, [rows(D + DAY - M, D + DAY), rows(D + DAY, D + DAY + M)]),
    ],
)  # fmt: skip
def test_a_range_is_whole_days_whole_hours_and_partial_edges(since, until, expected) -> None:
    found = spans(since, until)
    assert found == expected
    assert [(p.since, p.until) for p in trend_spans(found, "day")] == [
        (p.since, p.until) for p in expected
    ]
    hourly = trend_spans(found, "hour")  # days read hour by hour: one span of whole hours
    assert [p.source for p in hourly] in (
        ["hours"],
        ["rows"],
        ["rows", "hours"],
        ["hours", "rows"],
        ["rows", "hours", "rows"],
        ["rows", "rows"],
    )
    assert (hourly[0].since, hourly[-1].until) == (since, until)
    for part in found:  # a partial hour's counts go whole into one trend bucket
        if part.source == "rows":
            assert part.since is not None and part.until is not None
            assert part.since.replace(minute=0, second=0, microsecond=0) == (
                part.until - timedelta(microseconds=1)
            ).replace(minute=0, second=0, microsecond=0)
    assert all(a.until == b.since for a, b in pairwise(hourly))
