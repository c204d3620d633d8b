"""JSON as LMS reads a message: a key named twice in one object is an error, not "the last
one wins" as Python's json (and most parsers) silently do.

A message `{"service_name": "a", ..., "service_name": "b"}` means different things to
different readers (RFC 8259 leaves it undefined; I-JSON, RFC 7493, forbids it), so storing
either value would alter what some producer meant. Elasticsearch refuses such documents too.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A JSON object names `key` more than once; a ValueError like json's own errors, so the
    callers' handling of invalid JSON covers it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key!r} appears more than once in one object")
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique)
"""One decoder for every call: json.loads with a hook builds a new JSONDecoder each time,
which costs more than the hook itself."""


def loads(text: str | bytes) -> Any:
    """json.loads (bytes read as json.loads reads them), refusing duplicate keys at any depth
    (DuplicateKeyError)."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


_LENIENT = json.JSONDecoder()


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\n\r":
        position += 1
    return position


def array_items(text: str) -> list[Any]:
    """The elements of the JSON array `text`, each decoded on its own: an element naming a
    key twice is its DuplicateKeyError, any other its value. So that a body of many logs
    refuses only the ones with a duplicate key, when `loads` of the whole raised one.

    Raises ValueError (or RecursionError) when `text` is not a JSON array at all.
    """
    document = _LENIENT.decode(text)
    if not isinstance(document, list):
        raise ValueError("not a JSON array")
    items: list[Any] = []
    position = _skip_space(text, _skip_space(text, 0) + 1)  # past the "["
    while len(items) < len(document):
        try:
            value, end = _DECODER.raw_decode(text, position)
        except DuplicateKeyError as exc:
            value, end = exc, _LENIENT.raw_decode(text, position)[1]
        items.append(value)
        position = _skip_space(text, _skip_space(text, end) + 1)  # past the ","
    return items
