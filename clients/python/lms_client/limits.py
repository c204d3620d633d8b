"""The rules LMS checks every log against (the server's lms/domain/record.py and the `id` of
lms/ingest/http/edge.py), restated here so the client never sends what would be rejected.

The client must not import the server, so the numbers are copied; the client's tests compare
them with the server's, so a change there fails here.
"""

from __future__ import annotations

import re

MAX_SERVICE_NAME = 100
"""Characters of `service_name`."""
MAX_PAYLOAD = 2048
"""Characters (code points, as Python counts them) of `payload`."""
MAX_CONTEXT = 255
"""Characters of `resource_id`, `trace_id`, `span_id` and `commit`."""
MAX_METADATA = 16_384
"""Characters of `metadata` as compact JSON."""
MAX_METADATA_DEPTH = 20
"""Nesting of `metadata`, the object itself being level 1."""
MAX_KEY = 128
"""Characters of a log's idempotency key (`id` over HTTP, attribute `lms_key` on Pub/Sub)."""
MAX_JSON_INT = 10**300
"""Integers beyond a double are refused by the database's JSON."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """A lone UTF-16 surrogate cannot be encoded as UTF-8 (nor stored as utf8mb4).

    `str.isascii` is a flag of the string in CPython, so ASCII text skips the scan.
    """
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD, so that it can be sent at all."""
    if has_surrogates(text):
        return _SURROGATE.sub("\ufffd", text)
    return text


def check_text(name: str, value: object, max_len: int, min_len: int = 1) -> str:
    """A constant field given to the handler (service_name, resource_id, commit), checked once
    at construction: a wrong one would get every log refused, so it is a ValueError at once."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise ValueError(f"{name} has {len(value)} characters; LMS accepts {min_len} to {max_len}")
    if has_surrogates(value):
        raise ValueError(f"{name} contains a lone UTF-16 surrogate, which is not valid UTF-8")
    return value
