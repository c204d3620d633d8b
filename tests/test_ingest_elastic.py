"""The Elasticsearch `_bulk` decoder and its answers, without Pub/Sub or a network: the pairing
of action and document lines, the per-item refusals, the mapping of shippers' documents to the
native fields, the response and error bodies the clients parse, and the probe endpoints (the
router in-process, through httpx's ASGI transport)."""

from __future__ import annotations

import json
import warnings
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from lms.domain.record import LogRecord, parse_object
from lms.ingest.http.edge import Accepted, Candidate, Refused, check
from lms.ingest.http.elastic import (
    INVALID_ID,
    UNSUPPORTED_ACTION,
    bulk_response,
    error_response,
    parse_bulk,
)
from lms.ingest.http.errors import BadRequest, Overloaded, PayloadTooLarge
from tests.helpers import ingest_app

STAMP = "2026-11-23T09:30:00.123Z"


def ndjson(*lines: Any) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def doc(**fields: Any) -> dict[str, Any]:
    return {"message": "hello", "@timestamp": STAMP, **fields}


def only_candidate(body: bytes, url_index: str | None = None) -> Candidate:
    [item] = parse_bulk(body, url_index).decoded
    assert isinstance(item, Candidate), item
    return item


def test_index_and_create_are_candidates_keyed_by_id_with_the_index_in_metadata() -> None:
    bulk = parse_bulk(
        ndjson(
            {"index": {"_index": "checkout", "_id": "a1"}},
            doc(level="WARNING"),
            {"create": {"_index": "billing"}},
            doc(service_name="billing-api"),
        )
    )
    assert [(i.action, i.index, i.id) for i in bulk.items] == [
        ("index", "checkout", "a1"),
        ("create", "billing", None),
    ]
    first, second = bulk.decoded
    assert isinstance(first, Candidate) and isinstance(second, Candidate)
    assert (first.index, first.key, second.index, second.key) == (0, "a1", 1, None)
    assert first.fields == {
        "message": "hello",
        "level": "WARNING",
        "timestamp": STAMP,
        "service_name": "checkout",
        "metadata": {"_index": "checkout"},
    }
    assert second.fields["service_name"] == "billing-api"
    accepted, refused = check(bulk.decoded)
    assert refused == []
    stored = json.loads(accepted[0].data)
    assert (stored["level"], accepted[0].key) == ("WARNING", "a1")


def test_update_and_delete_are_refused_per_item_and_the_pairing_goes_on() -> None:
    bulk = parse_bulk(
        ndjson(
            {"delete": {"_index": "logs", "_id": "x"}},
            {"update": {"_index": "logs", "_id": "y"}},
            {"doc": {"message": "changed"}},
            {"index": {"_index": "logs"}},
            doc(),
        )
    )
    assert [i.action for i in bulk.items] == ["delete", "update", "index"]
    deleted, updated, indexed = bulk.decoded
    assert isinstance(deleted, Refused) and deleted.reason == UNSUPPORTED_ACTION
    assert isinstance(updated, Refused) and updated.index == 1
    assert "append-only" in updated.detail
    assert isinstance(indexed, Candidate) and indexed.index == 2


