"""The edge's fast path agrees with `lms mon`: a log the edge accepts is published as its own
bytes (or, when it had to be rewritten, as JSON that decodes to the same fields), and `lms mon`
parses that message to the very record the edge checked; a log the edge refuses, `lms mon`
would reject for the same reason. Also the two shortcuts under it: strictjson.loads going
straight to the C scanner, and the reusable compact encoder, each against the json module."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from lms.domain import strictjson
from lms.domain.record import (
    MAX_METADATA_DEPTH,
    LogRecord,
    Rejection,
    parse_message,
    parse_object,
    rejection_of,
)
from lms.ingest.http import native
from lms.ingest.http.edge import MAX_MESSAGE, TOO_LARGE, Accepted, Candidate, Refused, check
from tests.test_model import END_OF_TIME, VALID, json_objects, json_values


def edge(body: bytes, content_type: str | None = native.NDJSON) -> list[Accepted | Refused]:
    """What the edge makes of a body, in the client's order."""
    accepted, refused = check(native.decode(body, content_type, 1000), END_OF_TIME)
    return sorted([*accepted, *refused], key=lambda item: item.index)


def assert_lms_mon_agrees(line: bytes, outcome: Accepted | Refused) -> None:
    """`lms mon`, given what the edge published (or the refused log as sent), decides alike."""
    if isinstance(outcome, Refused):
        result = parse_message(line, END_OF_TIME)
        assert isinstance(result, Rejection), result
        assert result.reason.value == outcome.reason
        return
    record = parse_message(outcome.data, END_OF_TIME)
    assert isinstance(record, LogRecord), record
    fields = strictjson.loads(line)
    fields.pop(native.ID_FIELD, None)
    assert record == parse_object(fields, END_OF_TIME)
    assert strictjson.loads(outcome.data) == fields


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects, min_size=1, max_size=5), st.booleans(), st.booleans())
def test_what_the_edge_publishes_lms_mon_parses_to_the_record_it_checked(
    logs: list[dict[str, Any]], ascii_only: bool, compact: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    lines = [
        json.dumps({**VALID, **log}, ensure_ascii=ascii_only, separators=separators).encode(
            "utf-8", "surrogatepass"
        )
        for log in logs
    ]
    outcomes = edge(b"\n".join(lines))
    assert [item.index for item in outcomes] == list(range(len(lines)))
    for line, outcome in zip(lines, outcomes, strict=True):
        if isinstance(outcome, Accepted) and native.ID_FIELD not in strictjson.loads(line):
            assert outcome.data == line  # published as sent
        if not (isinstance(outcome, Refused) and outcome.reason == native.INVALID_ID):
            assert_lms_mon_agrees(line, outcome)


def test_an_ndjson_line_is_published_as_sent_crlf_and_spacing_included() -> None:
    line = b'{ "service_name" : "svc", "payload": "caf\\u00e9", "severity": "info",'
    line += b' "timestamp": "2024-05-01T12:00:00Z", "metadata": {"a": [1, 2.50]} }\r'
    [outcome] = edge(line + b"\n")
    assert isinstance(outcome, Accepted)
    assert outcome.data == line
    assert_lms_mon_agrees(line, outcome)


@pytest.mark.parametrize(
    "metadata",
    [
        '{"k": 1, "k": 2}',
        '{"http": {"status": 200, "status": 500}}',
        '{"list": [{"a": 1}, {"b": 2, "b" : 3}]}',
    ],
)
def test_a_duplicate_key_nested_in_metadata_is_still_refused(metadata: str) -> None:
    line = json.dumps(VALID)[:-1].encode() + b', "metadata": ' + metadata.encode() + b"}"
    [outcome] = edge(line)
    assert isinstance(outcome, Refused)
    assert outcome.reason == "invalid_json"
    assert "appears more than once" in outcome.detail
    assert_lms_mon_agrees(line, outcome)


def test_a_lone_surrogate_in_a_field_the_rules_do_not_read_is_published_not_a_crash() -> None:
    # "\ud800" decodes to a lone surrogate, which UTF-8 cannot encode: the edge must not fail
    # writing the message (it used to, in a body it had to rewrite: a 500).
    fields = {**VALID, "extra": "\ud800"}
    for body, content_type in (
        (json.dumps(fields).encode(), None),  # published as sent
        (json.dumps({**fields, "id": "k-1"}).encode(), None),  # rewritten without its id
        (json.dumps([fields]).encode(), None),  # rewritten: an element of an array
    ):
        [outcome] = edge(body, content_type)
        assert isinstance(outcome, Accepted), outcome
        record = parse_message(outcome.data, END_OF_TIME)
        assert isinstance(record, LogRecord)
        assert strictjson.loads(outcome.data)["extra"] == "\ud800"


def test_a_padded_log_is_published_compact_and_one_too_large_for_pub_sub_is_refused() -> None:
    # Sent bytes are published as they are, so whitespace alone could make a message larger
    # than Pub/Sub takes (10 MB): every retry would then be a 503. Padding is dropped instead,
    # and a log that is too large even compact is refused by name, the rest of the body kept.
    text = json.dumps(VALID)
    padded = (text[:-1] + " " * MAX_MESSAGE + "}").encode()
    [outcome] = edge(padded + b"\n")
    assert isinstance(outcome, Accepted)
    assert outcome.data == json.dumps(VALID, separators=(",", ":")).encode()
    huge = json.dumps({**VALID, "extra": "x" * MAX_MESSAGE}).encode()
    first, second = edge(huge + b"\n" + text.encode() + b"\n")
    assert isinstance(first, Refused) and first.reason == TOO_LARGE
    assert f"at most {MAX_MESSAGE}" in first.detail
    assert isinstance(second, Accepted)


def test_a_log_with_an_id_is_rewritten_without_it_and_one_without_is_not() -> None:
    items = native.decode(json.dumps([{**VALID, "id": "k-1"}]).encode(), None, 10)
    [keyed] = items
    assert isinstance(keyed, Candidate)
    assert (keyed.key, keyed.raw, native.ID_FIELD in keyed.fields) == ("k-1", None, False)
    text = json.dumps(VALID).encode()
    [plain] = native.decode(text, None, 10)
    assert isinstance(plain, Candidate) and plain.raw == text


@hypothesis_settings(suppress_health_check=[HealthCheck.too_slow])
@given(json_objects)
def test_rejection_of_is_parse_objects_verdict(log: dict[str, Any]) -> None:
    for obj in (log, {**VALID, **log}, {**VALID, "metadata": log}):
        outcome = parse_object(obj, END_OF_TIME)
        verdict = rejection_of(obj, END_OF_TIME)
        assert verdict == (outcome if isinstance(outcome, Rejection) else None)


def nested(depth: int, leaf: object = 1) -> object:
    """`leaf` inside `depth` containers, objects and arrays in turn."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"a": nested(MAX_METADATA_DEPTH - 1)}, None),
        ({"a": nested(MAX_METADATA_DEPTH)}, "nested"),
        ({"s": "[{" * 40}, None),  # brackets in a string are no nesting
        ({"n": 10**300 - 1}, None),
        ({"n": 10**300}, "integer too large"),
        ({"n": -(10**300)}, "integer too large"),
        ({"pad": "x" * 300, "n": 10**300 - 1}, None),
        ({"pad": "x" * 300, "n": 10**301}, "integer too large"),
        ({"s": "9" * 400}, None),  # digits in a string are no integer
        ({"s": "9" * 400, "a": nested(MAX_METADATA_DEPTH)}, "nested"),
    ],
)
def test_metadata_structure_limits_hold_on_both_sides_of_the_shortcut(
    metadata: dict[str, Any], problem: str | None
) -> None:
    verdict = rejection_of({**VALID, "metadata": metadata})
    if problem is None:
        assert verdict is None
    else:
        assert verdict is not None and problem in verdict.detail


# --- strictjson.loads: the C scanner first, json.loads's answers all the same ---------------


@pytest.mark.parametrize(
    "text",
    ["{}", ' {"a": 1}', '{"a": 1} ', '{"a": 1}\r', '{"a": 1}\t\n ', "[1, 2]", '"s"', "3", "null"],
)
def test_loads_reads_what_json_reads(text: str) -> None:
    assert strictjson.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ["", " ", '{"a": 1} x', '{"a": 1}\x0c', '{"a": 1}{}', '{"a" 1}', "[1,]", "\ufeff{}", "nul"],
)
def test_loads_refuses_what_json_refuses_with_its_message(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as ours:
        strictjson.loads(text)
    assert (str(ours.value), ours.value.pos) == (str(theirs.value), theirs.value.pos)


@given(json_values)
def test_loads_round_trips_what_json_writes(value: object) -> None:
    text = json.dumps(value)
    assert strictjson.loads(text) == json.loads(text)


# --- the compact encoder: json.dumps's text and errors --------------------------------------


@given(json_values, st.booleans())
def test_compact_encoder_writes_what_json_dumps_writes(value: object, ascii_only: bool) -> None:
    encode = strictjson.compact_encoder(ensure_ascii=ascii_only)
    assert encode(value) == json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


def test_compact_encoder_without_nan_refuses_it_like_json_dumps() -> None:
    strict = strictjson.compact_encoder(allow_nan=False)
    for value in ({"x": math.nan}, [math.inf], -math.inf):
        with pytest.raises(ValueError):
            json.dumps(value, allow_nan=False)
        with pytest.raises(ValueError):
            strict(value)
    assert strictjson.compact_encoder()({"x": math.nan}) == '{"x":NaN}'
