"""Message templates: a payload with its variable parts masked, and the template's id.

`template_of("user 42 failed to connect to 10.0.0.7:5432")` is
`"user <*> failed to connect to <*>:<*>"`. The template is a pure function of the payload:
every `lms mon` replica, before and after a restart, gives a payload the same template and so
the same `pattern_id` (the first 8 bytes of the template's SHA-256, a BIGINT UNSIGNED), which is
what lets the writer count patterns exactly in the batch transaction (lms/store/patterns.py).
Online clustering (Drain, drain3's TemplateMiner) names its clusters in arrival order and
merges them as it learns, so two replicas would disagree; it cannot be the key.

Why a regex list here and not drain3's `drain3.masking.LogMasker`: that class is a loop of
`re.sub` over a list of instructions the caller writes anyway (drain3 ships no default list),
it would bring drain3 with jsonpickle and cachetools into `lms mon` for that loop, and drain3's
last release is of 2022. One alternation compiled once and run in one pass (a constant
replacement, no Python callback per match) costs a few microseconds per payload, what the
pipeline's 10% budget allows (docs/performance.md, "Top patterns").

What is masked, first match wins at each position (tests/test_patterns.py is the catalogue):
quoted values ("..." and '...'), ISO 8601 / RFC 3339 timestamps, dates and clock times, UUIDs,
e-mail addresses, URLs' query strings, IPv4 and IPv6 addresses, `host:port` (a dotted host or
an IP, each part masked), the value of `key=value`, hex ids (8+ hex digits with a digit, or
0x...), and numbers standing alone (with a unit such as ms, s, KB or %). Words are kept, and so
are digits inside a word (`http2`, `sha256`, `v1`): they name things, not values.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

WILDCARD = "<*>"

_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*|localhost"
_QUOTED = re.compile(r""""[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"|'(?<!\w')[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'""")
"""Quoted values ("..." and '...', not an apostrophe inside a word); they may hold spaces.

Each alternative begins with its quote (the apostrophe's "not inside a word" is a lookbehind
after it), so the regex engine skips to the next quote character instead of trying the whole
pattern at every position, and the unrolled, possessive body reads a long value without
backtracking: a fifth of the cost of the plain alternation on a 1,000-character payload, with
the same matches (tests/test_patterns.py compares the two on random text)."""
_VALUE = re.compile(r"(?<==)[^\s,;&)\]}]+|(?<=\?)[^\s#]+")
"""The value of key=value, and a URL's query string."""
_TOKEN_PARTS: tuple[str, ...] = (
    # timestamps: 2026-12-01T10:52:03.123Z, 2026-12-01 10:52:03,123+01:00, dates, clock times
    r"\b\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",
    r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    r"(?<![\w.+-])[\w.+-]+@" + f"(?:{_HOST})",  # e-mail
    r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}(?![\w:])",  # IPv6 (full form)
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])",  # IPv4
    f"(?<![\\w.-])(?:{_HOST})(?=:\\d{{1,5}}\\b)",  # the host of host:port (the port: a number)
    r"\b0[xX][0-9a-fA-F]+\b",
    r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b",  # hex id, e.g. a sha
    # a number standing alone, maybe signed, decimal or with a unit
    r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?:ns|us|µs|ms|s|m|h|d|b|kb|mb|gb|KB|MB|GB|B|%)?(?!\w)",
)
_TOKEN = re.compile("|".join(f"(?:{part})" for part in _TOKEN_PARTS))
"""The variable parts found within a space-separated token; each holds a digit or an @."""
_MAY_VARY = re.compile(r"[\d@]")
_MARK_VARYING = bytes.maketrans(b"0123456789@\0", b"\0" * 11 + b"\1")
"""For an ASCII payload: each digit and @ becomes a NUL byte (and a NUL byte something else),
so that bytes.find(0), a memchr, finds the next character of a variable part."""


def template_of(payload: str) -> str:
    """The payload with each variable part replaced by `<*>`.

    Quoted and key=value values first (they may hold anything, spaces too); then only the
    tokens with a digit or an @ go through the other rules: most words have neither, and
    skipping them keeps the cost to a few microseconds per payload.
    """
    if '"' in payload or "'" in payload:
        payload = _QUOTED.sub(WILDCARD, payload)
    if "=" in payload or "?" in payload:
        payload = _VALUE.sub(WILDCARD, payload)
    if payload.isascii():
        return _mask_varying_tokens(payload)
    tokens = payload.split(" ")
    for index, token in enumerate(tokens):
        if token.isdigit():  # the commonest variable part, without a regex
            tokens[index] = WILDCARD
        elif _MAY_VARY.search(token):
            tokens[index] = _TOKEN.sub(WILDCARD, token)
    return " ".join(tokens)


MAX_CACHED_TOKEN = 64
"""Characters of a token whose masked form is remembered (at most ~4 MB for the cache): the
tokens of one log line (`HTTP/1.1"`, `memcached:11211`, `/api/v1/orders`) recur in every log
it writes, and the token regex costs a few microseconds per token."""


@lru_cache(maxsize=16_384)
def _masked_token(token: str) -> str:
    return _TOKEN.sub(WILDCARD, token)


def _mask_varying_tokens(payload: str) -> str:
    """The token loop of template_of for an ASCII payload, visiting only the tokens that hold
    a digit or an @: the next such character is found with a memchr in a translated copy
    (_MARK_VARYING; a regex character class costs ~10 ns per character, five times more), its
    token is the run of non-spaces around it (what split(" ") gives), and the search goes on
    after it. A 1,000-character payload of words then costs a few searches instead of ~150
    Python steps.

    ASCII only: there `str.isdigit` and `\\d` agree on what a digit is (0-9), while in Unicode
    isdigit also takes superscripts, which `\\d` does not, so other text takes the loop."""
    marks = payload.encode("ascii").translate(_MARK_VARYING)
    at = marks.find(0)
    if at < 0:
        return payload
    parts: list[str] = []
    last = 0
    while at >= 0:
        start = payload.rfind(" ", 0, at) + 1
        end = payload.find(" ", at)
        if end < 0:
            end = len(payload)
        token = payload[start:end]
        parts.append(payload[last:start])
        if token.isdigit():
            parts.append(WILDCARD)
        elif len(token) <= MAX_CACHED_TOKEN:
            parts.append(_masked_token(token))
        else:
            parts.append(_TOKEN.sub(WILDCARD, token))
        last = end
        at = marks.find(0, end)
    parts.append(payload[last:])
    return "".join(parts)


def pattern_id(template: str) -> int:
    """The template's id: its SHA-256's first 8 bytes, big-endian, as an unsigned integer."""
    return int.from_bytes(hashlib.sha256(template.encode()).digest()[:8], "big")


def pattern_hex(value: int) -> str:
    """An id as the API shows it: 16 hex digits (a JSON number would lose digits in
    JavaScript, whose numbers hold 53 bits)."""
    return f"{value:016x}"


MAX_CACHED = 4096
"""Templates whose ids are remembered: most batches repeat a few hundred templates, so the
hash is computed once per template, not per log; payloads are at most 2,048 characters, so
the cache holds at most ~8 MB of templates."""


@lru_cache(maxsize=MAX_CACHED)
def _cached_id(template: str) -> int:
    return pattern_id(template)


def pattern_of(payload: str) -> tuple[int, str]:
    """(pattern id, template) of a payload."""
    template = template_of(payload)
    return _cached_id(template), template