def test_the_url_index_is_the_default_and_an_action_index_wins() -> None:
    bulk = parse_bulk(
        ndjson({"index": {}}, doc(), {"index": {"_index": "other"}}, doc()), url_index="web"
    )
    assert [i.index for i in bulk.items] == ["web", "other"]
    assert [c.fields["metadata"]["_index"] for c in bulk.decoded if isinstance(c, Candidate)] == [
        "web",
        "other",
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (ndjson({"index": {"_index": "a"}}), "not followed by a document line"),
        (b'{"index": {"_index": "a"}\n' + ndjson(doc()), "Malformed action/metadata line [1]"),
        (ndjson({"upsert": {"_index": "a"}}, doc()), "but found [upsert]"),
        (ndjson({"index": {"_index": "a"}, "create": {}}, doc()), "one key"),
        (ndjson({"index": "a"}, doc()), "not an object"),
        (ndjson({"index": {}}, doc()), "names no index"),
        (b"\n\n", "no requests added"),
        (b'{"index": {"_index": "a", "_id": "x", "_id": "y"}}\n' + ndjson(doc()), "'_id'"),
    ],
)
def test_a_body_whose_action_lines_cannot_be_read_is_refused_whole(body: bytes, words: str) -> None:
    with pytest.raises(BadRequest, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_bulk(body)


def test_a_bad_document_line_refuses_only_its_own_item() -> None:
    bulk = parse_bulk(
        ndjson(
            {"index": {"_index": "a"}},
            b'{"message": "cut',
            {"index": {"_index": "a"}},
            [1, 2],
            {"index": {"_index": "a"}},
            doc(),
        )
    )
    broken, array, fine = bulk.decoded
    assert isinstance(broken, Refused) and broken.reason == "invalid_json"
    assert isinstance(array, Refused) and array.reason == "not_an_object"
    assert isinstance(fine, Candidate)
    [latin1] = parse_bulk(ndjson({"index": {"_index": "a"}}, b'{"message": "caf\xe9"}')).decoded
    assert isinstance(latin1, Refused) and latin1.reason == "invalid_utf8"


def test_a_document_naming_a_key_twice_refuses_only_its_own_item() -> None:
    # As Elasticsearch does (strict duplicate detection): which value was meant is unknown.
    bulk = parse_bulk(
        ndjson(
            {"index": {"_index": "a"}},
            b'{"message": "one", "level": "info", "level": "error", "@timestamp": "%s"}'
            % STAMP.encode(),
            {"index": {"_index": "a"}},
            b'{"message": "m", "@timestamp": "%s", "log": {"level": 1, "level": 2}}'
            % STAMP.encode(),
            {"index": {"_index": "a"}},
            doc(),
        )
    )
    top, nested, fine = bulk.decoded
    assert isinstance(top, Refused) and top.reason == "invalid_json"
    assert "'level'" in top.detail
    assert isinstance(nested, Refused) and nested.reason == "invalid_json"
    assert isinstance(fine, Candidate)


def test_lines_are_numbered_as_in_the_body_blank_lines_included() -> None:
    with pytest.raises(BadRequest, match=r"line \[4\]"):
        parse_bulk(ndjson({"index": {"_index": "a"}}, doc()) + b"\n" + b"{oops\n" + ndjson(doc()))


def test_more_actions_than_allowed_is_413() -> None:
    body = ndjson(*[line for _ in range(3) for line in ({"index": {"_index": "a"}}, doc())])
    assert len(parse_bulk(body, max_items=3).items) == 3
    with pytest.raises(PayloadTooLarge):
        parse_bulk(body, max_items=2)


@pytest.mark.parametrize(
    ("fields", "service"),
    [
        ({"service": {"name": "cart", "version": "1.2"}}, "cart"),
        ({"service.name": "cart"}, "cart"),
        ({"service_name": "native", "service": {"name": "ecs"}}, "native"),
        ({}, "idx"),
    ],
)
def test_the_service_is_native_then_ecs_then_the_index(fields: dict, service: str) -> None:
    item = only_candidate(ndjson({"index": {"_index": "idx"}}, doc(**fields)))
    assert item.fields["service_name"] == service


def test_an_ecs_service_object_keeps_its_other_keys_in_metadata() -> None:
    item = only_candidate(
        ndjson({"index": {"_index": "i"}}, doc(service={"name": "cart", "version": "1.2"}))
    )
    assert item.fields["metadata"] == {"service": {"version": "1.2"}, "_index": "i"}


def test_a_resource_id_still_stands_in_for_the_service_as_natively() -> None:
    item = only_candidate(ndjson({"index": {"_index": "idx"}}, doc(resource_id="pod-7")))
    assert "service_name" not in item.fields
    [accepted], _ = check([item])
    assert json.loads(accepted.data)["resource_id"] == "pod-7"


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"@timestamp": "2026-11-23T10:30:00.5+01:00"}, "2026-11-23T10:30:00.5+01:00"),
        ({"@timestamp": "2026-11-23T09:30:00.123"}, "2026-11-23T09:30:00.123Z"),
        ({"@timestamp": 1795426200123}, "2026-11-23T09:30:00.123Z"),
        ({"@timestamp": "1795426200123"}, "2026-11-23T09:30:00.123Z"),
        ({"@timestamp": 1795426200123.0}, "2026-11-23T09:30:00.123Z"),
        ({"timestamp": STAMP, "@timestamp": "2000-01-01T00:00:00Z"}, STAMP),
    ],
)
def test_timestamps_as_shippers_send_them(fields: dict, stored: str) -> None:
    item = only_candidate(ndjson({"index": {"_index": "i"}}, {"message": "m", **fields}))
    assert item.fields["timestamp"] == stored
    assert check([item])[1] == []


