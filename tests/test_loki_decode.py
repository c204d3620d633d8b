"""The Loki push decoder (lms.ingest.http.loki) on its own: label strings with escapes, the
mapping to native fields, severities, keys, and both body forms (JSON, snappy protobuf)."""

from __future__ import annotations

import json
from typing import Any

import cramjam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms.ingest.http import logproto
from lms.ingest.http.edge import Candidate, Refused, check
from lms.ingest.http.errors import (
    BadRequest,
    IngestError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from lms.ingest.http.loki import DEFAULT_SERVICE, decode, parse_labels

NS = 1_764_579_000_123_456_789
"""2025-12-01T08:50:00.123456789Z"""
STAMP = "2025-12-01T08:50:00.123456Z"


def json_body(*streams: dict[str, Any]) -> bytes:
    return json.dumps({"streams": list(streams)}).encode()


def stream(labels: dict[str, str], *values: list[Any]) -> dict[str, Any]:
    return {"stream": labels, "values": list(values)}


def proto_body(*streams: tuple[str, list[tuple[int, str, dict[str, str]]]]) -> bytes:
    """A snappy-compressed logproto.PushRequest of (labels, [(ns, line, metadata)])."""
    request = logproto.PushRequest()
    for labels, entries in streams:
        adapter = request.streams.add(labels=labels)
        for ns, line, metadata in entries:
            entry = adapter.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(ns, 1_000_000_000)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _json_children(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["stream", "values", "app", "level", "x"]), children, max_size=4
    )


def one(items: list[Candidate | Refused]) -> Candidate:
    assert len(items) == 1 and isinstance(items[0], Candidate), items
    return items[0]


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("{}", {}),
        (' { app = "x" , level="warn", } ', {"app": "x", "level": "warn"}),
        (r'{msg="say \"hi\"", path="C:\\tmp"}', {"msg": 'say "hi"', "path": "C:\\tmp"}),
        (r'{a="line\nnext\ttab"}', {"a": "line\nnext\ttab"}),
        (r'{a="\xe2\x82\xac \u00e9 \U0001F600 \101"}', {"a": "€ é \U0001f600 A"}),
        ('{a=`raw \\"as is`}', {"a": 'raw \\"as is'}),
        ('{a="comma, and } brace"}', {"a": "comma, and } brace"}),
        ('{a="ünïcödé"}', {"a": "ünïcödé"}),
    ],
)
def test_label_sets_parse_with_escapes(text: str, labels: dict[str, str]) -> None:
    assert parse_labels(text) == labels


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('app="x"', "starts with"),
        ('{app!="x"}', "'=' was expected"),
        ('{app=~"x"}', "'=' was expected"),
        ('{a="x", a="y"}', "given twice"),
        ('{a="x"', "',' or '}' was expected"),
        ('{a="x}', "no closing"),
        (r'{a="\q"}', "invalid escape"),
        (r'{a="\x4"}', "invalid escape"),
        (r'{a="\xff"}', "not valid UTF-8"),
        ('{a="x"} trailing', "nothing may follow"),
        ('{1a="x"}', "label name"),
        ("{a=x}", "quoted value"),
    ],
)
def test_malformed_label_sets_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_labels(text)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
        max_size=5,
    )
)
def test_labels_rendered_as_clients_do_parse_back(labels: dict[str, str]) -> None:
    """Clients quote values as JSON strings (Go accepts the same escapes)."""
    text = "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items())
    assert parse_labels(text + "}") == labels


# --- mapping -------------------------------------------------------------------------------


def test_a_json_entry_maps_to_native_fields() -> None:
    body = json_body(
        stream(
            {"app": "checkout", "level": "WARNING", "env": "prod"},
            [str(NS), "order paid", {"traceID": "abc", "span_id": "def", "user": "u1"}],
        )
    )
    item = one(decode(body, "application/json; charset=utf-8"))
    assert item.index == 0
    assert item.fields == {
        "service_name": "checkout",
        "payload": "order paid",
        "severity": "warn",
        "timestamp": STAMP,
        "trace_id": "abc",
        "span_id": "def",
        "metadata": {"labels": {"env": "prod"}, "structured_metadata": {"user": "u1"}},
    }
    accepted, refused = check([item])
    assert refused == [] and len(accepted) == 1


