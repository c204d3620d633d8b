"""JSON as LMS reads a message: a key named twice in one object is an error, not "the last
one wins" as Python's json (and most parsers) silently do.

A message `{"service_name": "a", ..., "service_name": "b"}` means different things to
different readers (RFC 8259 leaves it undefined; I-JSON, RFC 7493, forbids it), so storing
either value would alter what some producer meant. Elasticsearch refuses such documents too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
"""The decoder's scanner (the C one in CPython), which JSONDecoder sets and typeshed omits."""
_WHITESPACE = " \t\n\r"
"""JSON's whitespace (str.strip's default would take more, e.g. a form feed)."""


def loads(text: str | bytes) -> Any:
    """json.loads (bytes read as json.loads reads them), refusing duplicate keys at any depth
    (DuplicateKeyError)."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    # The usual message, a value from its first character to its last, goes straight to the
    # C scanner: JSONDecoder.decode would add two whitespace regexes and a Python call or
    # two, a fifth of the decoding of a log. Anything else (whitespace around the value, no
    # value, extra data) goes through decode, which says what is wrong as json.loads does;
    # the scanner's own errors are decode's, raised from the same call. Whitespace after the
    # value (a CRLF line's CR) is JSON's and needs no second pass.
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end == len(text) or not text[end:].strip(_WHITESPACE):
        return value
    return _DECODER.decode(text)


_LENIENT = json.JSONDecoder()


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
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


def compact_encoder(*, ensure_ascii: bool = False, allow_nan: bool = True) -> Callable[[Any], str]:
    """json.dumps(value, separators=(",", ":"), ...) with these options, as one reusable call.

    json.dumps and JSONEncoder.encode build the C encoder again on every call, which on a
    log's metadata costs about as much as the encoding itself; the C encoder is built here
    once (without the check for circular references: a decoded document has none). Same
    text, same errors (ValueError for NaN or an infinity with `allow_nan` False). Where
    CPython's accelerator is missing, the plain encoder.
    """
    encoder = json.JSONEncoder(
        ensure_ascii=ensure_ascii, allow_nan=allow_nan, separators=(",", ":")
    )
    make = getattr(json.encoder, "c_make_encoder", None)  # undocumented, absent in typeshed
    if make is None:  # pragma: no cover - CPython always has it
        return encoder.encode
    strings = (
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    )
    chunks = make(None, encoder.default, strings, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        if isinstance(value, str):  # the C encoder takes containers and numbers, as encode does
            return strings(value)
        return "".join(chunks(value, 0))

    return encode