def test_a_timestamp_out_of_range_or_missing_refuses_the_item() -> None:
    bulk = parse_bulk(
        ndjson(
            {"index": {"_index": "i"}},
            {"message": "m", "@timestamp": 10**300},
            {"index": {"_index": "i"}},
            {"message": "m"},
        )
    )
    far, _missing = bulk.decoded
    assert isinstance(far, Refused) and far.reason == "invalid_field"
    assert "epoch_millis" in far.detail
    _, refused = check(bulk.decoded)
    assert [(r.index, r.reason) for r in refused] == [(0, "invalid_field"), (1, "missing_field")]


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        ({"log": {"level": "ERROR"}}, "error"),
        ({"log.level": "warning"}, "warn"),
        ({}, "info"),
        ({"severity": "debug", "log": {"level": "error"}}, "debug"),
    ],
)
def test_the_level_is_native_then_ecs_log_level_else_info(fields: dict, severity: str) -> None:
    item = only_candidate(ndjson({"index": {"_index": "i"}}, doc(**fields)))
    [accepted], refused = check([item])
    assert refused == []
    record = parse_object(json.loads(accepted.data))
    assert isinstance(record, LogRecord) and record.severity == severity


def test_a_string_log_is_the_message_as_fluent_bit_tails_it() -> None:
    tailed = only_candidate(
        ndjson({"index": {"_index": "i"}}, {"log": "line", "@timestamp": STAMP})
    )
    assert tailed.fields["message"] == "line"
    assert tailed.fields["metadata"] == {"_index": "i"}
    both = only_candidate(ndjson({"index": {"_index": "i"}}, doc(log="line")))
    assert (both.fields["message"], both.fields["metadata"]["log"]) == ("hello", "line")


def test_ecs_trace_and_span_ids_fill_the_tracing_context() -> None:
    item = only_candidate(
        ndjson({"index": {"_index": "i"}}, doc(trace={"id": "t1"}, **{"span.id": "s1"}))
    )
    assert (item.fields["trace_id"], item.fields["span_id"]) == ("t1", "s1")
    assert item.fields["metadata"] == {"_index": "i"}


def test_remaining_fields_go_to_metadata_under_the_documents_own_metadata() -> None:
    item = only_candidate(
        ndjson(
            {"index": {"_index": "i"}},
            doc(host={"name": "h1"}, kind="x", metadata={"kind": "mine", "parentResourceId": "p"}),
        )
    )
    assert item.fields["metadata"] == {
        "host": {"name": "h1"},
        "kind": "mine",
        "parentResourceId": "p",
        "_index": "i",
    }


def test_a_metadata_that_is_not_an_object_is_refused_by_the_native_rules() -> None:
    item = only_candidate(ndjson({"index": {"_index": "i"}}, doc(metadata="text")))
    _, [refused] = check([item])
    assert refused.reason == "invalid_field"


@pytest.mark.parametrize(("raw_id", "key"), [("abc", "abc"), (42, "42"), ("k" * 128, "k" * 128)])
def test_the_id_is_the_idempotency_key(raw_id: object, key: str) -> None:
    item = only_candidate(ndjson({"create": {"_index": "i", "_id": raw_id}}, doc()))
    assert item.key == key


@pytest.mark.parametrize("raw_id", ["", "k" * 129, True, {"a": 1}, "k ", " k", "k\x1b", "\t"])
def test_an_id_that_cannot_be_a_key_refuses_the_item(raw_id: object) -> None:
    [item] = parse_bulk(ndjson({"index": {"_index": "i", "_id": raw_id}}, doc())).decoded
    assert isinstance(item, Refused) and item.reason == INVALID_ID


def test_the_response_has_one_item_per_action_in_order_like_elasticsearch() -> None:
    bulk = parse_bulk(
        ndjson(
            {"index": {"_index": "a", "_id": "given"}},
            doc(),
            {"delete": {"_index": "a", "_id": "d"}},
            {"create": {"_index": "b"}},
            doc(),
            {"index": {"_index": "c"}},
            {"message": "no time"},
        )
    )
    accepted, refused = check(bulk.decoded)
    assert [a.index for a in accepted] == [0, 2]
    assert isinstance(accepted[0], Accepted)
    body = bulk_response(bulk, refused, {0: "101", 2: "102"}, took=7)
    assert (body["took"], body["errors"]) == (7, True)
    first, deleted, created, failed = body["items"]
    assert first == {
        "index": {
            "_index": "a",
            "_id": "given",
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "status": 201,
        }
    }
    assert deleted["delete"]["status"] == 400
    assert deleted["delete"]["error"]["type"] == "illegal_argument_exception"
    assert (created["create"]["_id"], created["create"]["status"]) == ("102", 201)
    assert failed["index"]["error"]["type"] == "mapper_parsing_exception"
    assert "timestamp" in failed["index"]["error"]["reason"]
    assert failed["index"]["_id"] is None