@pytest.mark.parametrize(
    ("labels", "service"),
    [
        ({"service_name": "a", "service": "b", "app": "c", "job": "d"}, "a"),
        ({"service": "b", "app": "c", "job": "d"}, "b"),
        ({"app": "c", "job": "d"}, "c"),
        ({"job": "d"}, "d"),
        ({"service_name": "", "job": "d"}, "d"),
        ({"filename": "/var/log/x.log"}, DEFAULT_SERVICE),
        ({}, DEFAULT_SERVICE),
    ],
)
def test_service_name_comes_from_the_first_service_label(
    labels: dict[str, str], service: str
) -> None:
    item = one(decode(json_body(stream(labels, [str(NS), "x"])), "application/json"))
    assert item.fields["service_name"] == service
    assert service not in item.fields.get("metadata", {}).get("labels", {}).values()


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("trace", "debug"),
        ("DEBUG", "debug"),
        ("info", "info"),
        ("Notice", "info"),
        ("warn", "warn"),
        ("Warning", "warn"),
        ("err", "error"),
        ("ERROR", "error"),
        ("critical", "fatal"),
        ("crit", "fatal"),
        ("fatal", "fatal"),
        ("panic", "fatal"),
        ("unknown", "info"),
        ("loud", "info"),
    ],
)
def test_severity_words_map_case_insensitively(word: str, severity: str) -> None:
    item = one(decode(json_body(stream({"level": word}, [str(NS), "x"])), "application/json"))
    assert item.fields["severity"] == severity


def test_an_unknown_severity_word_stays_in_metadata() -> None:
    item = one(decode(json_body(stream({"level": "loud"}, [str(NS), "x"])), "application/json"))
    assert item.fields["metadata"] == {"labels": {"level": "loud"}}


@pytest.mark.parametrize(
    ("labels", "structured", "severity"),
    [
        ({}, {}, "info"),
        ({"detected_level": "error"}, {}, "error"),
        ({"severity": "debug"}, {}, "debug"),
        ({"level": "warn", "detected_level": "error"}, {}, "warn"),
        ({"level": "info"}, {"level": "fatal"}, "fatal"),
        ({"level": "info"}, {"detected_level": "error"}, "error"),
    ],
)
def test_severity_prefers_the_entry_then_the_stream(
    labels: dict[str, str], structured: dict[str, str], severity: str
) -> None:
    body = json_body(stream(labels, [str(NS), "x", structured]))
    assert one(decode(body, "application/json")).fields["severity"] == severity


def test_no_metadata_when_every_label_was_used() -> None:
    item = one(
        decode(json_body(stream({"app": "a", "level": "info"}, [str(NS), "x"])), "application/json")
    )
    assert "metadata" not in item.fields


# --- keys ----------------------------------------------------------------------------------


def keys(body: bytes, content_type: str = "application/json") -> list[str | None]:
    return [item.key for item in decode(body, content_type) if isinstance(item, Candidate)]


def test_keys_are_stable_across_label_order_and_forms() -> None:
    first = keys(json_body(stream({"app": "a", "env": "p"}, [str(NS), "x"])))
    assert first == keys(json_body(stream({"env": "p", "app": "a"}, [str(NS), "x"])))
    assert first == keys(proto_body(('{env="p", app="a"}', [(NS, "x", {})])), "")
    assert first[0] is not None and first[0].startswith("loki:") and len(first[0]) == 69


def test_keys_differ_by_labels_timestamp_and_line_but_not_metadata() -> None:
    base = keys(json_body(stream({"app": "a"}, [str(NS), "x"])))
    for other in (
        json_body(stream({"app": "b"}, [str(NS), "x"])),
        json_body(stream({"app": "a", "env": "p"}, [str(NS), "x"])),
        json_body(stream({"app": "a"}, [str(NS + 1), "x"])),
        json_body(stream({"app": "a"}, [str(NS), "y"])),
    ):
        assert keys(other) != base
    with_metadata = json_body(stream({"app": "a"}, [str(NS), "x", {"user": "u"}]))
    assert keys(with_metadata) == base


# --- bodies --------------------------------------------------------------------------------


def test_entries_are_numbered_across_streams_and_bad_ones_refused_alone() -> None:
    body = json_body(
        stream({"app": "a"}, [str(NS), "0"], ["yesterday", "1"], [NS, "2"], [str(NS), "3"]),
        stream({"app": "w" * 101}, [str(NS), "4"], [str(NS), "5"]),
        stream({"app": "b"}, [str(NS), 6], [str(NS)], [str(NS), "8", {"n": 1}], [str(NS), "9"]),
    )
    accepted, refused_list = check(decode(body, "application/json"))
    items = sorted([*accepted, *refused_list], key=lambda i: i.index)
    assert [i.index for i in items] == list(range(10))
    refused = {i.index: i for i in items if isinstance(i, Refused)}
    assert sorted(refused) == [1, 2, 4, 5, 6, 7, 8]
    assert "unix nanoseconds" in refused[1].detail and "unix nanoseconds" in refused[2].detail
    assert "service_name" in refused[4].detail and "service_name" in refused[5].detail
    assert all(r.reason == "invalid_field" for r in refused.values())
    assert [json.loads(a.data)["payload"] for a in accepted] == ["0", "3", "9"]