def test_no_refusal_means_errors_false() -> None:
    bulk = parse_bulk(ndjson({"index": {"_index": "a"}}, doc()))
    _, refused = check(bulk.decoded)
    assert bulk_response(bulk, refused, {0: "1"}, took=0)["errors"] is False


def test_request_errors_have_elasticsearchs_error_shape() -> None:
    body = error_response(Overloaded("too many bytes", retry_after=1.0))
    assert body == {
        "error": {
            "root_cause": [{"type": "es_rejected_execution_exception", "reason": "too many bytes"}],
            "type": "es_rejected_execution_exception",
            "reason": "too many bytes",
        },
        "status": 429,
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
bulk_lines = st.one_of(
    st.builds(
        lambda action, meta: {action: meta},
        st.sampled_from(["index", "create", "update", "delete", "other"]),
        st.fixed_dictionaries({}, optional={"_index": json_values, "_id": json_values}),
    ).map(json.dumps),
    st.builds(
        lambda extra: json.dumps({**doc(), **extra}),
        st.dictionaries(
            st.sampled_from(["@timestamp", "log", "service", "service.name", "metadata", "x"]),
            json_values,
        ),
    ),
    json_values.map(json.dumps),
    st.text(max_size=30),
).map(lambda line: line.encode("utf-8", "surrogatepass"))


@given(st.lists(bulk_lines, max_size=8), st.none() | st.text(min_size=1, max_size=5))
def test_any_body_is_refused_whole_or_answered_item_by_item(lines, url_index) -> None:
    try:
        bulk = parse_bulk(b"\n".join(lines), url_index)
    except BadRequest:
        return
    assert [item.index for item in bulk.decoded] == list(range(len(bulk.items)))
    accepted, refused = check(bulk.decoded)
    body = bulk_response(bulk, refused, {a.index: str(a.index) for a in accepted}, took=1)
    assert len(body["items"]) == len(bulk.items)
    assert body["errors"] is bool(refused)
    json.dumps(body)


def probe_app(publisher: object = None) -> FastAPI:
    return ingest_app(publisher)


async def test_the_probes_answer_as_elasticsearch_with_its_product_header() -> None:
    transport = httpx.ASGITransport(app=probe_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://lms") as client:
        info = await client.get("/")
        head = await client.head("/")
        health = await client.get("/_cluster/health")
        license_ = await client.get("/_license", params={"human": "false"})
        xpack = await client.get("/_xpack")
    for answer in (info, head, health, license_, xpack):
        assert answer.status_code == 200
        assert answer.headers["x-elastic-product"] == "Elasticsearch"
    assert info.json()["version"]["number"].startswith("8.")
    assert info.json()["version"]["build_flavor"] == "default"
    assert head.content == b""
    assert health.json()["status"] == "green"
    assert license_.json()["license"]["status"] == "active"
    assert xpack.json()["license"]["mode"] == "basic"


async def test_a_bad_body_and_a_bad_encoding_get_elasticsearch_errors() -> None:
    transport = httpx.ASGITransport(app=probe_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://lms") as client:
        bad = await client.post("/_bulk", content=b"{nope\n")
        truncated = await client.put(
            "/a/_bulk", content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}
        )
        unknown = await client.put("/a/_bulk", content=b"x", headers={"Content-Encoding": "br"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "parse_exception"
    assert bad.headers["x-elastic-product"] == "Elasticsearch"
    assert "retry-after" not in bad.headers
    assert truncated.status_code == 400
    assert unknown.status_code == 415
    assert unknown.headers["x-elastic-product"] == "Elasticsearch"


async def test_a_body_of_refusals_only_publishes_nothing_and_is_200() -> None:
    """Elasticsearch answers 200 whatever its items did; the publisher is not even asked."""
    transport = httpx.ASGITransport(app=probe_app(publisher=None))
    body = ndjson({"delete": {"_index": "a", "_id": "1"}}, {"index": {"_index": "a"}}, {"x": 1})
    async with httpx.AsyncClient(transport=transport, base_url="http://lms") as client:
        answer = await client.post("/_bulk", content=body)
    assert answer.status_code == 200
    assert answer.json()["errors"] is True
    assert [item[next(iter(item))]["status"] for item in answer.json()["items"]] == [400, 400]


def test_the_openapi_document_has_one_operation_per_method() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = probe_app().openapi()["paths"]
    assert sorted(paths["/_bulk"]) == ["post", "put"]
    assert sorted(paths["/"]) == ["get", "head"]