def test_the_edge_refuses_what_lms_mon_would() -> None:
    body = proto_body(
        ('{app="%s"}' % ("a" * 101), [(NS, "x", {})]),
        ('{app="b"}', [(10**24, "far future", {})]),
    )
    accepted, refused = check(decode(body, "application/x-protobuf"))
    assert accepted == []
    assert [(r.index, r.reason) for r in refused] == [(0, "invalid_field"), (1, "invalid_field")]
    assert "service_name" in refused[0].detail and "timestamp" in refused[1].detail


def test_a_snappy_protobuf_body_decodes_like_its_json_twin() -> None:
    proto = proto_body(
        ('{app="checkout", level="error", msg="a \\"b\\""}', [(NS, "boom", {"trace_id": "t1"})]),
        ('{job="cron"}', [(NS, "tick", {}), (NS + 1000, "tock", {"level": "debug"})]),
    )
    twin = json_body(
        stream(
            {"app": "checkout", "level": "error", "msg": 'a "b"'},
            [str(NS), "boom", {"trace_id": "t1"}],
        ),
        stream({"job": "cron"}, [str(NS), "tick"], [str(NS + 1000), "tock", {"level": "debug"}]),
    )
    decoded = decode(proto, "application/x-protobuf")
    assert decoded == decode(twin, "application/json")
    assert decoded == decode(proto, None)
    assert [c.fields["severity"] for c in decoded if isinstance(c, Candidate)] == [
        "error",
        "info",
        "debug",
    ]


def test_wire_field_numbers_are_lokis() -> None:
    """A body written byte by byte from Loki's field numbers, not with our schema."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    timestamp = bytes([1 << 3, 5, 2 << 3, 7])  # seconds = 5, nanos = 7 (varints)
    pair = field(1, b"trace_id") + field(2, b"t9")
    entry = field(1, timestamp) + field(2, b"hello") + field(3, pair)
    adapter = field(1, b'{app="w"}') + field(2, entry) + bytes([3 << 3, 42])  # hash = 42
    item = one(
        decode(bytes(cramjam.snappy.compress_raw(field(1, adapter))), "application/x-protobuf")
    )
    assert item.fields["service_name"] == "w"
    assert item.fields["payload"] == "hello"
    assert item.fields["trace_id"] == "t9"
    assert item.fields["timestamp"] == "1970-01-01T00:00:05.000000Z"


def test_bad_labels_refuse_their_stream_only() -> None:
    items = decode(proto_body(('{app="a"', [(NS, "x", {})]), ('{app="b"}', [(NS, "y", {})])), "")
    assert isinstance(items[0], Refused) and "labels" in items[0].detail
    assert isinstance(items[1], Candidate)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"strooms": []}',
        b"[]",
        b'{"streams": [{"stream": {}}]}',
        b'{"streams": [1]}',
        b'{"streams": [{"stream": {"app": 5}, "values": []}]}',
        b'{"streams": [{"stream": [], "values": []}]}',
        b"\xff",
    ],
)
def test_a_json_body_that_is_not_a_push_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode(body, "application/json")


def test_a_label_named_twice_is_a_bad_request_naming_it() -> None:
    """Which `app` was meant? Neither is stored (json would silently keep the last)."""
    body = b'{"streams": [{"stream": {"app": "a", "app": "b"}, "values": [["1", "x"]]}]}'
    with pytest.raises(BadRequest, match="'app' appears more than once"):
        decode(body, "application/json")


@pytest.mark.parametrize(
    "body",
    [b"plain bytes, not snappy", bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff garbage"))],
)
def test_a_protobuf_body_that_is_not_a_push_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        decode(body, "application/x-protobuf")


def test_a_snappy_bomb_is_refused_before_decompressing() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\0" * 100_000))
    with pytest.raises(PayloadTooLarge):
        decode(body, "application/x-protobuf", max_decoded=10_000)


def test_other_content_types_are_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType):
        decode(b"x", "text/plain")


def test_an_empty_push_has_no_entries() -> None:
    assert decode(b'{"streams": []}', "application/json") == []
    assert decode(proto_body(), "application/x-protobuf") == []


@given(
    st.binary(max_size=300),
    st.sampled_from(["application/json", "application/x-protobuf", None]),
    st.booleans(),
)
def test_any_body_decodes_or_is_refused_as_a_request_error(
    data: bytes, content_type: str | None, snappy: bool
) -> None:
    """Whatever arrives, the answer is entries or an IngestError (a 4xx), never a crash."""
    body = bytes(cramjam.snappy.compress_raw(data)) if snappy else data
    try:
        items = decode(body, content_type)
    except IngestError:
        return
    check(items)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), _json_children))
def test_any_json_document_decodes_or_is_a_bad_request(document: object) -> None:
    try:
        items = decode(json.dumps({"streams": [document]}).encode(), "application/json")
    except BadRequest:
        return
    check(items)
